"""One field manager per controller, against a real API server: after an upgrade from the operator that
applied everything as ``agentkube``, the first apply of a child hands the former manager's fields
over, so what only it held (a field today's controller no longer sets) goes, and what the controller
applies stays, owned by it alone."""

from __future__ import annotations

import pytest

from agentkube.controllers.kinds import CONFIG_MAP, MCP
from agentkube.runtime.client import Client
from agentkube.testing import ControlPlane
from test.integration.operator_harness import eventually, mcp_object, running_operator

pytestmark = pytest.mark.integration


async def test_fields_only_the_former_manager_held_go_with_the_first_apply(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    mcp = await client.apply(
        mcp_object(namespace, "tools", [{"name": "x", "kind": "http", "endpoint": "http://x"}]),
        field_manager="user",
    )
    meta = mcp["metadata"]
    # What the former operator left: its ConfigMap, with a key today's operator does not write.
    await client.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "tools-config",
                "namespace": namespace,
                "ownerReferences": [
                    {
                        "apiVersion": mcp["apiVersion"],
                        "kind": "MCP",
                        "name": "tools",
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": {"config.yaml": "old", "retired.yaml": "a key the operator no longer writes"},
        },
        field_manager="agentkube",
    )
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace):

        async def handed_over() -> dict[str, object] | None:
            cm = await client.get(CONFIG_MAP, "tools-config", namespace)
            managers = {f["manager"] for f in cm["metadata"]["managedFields"]}
            return cm if managers == {"agentkube-mcp"} else None

        cm = await eventually(handed_over, "the former manager's fields are handed over")
        data = cm["data"]
        assert isinstance(data, dict)
        assert set(data) == {"config.yaml"}
        assert data["config.yaml"] != "old"

        async def status_is_the_controllers() -> bool:
            live = await client.get(MCP, "tools", namespace)
            return {f["manager"] for f in live["metadata"]["managedFields"]} == {"user", "agentkube-mcp"}

        await eventually(status_is_the_controllers, "the MCP's status is written by agentkube-mcp")
