"""Least privilege for the tool-gateway controllers: as the operator's service account, with the RBAC
``config/default`` renders, they do all their work (CRD watch, Gateway status read, every child
written and pruned, status released) and the API server refuses them nothing."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import pytest

from agentkube.controllers.gatewayapi import multiplex_name, server_route_name
from agentkube.controllers.kinds import (
    AGENTGATEWAY_PARAMETERS,
    GATEWAY,
    HTTP_ROUTE,
    TOOL_GATEWAY,
    TOOL_GATEWAY_CLASS,
    TOOL_SERVER,
)
from agentkube.runtime.client import Client
from agentkube.runtime.errors import NotFound
from agentkube.runtime.gvk import GVK
from agentkube.testing.controlplane import ControlPlane
from test.integration.operator_harness import (
    TOOL_CONTROLLERS,
    condition,
    eventually_allowed,
    running_operator,
    set_available,
)
from test.integration.test_rbac_least_privilege import GROUPS, SERVICE_ACCOUNT, rendered_rbac
from test.integration.test_toolgateway_controller import tool_gateway, tool_gateway_class, unique
from test.integration.test_toolserver_controller import tool_server

pytestmark = pytest.mark.integration


async def test_tool_gateway_controllers_as_the_service_account_are_refused_nothing(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    for obj in rendered_rbac():
        await client.apply(obj, field_manager="test")
    ours, theirs = unique("it-rbac"), unique("it-rbac-theirs")
    created: list[tuple[Any, str, str | None]] = []

    async def apply(obj: dict[str, Any]) -> None:
        await client.apply(obj, field_manager="test")
        created.append((obj, obj["metadata"]["name"], obj["metadata"].get("namespace")))

    await apply(tool_gateway_class(ours))
    await apply(tool_gateway_class(theirs, controller="example.com/other-controller"))
    await apply(
        tool_gateway(
            "gw",
            namespace,
            ours,
            env=[{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317"}],
        )
    )
    await apply(tool_server("search", namespace, "gw"))
    await apply(tool_server("maps", namespace, "gw"))

    kubeconfig = control_plane.user_kubeconfig(SERVICE_ACCOUNT, GROUPS)
    try:
        async with running_operator(str(kubeconfig), controllers=TOOL_CONTROLLERS) as op:
            until = functools.partial(eventually_allowed, op)

            async def status_of(gvk: Any, name: str, ctype: str, ns: str | None = namespace) -> str | None:
                c = condition(await client.get(gvk, name, ns), ctype)
                return None if c is None else str(c["status"])

            async def gone(gvk: Any, name: str) -> bool:
                try:
                    await client.get(gvk, name, namespace)
                except NotFound:
                    return True
                return False

            await until(
                lambda: _is(status_of(TOOL_GATEWAY_CLASS, ours, "Accepted", None), "True"), "the class"
            )
            await until(
                lambda: _is(status_of(TOOL_GATEWAY, "gw", "Accepted"), "True"), "the gateway is accepted"
            )
            await until(
                lambda: _is(status_of(TOOL_SERVER, "search", "Accepted"), "True"), "the server is accepted"
            )
            await until(
                lambda: client.get(HTTP_ROUTE, multiplex_name("gw", namespace), namespace),
                "the multiplex route",
            )
            # Deployment status is read; a server's route and backend are pruned when it leaves.
            await set_available(client, namespace, "search", True)
            await until(lambda: _is(status_of(TOOL_SERVER, "search", "Ready"), "True"), "the server is ready")
            await client.delete(TOOL_SERVER, "maps", namespace)
            await apply(tool_server("search", namespace))
            await until(
                lambda: gone(HTTP_ROUTE, server_route_name("gw", namespace, "search")),
                "the detached server's route is pruned",
            )
            await until(
                lambda: gone(HTTP_ROUTE, multiplex_name("gw", namespace)),
                "the empty multiplex route is pruned",
            )
            # The gateway moves to another controller's class: children deleted, status released.
            await apply(tool_gateway("gw", namespace, theirs))
            await until(lambda: gone(GATEWAY, "gw"), "the Gateway is deleted")
            await until(lambda: gone(AGENTGATEWAY_PARAMETERS, "gw"), "the parameters are deleted")
            await until(op.idle, "the controllers are idle")
            assert op.client.writes_of("apply"), "nothing was written: the check proves nothing"
            assert op.client.denied == []
    finally:
        for obj, name, ns in reversed(created):
            with contextlib.suppress(NotFound):
                await client.delete(GVK.from_object(obj), name, ns)


async def _is(value: Any, expected: str) -> bool:
    return await value == expected
