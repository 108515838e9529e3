"""The local rate limiter (GCRA on an injected clock), its decisions' headers, and scope keys.

The shared limiter runs the same arithmetic in the store; test/integration/test_llm_shared_store.py
checks it against a real redis-server.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.llm.ratelimit import (
    MAX_REQUESTS_PER_MINUTE,
    Decision,
    LocalLimiter,
    scope_key,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def burst(limiter: LocalLimiter, key: str, n: int) -> list[Decision]:
    return [limiter.decide(key) for _ in range(n)]


def test_a_whole_budget_goes_at_once_then_one_request_per_interval() -> None:
    clock = Clock()
    limiter = LocalLimiter(60, clock=clock)
    decisions = burst(limiter, "global", 61)
    assert [d.allowed for d in decisions] == [True] * 60 + [False]
    assert decisions[-1].retry_after == pytest.approx(1.0)
    clock.now += 0.999
    assert not limiter.decide("global").allowed
    clock.now += 0.001
    assert limiter.decide("global").allowed
    assert not limiter.decide("global").allowed


def test_remaining_reset_and_retry_after_count_down() -> None:
    limiter = LocalLimiter(3, clock=Clock())
    first, second, third, refused = burst(limiter, "k", 4)
    assert [(d.remaining, d.reset_seconds) for d in (first, second, third)] == [
        (2, 20.0),
        (1, 40.0),
        (0, 60.0),
    ]
    assert all(d.limit == 3 and d.retry_after == 0.0 for d in (first, second, third))
    assert (refused.allowed, refused.remaining, refused.reset_seconds, refused.retry_after) == (
        False,
        0,
        60.0,
        20.0,
    )


def test_refused_requests_do_not_push_the_next_allowed_time_out() -> None:
    clock = Clock()
    limiter = LocalLimiter(2, clock=clock)
    burst(limiter, "k", 2)
    assert not any(d.allowed for d in burst(limiter, "k", 100))
    clock.now += 30.0
    assert limiter.decide("k").allowed


def test_an_idle_key_has_its_whole_budget_back_after_a_minute() -> None:
    clock = Clock()
    limiter = LocalLimiter(5, clock=clock)
    burst(limiter, "k", 5)
    clock.now += 60.0
    decisions = burst(limiter, "k", 6)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[0].remaining == 4


@pytest.mark.parametrize("limit", [1, 7, 13, 999, 7_745, 100_000])
def test_a_burst_is_exactly_the_limit_even_when_it_does_not_divide_a_minute(limit: int) -> None:
    limiter = LocalLimiter(limit, clock=Clock())
    decisions = burst(limiter, "k", limit + 1)
    assert sum(d.allowed for d in decisions) == limit
    assert not decisions[-1].allowed
    assert decisions[limit - 1].remaining == 0


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 120),
    gaps=st.lists(st.integers(0, 4_000), min_size=1, max_size=400),
)
def test_no_window_of_a_minute_admits_more_than_a_burst_and_a_refill(limit: int, gaps: list[int]) -> None:
    """Whatever the arrival pattern (gaps in ms): at most 2L - 1 in any 60 s, and never more than
    L + elapsed / interval in total."""
    clock = Clock(0.0)
    limiter = LocalLimiter(limit, clock=clock)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap / 1000
        if limiter.decide("k").allowed:
            admitted.append(clock.now)
    interval = (60_000_000 // limit) / 1e6
    assert len(admitted) <= limit + int(clock.now / interval) + 1
    for i, start in enumerate(admitted):
        in_window = sum(1 for t in admitted[i:] if t < start + 60.0)
        assert in_window <= max(2 * limit - 1, 2)


def test_keys_are_separate_budgets() -> None:
    limiter = LocalLimiter(2, clock=Clock())
    burst(limiter, "client:a", 2)
    assert not limiter.decide("client:a").allowed
    assert limiter.decide("client:b").allowed
    assert limiter.decide("model:m").allowed


@pytest.mark.parametrize(
    ("per_minute", "replicas", "share"), [(10, 1, 10), (10, 3, 3), (100, 4, 25), (2, 5, 1), (1, 1, 1)]
)
def test_each_replica_gets_its_share_of_the_budget_and_at_least_one(
    per_minute: int, replicas: int, share: int
) -> None:
    limiter = LocalLimiter(per_minute, replicas=replicas, clock=Clock())
    assert limiter.limit == share
    decisions = burst(limiter, "global", share + 1)
    assert [d.allowed for d in decisions] == [True] * share + [False]
    assert all(d.limit == share for d in decisions)


def test_keys_with_their_whole_budget_back_are_forgotten() -> None:
    clock = Clock()
    limiter = LocalLimiter(10, clock=clock)
    for i in range(3000):
        limiter.decide(f"client:{i}")
    clock.now += 61.0
    for i in range(3000):
        limiter.decide(f"fresh:{i}")
    assert not any(key.startswith("client:") for key in limiter._tat)
    assert len(limiter._tat) <= 3000
    assert limiter.decide("fresh:0").remaining == 8


@pytest.mark.parametrize(
    ("per_minute", "replicas", "message"),
    [
        (0, 1, "rateLimit.requestsPerMinute: 0 is outside"),
        (0, 3, "rateLimit.requestsPerMinute: 0 is outside"),
        (MAX_REQUESTS_PER_MINUTE + 1, 1, "rateLimit.requestsPerMinute"),
        (10, 0, "rateLimit.replicas: 0 must be at least 1"),
    ],
)
def test_an_impossible_limit_is_refused_naming_the_field(
    per_minute: int, replicas: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LocalLimiter(per_minute, replicas=replicas)


def test_headers_of_an_allowed_request_are_openai_style() -> None:
    decision = Decision(allowed=True, limit=60, remaining=59, reset_seconds=1.0, retry_after=0.0)
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
    }


def test_headers_of_a_refused_request_carry_retry_after_rounded_up() -> None:
    headers = Decision(allowed=False, limit=3, remaining=0, reset_seconds=60.0, retry_after=19.2).headers()
    assert headers["Retry-After"] == "20"
    assert headers["retry-after-ms"] == "19200"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"
    assert Decision(False, 6000, 0, 0.01, 0.0001).headers()["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0201, "21ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.25, "59.25s"),
        (360.0, "6m0s"),
    ],
)
def test_reset_durations_read_as_openai_writes_them(seconds: float, text: str) -> None:
    headers = Decision(True, 1, 0, seconds, 0.0).headers()
    assert headers["x-ratelimit-reset-requests"] == text


def test_scope_keys_tell_scopes_and_names_apart() -> None:
    assert scope_key("global", client="a", model="m") == "global"
    assert scope_key("perClient", client="a", model="m") == "client:a"
    assert scope_key("perModel", client="a", model="m") == "model:m"
    with pytest.raises(ValueError, match="perClient needs an authenticated client id"):
        scope_key("perClient", client=None, model="m")


async def test_acquire_is_the_same_decision_as_decide() -> None:
    limiter = LocalLimiter(1, clock=Clock())
    assert (await limiter.acquire("k")).allowed
    assert not (await limiter.acquire("k")).allowed
    assert not limiter.decide("k").allowed
