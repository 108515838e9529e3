"""Which upstreams serve a request, in which order, and what a failed attempt means.

``Router.resolve(model)`` takes the requested model (or ``routing.defaultModel`` when the request names
none) to its candidates: every upstream that lists the model (sent as it is), and every modelMap
alias with that ``from`` (sent as ``to`` to its ``upstream``), ordered by ``priority`` (lowest
first), equal priorities in ``upstreams`` list order. ``routing.defaultModel`` may also be a
modelMap ``to``: then the entries with that ``to`` serve it.

``Router.order(candidates)`` applies the cool-down: an upstream that failed
``failuresBeforeCooldown`` times in a row is skipped for ``cooldownSeconds`` while another candidate
is not cooling down; when every candidate is, they are tried anyway, in order (a gateway with one
upstream keeps trying rather than failing fast). A success ends the cool-down at once.

``retryable(status)`` is the failover rule: 429 and 5xx move on to the next candidate (so do
connection errors and timeouts, which have no status); every other status goes back to the client.
The gateway applies it only before the first byte reached the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agentkube.dataplane.llm.config import LLMGatewayConfig

__all__ = ["Candidate", "Router", "UnknownModel", "retryable"]


def retryable(status: int) -> bool:
    """Whether an upstream's answer with ``status`` sends the request to the next candidate."""
    return status == 429 or 500 <= status <= 599


class UnknownModel(LookupError):
    """No upstream serves the model asked for."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


@dataclass(frozen=True, slots=True)
class Candidate:
    upstream: str
    model: str
    """The model name sent to the upstream (an alias's ``to``)."""
    priority: int
    index: int
    """The upstream's position in ``upstreams`` (the tie-breaker)."""


@dataclass(slots=True)
class _Health:
    failures: int = 0
    until: float = 0.0


class Router:
    def __init__(self, config: LLMGatewayConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.default_model = config.routing.default_model
        self.models = config.served_models
        self._threshold = config.routing.failures_before_cooldown
        self._cooldown = config.routing.cooldown_seconds
        self._clock = clock
        self._health: dict[str, _Health] = {u.name: _Health() for u in config.upstreams}
        self._routes: dict[str, tuple[Candidate, ...]] = {}
        position = {u.name: (i, u.priority) for i, u in enumerate(config.upstreams)}
        routes: dict[str, dict[tuple[str, str], Candidate]] = {}
        for i, upstream in enumerate(config.upstreams):
            for model in upstream.models:
                routes.setdefault(model, {})[(upstream.name, model)] = Candidate(
                    upstream.name, model, upstream.priority, i
                )
        for mapping in config.routing.model_map:
            index, priority = position[mapping.upstream]
            routes.setdefault(mapping.from_, {}).setdefault(
                (mapping.upstream, mapping.to), Candidate(mapping.upstream, mapping.to, priority, index)
            )
        default = self.default_model
        if default is not None and default not in routes:
            for mapping in config.routing.model_map:
                if mapping.to == default:
                    index, priority = position[mapping.upstream]
                    routes.setdefault(default, {})[(mapping.upstream, default)] = Candidate(
                        mapping.upstream, default, priority, index
                    )
        for model, found in routes.items():
            self._routes[model] = tuple(sorted(found.values(), key=lambda c: (c.priority, c.index)))

    def resolve(self, model: str) -> tuple[Candidate, ...]:
        """The candidates for ``model`` in priority order; ``UnknownModel`` when there are none."""
        found = self._routes.get(model)
        if not found:
            raise UnknownModel(model)
        return found

    def cooling(self, upstream: str) -> bool:
        health = self._health.get(upstream)
        return health is not None and health.until > self._clock()

    def order(self, candidates: tuple[Candidate, ...]) -> list[Candidate]:
        """The candidates to try, in order: those not cooling down, or all of them when every one is."""
        ready = [c for c in candidates if not self.cooling(c.upstream)]
        return ready or list(candidates)

    def failed(self, upstream: str) -> bool:
        """Count a failure of ``upstream``; True when it starts a cool-down."""
        health = self._health.setdefault(upstream, _Health())
        health.failures += 1
        if health.failures >= self._threshold and health.until <= self._clock():
            health.until = self._clock() + self._cooldown
            return True
        return False

    def succeeded(self, upstream: str) -> None:
        health = self._health.get(upstream)
        if health is not None:
            health.failures = 0
            health.until = 0.0
