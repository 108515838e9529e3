"""A ToolGateway whose envFrom names a ConfigMap that does not exist says so (its pods could not
start), and the word clears once the ConfigMap appears."""

from __future__ import annotations

import pytest

from agentkube.controllers.kinds import CONFIG_MAP, TOOL_GATEWAY
from test.integration.operator_harness import RunningOperator, World
from test.integration.test_toolgateway_controller import (
    tool_gateway,
    tool_gateway_class,
    unique,
    wait_condition,
)

pytestmark = pytest.mark.integration


async def test_missing_env_from_config_map_is_reported_and_clears_when_it_appears(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    cls = unique("it-envfrom")
    await world.apply(tool_gateway_class(cls))
    await world.apply(
        tool_gateway(
            "gw",
            namespace,
            cls,
            envFrom=[
                {"configMapRef": {"name": "gateway-settings"}},
                {"configMapRef": {"name": "maybe", "optional": True}},
            ],
        )
    )
    accepted = await wait_condition(
        world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="False", reason="ConfigMapNotFound"
    )
    assert 'ConfigMap "gateway-settings"' in accepted["message"]
    assert f'namespace "{namespace}"' in accepted["message"]
    assert "spec.envFrom[0].configMapRef" in accepted["message"]
    assert "maybe" not in accepted["message"]  # optional: may be missing
    ready = await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Ready", status="False")
    assert ready["reason"] == "ConfigMapNotFound"

    await world.apply(
        {
            "apiVersion": CONFIG_MAP.api_version,
            "kind": "ConfigMap",
            "metadata": {"name": "gateway-settings", "namespace": namespace},
            "data": {"LOG_LEVEL": "debug"},
        }
    )
    await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
