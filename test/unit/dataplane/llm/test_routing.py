"""Routing: which upstreams serve a model, in which order, and when one is set aside."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.dataplane.llm.config import LLMGatewayConfig
from agentkube.dataplane.llm.routing import Router, UnknownModel, retryable


def config(**routing: Any) -> LLMGatewayConfig:
    return LLMGatewayConfig.model_validate(
        {
            "name": "t/gw",
            "listen": {"port": 8080},
            "upstreams": [
                {
                    "name": "b",
                    "provider": "openai",
                    "apiKeyEnv": "K",
                    "models": ["gpt", "mini"],
                    "priority": 2,
                },
                {"name": "a", "provider": "openai", "apiKeyEnv": "K", "models": ["gpt"], "priority": 1},
                {"name": "c", "provider": "anthropic", "apiKeyEnv": "K", "models": ["claude"], "priority": 1},
                {"name": "d", "provider": "openai", "apiKeyEnv": "K", "models": ["gpt"], "priority": 1},
            ],
            "routing": routing,
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def route(router: Router, model: str) -> list[tuple[str, str]]:
    return [(c.upstream, c.model) for c in router.order(router.resolve(model))]


def test_lowest_priority_first_and_ties_in_list_order() -> None:
    assert route(Router(config()), "gpt") == [("a", "gpt"), ("d", "gpt"), ("b", "gpt")]


def test_an_alias_is_sent_as_its_target_to_its_upstream_among_direct_servers() -> None:
    router = Router(
        config(
            modelMap=[
                {"from": "fast", "to": "mini", "upstream": "b"},
                {"from": "gpt", "to": "claude", "upstream": "c"},
            ]
        )
    )
    assert route(router, "fast") == [("b", "mini")]
    # "gpt" is both a direct model and an alias: every candidate, by priority then list order.
    assert route(router, "gpt") == [("a", "gpt"), ("c", "claude"), ("d", "gpt"), ("b", "gpt")]
    assert router.models == ["gpt", "mini", "claude", "fast"]


def test_a_default_model_that_is_a_targets_name_routes_through_its_mapping() -> None:
    router = Router(
        config(defaultModel="sonnet-4", modelMap=[{"from": "s", "to": "sonnet-4", "upstream": "c"}])
    )
    assert router.default_model == "sonnet-4"
    assert route(router, "sonnet-4") == [("c", "sonnet-4")]


def test_an_unknown_model_is_named() -> None:
    with pytest.raises(UnknownModel) as e:
        Router(config()).resolve("nope")
    assert e.value.model == "nope"


def test_an_upstream_that_keeps_failing_is_skipped_for_the_cooldown() -> None:
    clock = Clock()
    router = Router(config(failuresBeforeCooldown=2, cooldownSeconds=30), clock=clock)
    assert router.failed("a") is False
    assert route(router, "gpt")[0] == ("a", "gpt")
    assert router.failed("a") is True
    assert route(router, "gpt") == [("d", "gpt"), ("b", "gpt")]
    assert router.cooling("a")
    clock.now += 31
    assert route(router, "gpt")[0] == ("a", "gpt")
    # Still failing after the cool-down: one more failure sets it aside again.
    assert router.failed("a") is True
    assert route(router, "gpt")[0] != ("a", "gpt")


def test_a_success_ends_the_cooldown_and_the_count() -> None:
    clock = Clock()
    router = Router(config(failuresBeforeCooldown=2), clock=clock)
    router.failed("a")
    router.succeeded("a")
    assert router.failed("a") is False  # the count started over
    router.failed("a")
    router.succeeded("a")
    assert not router.cooling("a")


def test_when_every_candidate_cools_down_they_are_all_tried_in_order() -> None:
    router = Router(config(failuresBeforeCooldown=1), clock=Clock())
    router.failed("c")
    assert route(router, "claude") == [("c", "claude")]


@pytest.mark.parametrize(
    ("status", "moves_on"),
    [
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (529, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, False),
        (413, False),
        (422, False),
        (200, False),
    ],
)
def test_failover_moves_on_for_429_and_5xx_only(status: int, moves_on: bool) -> None:
    assert retryable(status) is moves_on
