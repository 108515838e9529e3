"""The optional shared store (a Redis-protocol endpoint) the gateway's replicas keep limits and cache in.

What a caller may rely on:

- ``connect(url, password=...)`` returns a ``redis.asyncio.Redis`` that never retries on its own and
  gives up on a connect or a reply after ``timeout`` seconds (0.5 s by default). The store is on
  the request path: a store that is down or slow must cost a request a bounded, small delay, after
  which the caller falls back (``ratelimit``: the replica's local share; ``cache``: a miss), rather
  than the client library's default of ten retries with back-off behind a 5 s timeout. Nothing
  connects until the first command; connections are pooled (16 at most) and calls wait for a free
  one rather than fail. Closing the client (``aclose()``) closes its pool.
- ``key_prefix(gateway)`` is the prefix every key of one gateway starts with, so several
  LLMGateways may share one store without sharing budgets or cache entries.
- ``Outage`` is the one place that decides, for one user of the store, whether to ask the store now,
  and that says so in logs and counters: the first failure logs a warning (the error's class and
  message, which name host and port, never the password) and opens an outage; while it lasts,
  ``should_try()`` lets one call through per ``retry_seconds`` (1 s) to probe the store and answers
  False for the others, which take their fallback at once; the first success logs that the store
  answers again and ends the outage. ``errors`` and ``outages`` only grow (Prometheus counters can
  follow them) and ``down`` is a gauge.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT_SECONDS",
    "STORE_ERRORS",
    "Outage",
    "connect",
    "key_prefix",
]

log = structlog.get_logger("agentkube.llm.store")

DEFAULT_TIMEOUT_SECONDS: Final = 0.5
# More connections do not add throughput from one event loop, and opening many at once is slow.
DEFAULT_MAX_CONNECTIONS: Final = 16
# What a call to the store may raise when the store, not the caller, is at fault: the client's own
# errors (connection refused or reset, timeouts, authentication, READONLY during a failover, OOM),
# socket errors that slip past it, and our own deadline (asyncio.timeout raises TimeoutError).
STORE_ERRORS: Final = (RedisError, OSError, TimeoutError)


def connect(
    url: str,
    *,
    password: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> Redis:
    """A client for the store at ``url`` (``redis://host:port/db`` or ``rediss://``), lazily connected.

    ``password`` comes from the environment variable the config names; a password in the URL works
    too but is better kept out of the config file. At most ``max_connections`` (16) connections are
    open at once; a call that finds them all busy waits for one up to ``timeout`` (the client
    library's default pool would fail it at once, which under load would look like an outage).
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return Redis.from_pool(pool)


def key_prefix(gateway: str) -> str:
    """``agentkube:llm:<gateway>:``, the prefix of every key one gateway (``namespace/name``) writes."""
    return f"agentkube:llm:{gateway}:"


class Outage:
    """Whether one user of the store (``what``: ``ratelimit`` or ``cache``) should ask it now."""

    def __init__(
        self, what: str, *, retry_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.what = what
        self.retry_seconds = retry_seconds
        self.errors = 0
        self.outages = 0
        self._clock = clock
        self._down = False
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        return self._down

    def should_try(self) -> bool:
        """True when the store is up, or when it is down and this call is the probe that is due."""
        if not self._down:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry_seconds
        return True

    def failed(self, error: BaseException) -> None:
        self.errors += 1
        self._next_try = self._clock() + self.retry_seconds
        if not self._down:
            self._down = True
            self.outages += 1
            log.warning(
                "shared store unreachable; falling back until it answers",
                user=self.what,
                error=f"{type(error).__name__}: {error}"
                if str(error)
                else f"{type(error).__name__}: no answer in time",
                retry_seconds=self.retry_seconds,
            )

    def succeeded(self) -> None:
        if self._down:
            self._down = False
            log.info("shared store answers again", user=self.what)
