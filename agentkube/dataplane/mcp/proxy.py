"""``agentkube mcp-proxy``: the program an MCP's Deployment runs, wired from its config file.

The path of one request: ``front`` (both eras, sealed sessions) -> ``catalog`` (which upstream owns
the name, and may it be seen) -> an ``Upstream`` (``http``, ``sse`` or ``stdio``) -> the server.
The catalog is filled here: each upstream's lists are read in full (every page) when it connects
and whenever it says a list changed, and emptied when it stops answering; clients hear of a change
only when the surface they can see changed.

Readiness (``/readyz``): every upstream was tried once (an upstream that does not answer is served
without, and retried with backoff: fail open per upstream) and every stdio child is running with its
tools listed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from agentkube.dataplane.mcp import wire
from agentkube.dataplane.mcp.catalog import KINDS, LIST_METHODS, Catalog, Kind
from agentkube.dataplane.mcp.config import HttpUpstream, MCPProxyConfig, StdioUpstream
from agentkube.dataplane.mcp.front import Front
from agentkube.dataplane.mcp.http import StreamableHttpUpstream
from agentkube.dataplane.mcp.metrics import ProxyMetrics
from agentkube.dataplane.mcp.sessions import KeyRing, Sealer
from agentkube.dataplane.mcp.upstream import PROXY_CLIENT, Exchange, Upstream, UpstreamError
from agentkube.dataplane.server import Program
from agentkube.dataplane.tracing import configure_tracing, shutdown_tracing

__all__ = ["MAX_PAGES", "Proxy"]

log = structlog.get_logger("agentkube.mcp.proxy")

MAX_PAGES = 1000
"""Pages read of one list before giving up on an upstream whose cursors never end."""


def _version() -> str:
    try:
        return version("agentkube")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without metadata
        return "0.0.0"


class Proxy:
    """One MCP proxy: its upstreams, catalog, front and the program that serves them."""

    def __init__(self, config: MCPProxyConfig, *, host: str | None = None) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self.metrics = ProxyMetrics(self.registry)
        self.catalog = Catalog(config.upstreams)
        self.sealer = Sealer(KeyRing.from_env(config.sessions.keys_env), config.sessions.ttl_seconds)
        self.program = Program(
            port=config.listen.port,
            metrics_port=config.metrics.port,
            registry=self.registry,
            ready=self.ready,
            host=host,
            grace_seconds=config.limits.grace_seconds,
        )
        self.upstreams: dict[str, Upstream] = {}
        self.front: Front | None = None
        self._http: aiohttp.ClientSession | None = None
        self._refreshing: dict[tuple[str, Kind], asyncio.Task[None]] = {}
        self._dirty: set[tuple[str, Kind]] = set()
        self._collisions: set[tuple[str, str, str, str]] = set()
        self._listed: set[str] = set()
        """Upstreams whose tools were listed since they last came up."""

    def ready(self) -> str | None:
        waiting = [name for name, u in self.upstreams.items() if not u.tried.is_set()]
        if waiting:
            return f"upstreams not tried yet: {', '.join(waiting)}"
        down = [c.name for c in self.config.upstreams if c.kind == "stdio" and not self.upstreams[c.name].up]
        if down:
            return f"stdio upstreams not running: {', '.join(down)}"
        # A child that came back is ready once its tools are listed again (they left with it).
        unlisted = [c.name for c in self.config.upstreams if c.kind == "stdio" and c.name not in self._listed]
        if unlisted:
            return f"stdio upstreams not listed yet: {', '.join(unlisted)}"
        return None

    def _build(self, config: HttpUpstream | StdioUpstream, http: aiohttp.ClientSession) -> Upstream:
        limits = self.config.limits
        if isinstance(config, StdioUpstream):
            from agentkube.dataplane.mcp.stdio import StdioUpstream as Stdio

            return Stdio(config, limits)
        from agentkube.dataplane.mcp.sse import SseUpstream

        if config.transport == "sse":
            return SseUpstream(config, limits, http)
        return StreamableHttpUpstream(
            config, limits, http, sse_fallback=lambda: SseUpstream(config, limits, http)
        )

    async def run(self) -> None:
        """Serve until SIGTERM, then drain."""
        limits = self.config.limits
        # No trust_env: each upstream works out its egress proxy once (http.egress), and no ~/.netrc
        # adds credentials. No cookie jar: one upstream's cookies must not follow another client.
        self._http = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=30),
        )
        for config in self.config.upstreams:
            upstream = self._build(config, self._http)
            upstream.on_list_changed = functools.partial(self._refresh_soon, config.name)
            upstream.on_down = functools.partial(self._forget, config.name)
            self.metrics.upstream_up.labels(config.name).set_function(functools.partial(_up, upstream))
            self.upstreams[config.name] = upstream
        tracer = configure_tracing("agentkube-mcp-proxy")
        self.front = Front(
            self.config, self.catalog, self.upstreams, self.sealer, self.metrics, _version(), tracer
        )
        self.front.routes(self.program.app)
        self.program.on_drain.append(self.front.drain)
        self.program.on_stop.append(self._close)
        await self.program.run(started=self._start)

    async def _start(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.start()

    async def _close(self) -> None:
        for task in self._refreshing.values():
            task.cancel()
        await asyncio.gather(*(u.close() for u in self.upstreams.values()), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        await asyncio.to_thread(shutdown_tracing)

    # ------------------------------------------------------------------------------------ catalog

    def _refresh_soon(self, name: str, kind: str) -> None:
        kinds: tuple[Kind, ...] = (
            ("resources", "resourceTemplates") if kind == "resources" else (_kind(kind),)
        )
        for k in kinds:
            key = (name, k)
            if key in self._refreshing:
                self._dirty.add(key)  # one more pass after the running one
                continue
            self._refreshing[key] = asyncio.create_task(self._refresh(name, k))

    async def _refresh(self, name: str, kind: Kind) -> None:
        key = (name, kind)
        try:
            while True:
                self._dirty.discard(key)
                items = await self._read_list(name, kind)
                if items is not None:
                    self._apply(name, kind, items)
                if key not in self._dirty:
                    return
        finally:
            self._refreshing.pop(key, None)

    async def _read_list(self, name: str, kind: Kind) -> list[dict[str, Any]] | None:
        """Every page of one list of an upstream; None when it could not be read (keep what we had)."""
        method = LIST_METHODS[kind]
        upstream = self.upstreams[name]
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"cursor": cursor} if cursor else {}
            try:
                exchange = Exchange(client=PROXY_CLIENT, timeout=self._list_timeout())
                reply = await upstream.request(method, params, exchange)
            except UpstreamError as e:
                log.warning("could not list", upstream=name, kind=kind, error=str(e))
                return None
            error = reply.get("error")
            if isinstance(error, dict):
                if error.get("code") == wire.METHOD_NOT_FOUND:
                    return []  # the server has none of these
                log.warning("upstream refused to list", upstream=name, kind=kind, error=error.get("message"))
                return None
            result = reply.get("result")
            if not isinstance(result, dict):
                log.warning("upstream listed garbage", upstream=name, kind=kind)
                return None
            items.extend(i for i in result.get(kind) or () if isinstance(i, dict))
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                return items
            seen.add(cursor)
        log.warning("upstream pagination does not end", upstream=name, kind=kind, pages=MAX_PAGES)
        return items

    def _list_timeout(self) -> float:
        return max(30.0, 3 * self.config.limits.connect_timeout_seconds)

    def _apply(self, name: str, kind: Kind, items: list[dict[str, Any]]) -> None:
        changed = self.catalog.update(name, kind, items)
        if kind == "tools":
            self._listed.add(name)
        log.info("listed", upstream=name, kind=kind, items=len(items), surface_changed=changed)
        self._report(kind)
        if changed and self.front is not None:
            self.front.list_changed("resources" if kind == "resourceTemplates" else kind)

    def _forget(self, name: str) -> None:
        log.warning("upstream down; its items leave the surface", upstream=name)
        self._listed.discard(name)
        for kind in self.catalog.remove(name):
            self._report(kind)
            if self.front is not None:
                self.front.list_changed("resources" if kind == "resourceTemplates" else kind)

    def _report(self, kind: Kind) -> None:
        """Metrics and a warning for every name lost in a collision."""
        for name, count in self.catalog.counts(kind).items():
            self.metrics.upstream_items.labels(name, kind).set(count)
        for c in self.catalog.collisions(kind):
            seen = (kind, c.name, c.winner, c.hidden)
            if seen not in self._collisions:  # said once, counted for as long as it lasts
                self._collisions.add(seen)
                log.warning(
                    "name exposed by two upstreams; the first in spec order wins",
                    kind=kind,
                    name=c.name,
                    winner=c.winner,
                    hidden=c.hidden,
                    fix="set toolPrefix on one of them, or filter the tool out",
                )
            self.metrics.collisions.labels(*seen).set(1)


def _kind(kind: str) -> Kind:
    for known in KINDS:
        if known == kind:
            return known
    raise ValueError(f"no list of {kind!r}")


def _up(upstream: Upstream) -> float:
    return 1.0 if upstream.up else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    """``agentkube mcp-proxy --config PATH``."""
    from agentkube.dataplane.mcp.config import load_mcp_proxy_config_file
    from agentkube.dataplane.server import serve_main

    def assemble(args: argparse.Namespace) -> Proxy:
        return Proxy(load_mcp_proxy_config_file(args.config), host=args.host)

    return serve_main(
        argv,
        prog="agentkube mcp-proxy",
        description="Serve an MCP proxy.",
        config_help="the MCPProxyConfig file the operator renders",
        build=assemble,
    )
