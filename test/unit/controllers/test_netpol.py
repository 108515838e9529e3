"""NetworkPolicies: the policy one workload gets, the pure part."""

from __future__ import annotations

from agentkube.controllers.netpol import network_policy

META = {"name": "tools", "namespace": "team-a", "labels": {"a": "b"}}
PODS = {"app.kubernetes.io/name": "mcp-proxy", "app.kubernetes.io/instance": "tools"}


def peer(namespace: str) -> dict[str, object]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def test_policy_admits_the_own_namespace_the_callers_and_anyone_on_the_open_ports() -> None:
    policy = network_policy(
        META, PODS, port="http", namespaces=["team-c", "team-b", "team-c"], open_ports=["metrics"]
    )
    assert policy == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": META,
        "spec": {
            "podSelector": {"matchLabels": PODS},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {}}, peer("team-b"), peer("team-c")],
                    "ports": [{"protocol": "TCP", "port": "http"}],
                },
                {"ports": [{"protocol": "TCP", "port": "metrics"}]},
            ],
        },
    }


def test_own_namespace_is_not_named_twice_and_no_open_ports_means_one_rule() -> None:
    policy = network_policy(META, PODS, port="mcp", namespaces=["team-a"])
    assert policy["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": "mcp"}]}
    ]
    # Egress is not restricted: upstreams and providers live anywhere.
    assert policy["spec"]["policyTypes"] == ["Ingress"]
