"""The manager's probe endpoints served on loopback: /livez is /healthz under the liveness name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from agentkube.runtime.probes import Check, HttpServer, probe_routes


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, dict[str, Check], dict[str, Check]]]:
    healthz: dict[str, Check] = {"ping": lambda: None}
    readyz: dict[str, Check] = {"informers": lambda: "ConfigMap not synced"}
    server = HttpServer(("127.0.0.1", 0), probe_routes(healthz, readyz))
    await server.start()
    assert server.port is not None
    try:
        yield server.port, healthz, readyz
    finally:
        await server.stop()


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_livez_answers_as_healthz_over_the_same_checks(
    served: tuple[int, dict[str, Check], dict[str, Check]],
) -> None:
    port, healthz, _ = served
    assert await get(port, "/livez") == (200, "ok\n")
    assert await get(port, "/healthz") == (200, "ok\n")
    # A check added later is read at request time, by both names.
    healthz["loop"] = lambda: "event loop stuck for 12s"
    assert await get(port, "/livez") == (503, "loop: event loop stuck for 12s\n")
    assert await get(port, "/healthz") == (503, "loop: event loop stuck for 12s\n")


async def test_livez_does_not_wait_for_readiness(
    served: tuple[int, dict[str, Check], dict[str, Check]],
) -> None:
    port, _, _ = served
    assert await get(port, "/readyz") == (503, "informers: ConfigMap not synced\n")
    assert await get(port, "/livez") == (200, "ok\n")
