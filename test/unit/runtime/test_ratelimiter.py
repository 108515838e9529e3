from __future__ import annotations

import pytest

from agentkube.runtime.ratelimiter import (
    BucketRateLimiter,
    ExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    default_controller_rate_limiter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_exponential_delays_double_from_5ms_per_key() -> None:
    limiter = ExponentialFailureRateLimiter()
    assert [limiter.when("a") for _ in range(5)] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert limiter.when("b") == pytest.approx(0.005)
    assert limiter.num_requeues("a") == 5
    assert limiter.num_requeues("b") == 1


def test_exponential_delay_is_capped_at_1000s_and_stays_capped() -> None:
    limiter = ExponentialFailureRateLimiter()
    delays = [limiter.when("a") for _ in range(40)]
    # 5 ms * 2**17 = 655.36 s is the last uncapped step; 2**18 would be 1310.72 s.
    assert delays[17] == pytest.approx(655.36)
    assert delays[18:] == [1000.0] * 22
    assert limiter.num_requeues("a") == 40


def test_exponential_forget_restarts_at_base_delay() -> None:
    limiter = ExponentialFailureRateLimiter()
    for _ in range(3):
        limiter.when("a")
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)


def test_exponential_rejects_max_below_base() -> None:
    with pytest.raises(ValueError):
        ExponentialFailureRateLimiter(1.0, 0.5)


def test_bucket_allows_burst_then_spaces_at_rate() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(10.0, 100, clock=clock)
    assert [bucket.when(i) for i in range(100)] == [0.0] * 100
    assert [bucket.when(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_refills_with_time_up_to_burst() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(10.0, 100, clock=clock)
    for i in range(102):
        bucket.when(i)  # two tokens in debt
    clock.now += 0.5  # five tokens refilled: three in hand
    assert [bucket.when("x") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])
    clock.now += 3600  # refill never exceeds the burst
    assert sum(1 for i in range(150) if bucket.when(i) == 0.0) == 100


def test_bucket_has_no_per_key_state() -> None:
    bucket = BucketRateLimiter(clock=FakeClock())
    bucket.when("a")
    bucket.forget("a")
    assert bucket.num_requeues("a") == 0


def test_bucket_ignores_a_clock_going_backwards() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(1.0, 1, clock=clock)
    assert bucket.when("a") == 0.0
    clock.now -= 100
    assert bucket.when("a") == pytest.approx(1.0)


def test_max_of_takes_the_largest_delay_and_counts_in_every_part() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter(ExponentialFailureRateLimiter(), BucketRateLimiter(1.0, 1, clock=clock))
    assert limiter.when("a") == pytest.approx(0.005)  # bucket has a token; backoff rules
    assert limiter.when("a") == pytest.approx(1.0)  # bucket in debt 1 s > backoff 10 ms
    clock.now += 10
    assert limiter.when("a") == pytest.approx(0.02)  # bucket full again; backoff kept counting
    assert limiter.num_requeues("a") == 3
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_controller_rate_limiter_combines_backoff_and_bucket() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock=clock)
    # 100 distinct failing keys spend the burst at 5 ms each; the next ones queue behind the bucket.
    assert [limiter.when(i) for i in range(100)] == pytest.approx([0.005] * 100)
    assert limiter.when("late") == pytest.approx(0.1)
    assert limiter.when("later") == pytest.approx(0.2)
