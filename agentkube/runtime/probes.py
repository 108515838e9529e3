"""The manager's HTTP endpoints: ``/livez``, ``/healthz``, ``/readyz`` and ``/metrics``.

What a caller may rely on:

- A check is a function of no arguments returning None when healthy, or a short text saying what is
  wrong. ``/healthz`` and ``/readyz`` answer 200 ``ok`` when every check of theirs passes, else 503
  with one line per failing check (``name: reason``), so ``kubectl describe pod`` shows the cause.
  A check that raises counts as failing, with the exception as its reason.
- ``/livez`` is the liveness endpoint under the name the API server and controller-runtime give it:
  it runs the ``/healthz`` checks and answers exactly as ``/healthz`` does, so a liveness probe may
  point at either.
- ``/metrics`` serves a Prometheus registry in the text exposition format.
- Bind addresses use controller-runtime's syntax: ``":8080"`` (all interfaces), ``"127.0.0.1:8080"``,
  ``"[::1]:8080"``; port 0 picks a free port (read it back from ``HttpServer.port``); ``"0"`` or
  ``""`` disables the endpoint.
- Handlers only read in-memory state: they answer within milliseconds while the event loop runs,
  so a liveness probe fails exactly when the loop is stuck.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Check", "HttpServer", "metrics_routes", "parse_bind_address", "probe_routes"]

Check = Callable[[], "str | None"]


def parse_bind_address(address: str) -> tuple[str | None, int] | None:
    """``(host, port)`` for an address (host None = all interfaces), or None when disabled."""
    if address in ("", "0"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind address must be [host]:port or 0 to disable, got {address!r}")
    host = host.strip("[]")
    return (host or None, int(port))


def _run_checks(checks: Mapping[str, Check]) -> list[str]:
    failing = []
    for name, check in checks.items():
        try:
            reason = check()
        except Exception as err:
            reason = f"check raised {type(err).__name__}: {err}"
        if reason is not None:
            failing.append(f"{name}: {reason}")
    return failing


def _probe(checks: Mapping[str, Check]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        failing = _run_checks(checks)
        if failing:
            return web.Response(status=503, text="\n".join(failing) + "\n")
        return web.Response(text="ok\n")

    return handle


def probe_routes(healthz: Mapping[str, Check], readyz: Mapping[str, Check]) -> list[web.RouteDef]:
    """``/livez`` and ``/healthz`` over ``healthz``, ``/readyz`` over ``readyz`` (the checks are read
    at request time: add more later)."""
    live = _probe(healthz)
    return [web.get("/livez", live), web.get("/healthz", live), web.get("/readyz", _probe(readyz))]


def metrics_routes(registry: CollectorRegistry) -> list[web.RouteDef]:
    """``/metrics`` serving ``registry``."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/metrics", handle)]


class HttpServer:
    """One aiohttp site on one address, serving the given routes."""

    def __init__(self, address: tuple[str | None, int], routes: Sequence[web.RouteDef]) -> None:
        self.address = address
        app = web.Application()
        app.add_routes(routes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        host, port = self.address
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        # With port 0 the OS picked one; the runner knows which.
        bound = self._runner.addresses
        self.port = int(bound[0][1]) if bound else port

    async def stop(self) -> None:
        await self._runner.cleanup()
