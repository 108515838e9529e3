"""An LLMGateway for Bedrock on workload identity: its service account, its region, no key variable."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from agentkube.api import parse_llm_gateway
from agentkube.dataplane.llm.config import load_llm_gateway_config
from test.unit.controllers.conftest import World, seed
from test.unit.controllers.test_llmgateway import children_of

BEDROCK = {"name": "aws", "provider": "bedrock", "region": "eu-west-1", "models": ["us.anthropic.claude-x"]}


def test_service_account_name_reaches_the_pods_with_no_api_token(world: World) -> None:
    obj = copy.deepcopy(seed("LLMGateway"))
    obj["spec"] = {"serviceAccountName": "bedrock-gateway", "upstreams": [BEDROCK]}
    children = children_of(world, obj)
    pod = children["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bedrock-gateway"
    assert pod["automountServiceAccountToken"] is False
    assert "env" not in pod["containers"][0]  # no credentialsRef: workload identity, no key variable
    (upstream,) = load_llm_gateway_config(children["ConfigMap"]["data"]["config.yaml"]).upstreams
    assert (upstream.provider, upstream.region, upstream.api_key_env) == ("bedrock", "eu-west-1", None)


def test_without_service_account_name_the_pods_run_as_the_namespace_default(world: World) -> None:
    obj = copy.deepcopy(seed("LLMGateway"))
    obj["spec"] = {"upstreams": [BEDROCK]}
    pod = children_of(world, obj)["Deployment"]["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod


def test_a_bedrock_api_key_is_one_variable_from_its_secret(world: World) -> None:
    from test.unit.controllers.conftest import secret

    world.add(secret("platform", "bedrock-key", {"key": "ABSK-secret"}))
    obj = copy.deepcopy(seed("LLMGateway"))
    obj["spec"] = {"upstreams": [{**BEDROCK, "credentialsRef": {"name": "bedrock-key", "key": "key"}}]}
    children = children_of(world, obj)
    (env,) = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == {
        "name": "AGENTKUBE_UPSTREAM_AWS_APIKEY",
        "valueFrom": {"secretKeyRef": {"name": "bedrock-key", "key": "key"}},
    }
    (upstream,) = load_llm_gateway_config(children["ConfigMap"]["data"]["config.yaml"]).upstreams
    assert upstream.api_key_env == "AGENTKUBE_UPSTREAM_AWS_APIKEY"
    assert "ABSK-secret" not in children["ConfigMap"]["data"]["config.yaml"]


def test_a_service_account_name_must_be_a_valid_object_name() -> None:
    obj = copy.deepcopy(seed("LLMGateway"))
    obj["spec"] = {"serviceAccountName": "Not_A_Name", "upstreams": [BEDROCK]}
    with pytest.raises((ValidationError, ValueError)):
        parse_llm_gateway(obj)
