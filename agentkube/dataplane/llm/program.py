"""``agentkube llm-gateway``: the program an LLMGateway's Deployment runs, wired from its config file.

The path of one request: ``auth`` (which client) -> ``ratelimit`` -> ``guardrails`` -> ``cache`` ->
``routing`` (which upstreams, in which order) -> ``providers`` (how to address each) -> the upstream,
all driven by ``gateway``. This module builds those pieces from the config and the environment and
serves them with the shared ``dataplane.server.Program`` (probes, the metrics port, JSON logs, the
SIGTERM drain).

What a caller may rely on:

- A config that does not load, a provider key or client key variable that is unset, or a store URL
  that is malformed ends the program with exit code 2 and one line naming the field and the fix,
  before anything listens.
- ``/readyz`` answers 200 once both servers listen: the gateway needs no upstream to be up to be
  ready (an upstream that is down costs a failover, not readiness).
- With ``store`` set, rate limits and the cache live in the shared store (exact across replicas);
  while the store is unreachable each replica falls back to its own share (``ratelimit``) and the
  cache misses (``cache``).
- Egress to every upstream honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (worked out once per
  upstream); ``~/.netrc`` is never read and no cookie is kept between requests.
- Traces go to the OTLP endpoint ``OTEL_EXPORTER_OTLP_*`` names, when it names one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from agentkube.dataplane.http1 import Pool
from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.auth import Clients
from agentkube.dataplane.llm.cache import Cache, LocalCache, SharedCache
from agentkube.dataplane.llm.config import LLMGatewayConfig
from agentkube.dataplane.llm.gateway import Gateway, Policies
from agentkube.dataplane.llm.guardrails import Guardrails
from agentkube.dataplane.llm.metrics import GatewayMetrics
from agentkube.dataplane.llm.providers import Provider, build
from agentkube.dataplane.llm.ratelimit import Limiter, LocalLimiter, SharedLimiter
from agentkube.dataplane.llm.routing import Router
from agentkube.dataplane.llm.store import Outage, connect, key_prefix
from agentkube.dataplane.server import Program
from agentkube.dataplane.tracing import configure_tracing, shutdown_tracing

__all__ = ["LLMGatewayProgram", "main"]

log = structlog.get_logger("agentkube.llm")


class LLMGatewayProgram:
    """One LLM gateway: its providers, policies and the program that serves them."""

    def __init__(
        self,
        config: LLMGatewayConfig,
        *,
        host: str | None = None,
        environ: Mapping[str, str] | None = None,
        debug: bool = False,
    ) -> None:
        """Raises ``ValueError`` (a ``ProviderError``, ``ClientKeyError``) naming what is missing."""
        env = os.environ if environ is None else environ
        self.config = config
        self.registry = CollectorRegistry()
        self.providers: dict[str, Provider] = {u.name: build(u, env) for u in config.upstreams}
        self.clients = Clients(config.auth, env)
        self.router = Router(config)
        self.metrics = GatewayMetrics(self.registry, config.served_models, [u.name for u in config.upstreams])
        self._store: Any = None
        self._store_password = _store_password(config, env)
        self.debug = debug
        self.policies = self._policies()
        self.program = Program(
            port=config.listen.port,
            metrics_port=config.metrics.port,
            registry=self.registry,
            ready=self.ready,
            host=host,
            grace_seconds=config.limits.grace_seconds,
            lean_api=True,
        )
        self.gateway: Gateway | None = None

    def ready(self) -> str | None:
        return None if self.gateway is not None and self.gateway.http is not None else "starting"

    def _policies(self) -> Policies:
        config = self.config
        guardrails = None
        if config.guardrails.pii_redaction or config.guardrails.input_filters:
            guardrails = Guardrails(
                pii_redaction=config.guardrails.pii_redaction, input_filters=config.guardrails.input_filters
            )
        limiter: Limiter | None = None
        cache: Cache | None = None
        if config.store is not None and (config.rate_limit is not None or config.caching.enabled):
            self._store = connect(config.store.url, password=self._store_password)
        if config.rate_limit is not None:
            share = LocalLimiter(
                config.rate_limit.requests_per_minute, replicas=config.rate_limit.replicas or 1
            )
            limiter = (
                SharedLimiter(
                    self._store,
                    config.rate_limit.requests_per_minute,
                    fallback=share,
                    prefix=key_prefix(config.name),
                )
                if self._store is not None
                else share
            )
        if config.caching.enabled:
            cache = (
                SharedCache(self._store, config.caching.ttl_seconds, prefix=key_prefix(config.name))
                if self._store is not None
                else LocalCache(config.caching.max_entries, config.caching.ttl_seconds)
            )
        for user, policy in (("ratelimit", limiter), ("cache", cache)):
            outage = getattr(policy, "outage", None)
            if isinstance(outage, Outage):
                self.metrics.store_down.labels(user).set_function(_reader(outage, "down"))
                self.metrics.store_errors.labels(user).set_function(_reader(outage, "errors"))
        return Policies(translate=translate, guardrails=guardrails, limiter=limiter, cache=cache)

    async def run(self) -> None:
        """Serve until SIGTERM, then drain."""
        tracer = configure_tracing("agentkube-llm-gateway")
        self.gateway = Gateway(
            self.config,
            self.providers,
            self.clients,
            self.router,
            self.metrics,
            policies=self.policies,
            tracer=tracer,
            debug=self.debug,
        )
        self.gateway.routes(self.program.routes)
        self.program.on_stop.append(self._close)
        await self.program.run(started=self._start)

    async def _start(self) -> None:
        assert self.gateway is not None
        # Each provider worked out its egress proxy once (no ~/.netrc credentials); the client keeps
        # no cookies, so one client's never follow another's request.
        self.gateway.http = Pool()
        log.info(
            "llm gateway",
            name=self.config.name,
            upstreams=list(self.providers),
            models=len(self.router.models),
            auth=self.config.auth.mode,
            clients=len(self.clients.ids),
        )

    async def _close(self) -> None:
        if self.gateway is not None and self.gateway.http is not None:
            await self.gateway.http.close()
        if self._store is not None:
            with contextlib.suppress(Exception):
                await self._store.aclose()
        await asyncio.to_thread(shutdown_tracing)


def _reader(outage: Outage, attribute: str) -> Callable[[], float]:
    return lambda: float(getattr(outage, attribute))


def _store_password(config: LLMGatewayConfig, environ: Mapping[str, str]) -> str | None:
    if config.store is None or config.store.password_env is None:
        return None
    value = environ.get(config.store.password_env)
    if not value:
        raise ValueError(
            f"store.passwordEnv: {config.store.password_env} is not set in the gateway's environment; "
            "the Deployment fills it from the store's password Secret"
        )
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``agentkube llm-gateway --config PATH``."""
    from agentkube.dataplane.llm.config import load_llm_gateway_config_file
    from agentkube.dataplane.server import serve_main

    def assemble(args: argparse.Namespace) -> LLMGatewayProgram:
        config = load_llm_gateway_config_file(args.config)
        return LLMGatewayProgram(config, host=args.host, debug=args.log_level == "debug")

    return serve_main(
        argv,
        prog="agentkube llm-gateway",
        description="Serve an LLM gateway.",
        config_help="the LLMGatewayConfig file the operator renders",
        build=assemble,
    )
