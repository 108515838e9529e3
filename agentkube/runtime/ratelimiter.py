"""How long a key waits before it is retried: per-key exponential backoff and an overall token bucket.

What a caller may rely on:

- A rate limiter answers ``when(key)`` with a delay in seconds, and each call counts as one more
  retry of that key; ``forget(key)`` ends the key's history (call it once the key succeeded);
  ``num_requeues(key)`` is how many times ``when`` was asked since the last ``forget``.
- ``ExponentialFailureRateLimiter``: ``base_delay * 2**n`` for the n-th retry (n from 0), capped at
  ``max_delay``. Defaults 5 ms and 1000 s, as client-go's controller default.
- ``BucketRateLimiter``: one token bucket for all keys (10 per second, burst 100 by default). A call
  reserves a token even when none is left, so a burst of failures is spread out over time instead of
  all retrying at once; the answer is how long until that reservation is covered.
- ``MaxOfRateLimiter``: the largest delay of its parts; ``forget`` forgets in every part.
- ``default_controller_rate_limiter()`` is the combination controllers use unless told otherwise.
- Every limiter takes an injectable ``clock`` (seconds, monotonic) so tests get exact numbers.
- Not thread-safe: one event loop owns each limiter, like the work queue that holds it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from typing import Protocol

__all__ = [
    "BucketRateLimiter",
    "Clock",
    "ExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimiter",
    "default_controller_rate_limiter",
]

Clock = Callable[[], float]


class RateLimiter(Protocol):
    """What the work queue asks of a rate limiter."""

    def when(self, key: Hashable) -> float:
        """Seconds to wait before ``key`` is retried; counts one more retry."""
        ...

    def forget(self, key: Hashable) -> None:
        """Drop the retry history of ``key``."""
        ...

    def num_requeues(self, key: Hashable) -> int:
        """Retries of ``key`` since it was last forgotten."""
        ...


class ExponentialFailureRateLimiter:
    """``base_delay * 2**failures``, capped at ``max_delay``; failures counted per key."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError(f"need 0 < base_delay <= max_delay, got {base_delay!r}, {max_delay!r}")
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[Hashable, int] = {}
        # Past this exponent the delay is capped anyway; checking it first keeps 2**n from overflowing
        # a float for a key that has failed for weeks.
        self._cap_exponent = 0
        while math.ldexp(base_delay, self._cap_exponent) < max_delay:
            self._cap_exponent += 1

    def when(self, key: Hashable) -> float:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        if n >= self._cap_exponent:
            return self.max_delay
        return min(math.ldexp(self.base_delay, n), self.max_delay)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """One token bucket shared by all keys: ``rate`` tokens per second, at most ``burst`` saved up.

    Reservation semantics (as golang.org/x/time/rate's ``Reserve``): every call takes a token, letting
    the bucket go into debt, and the delay is the time until the debt is paid off. So the 101st
    failure in the same instant waits 0.1 s, the 102nd 0.2 s, and so on.
    """

    def __init__(self, rate: float = 10.0, burst: int = 100, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {rate!r}, {burst!r}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def when(self, key: Hashable) -> float:
        now = self._clock()
        # A clock read earlier than the last one (an injected clock going back) must not mint tokens.
        elapsed = max(0.0, now - self._last)
        self._last = max(now, self._last)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate) - 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def forget(self, key: Hashable) -> None:
        """Nothing to forget: the bucket has no per-key state."""

    def num_requeues(self, key: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The largest delay any of ``limiters`` asks for; every part counts every retry."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one rate limiter")
        self.limiters = limiters

    def when(self, key: Hashable) -> float:
        # Every part must see every retry (the bucket spends a token, the backoff counts a
        # failure), so no short-circuiting here.
        return max([limiter.when(key) for limiter in self.limiters])

    def forget(self, key: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return max(limiter.num_requeues(key) for limiter in self.limiters)


def default_controller_rate_limiter(*, clock: Clock = time.monotonic) -> MaxOfRateLimiter:
    """Per-key 5 ms doubling to 1000 s, and 10 retries per second overall with a burst of 100."""
    return MaxOfRateLimiter(
        ExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(10.0, 100, clock=clock),
    )
