"""429 and Retry-After: the server's wait is read from header and body, and nothing retries sooner."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.runtime.controller import Controller
from agentkube.runtime.errors import (
    ApiError,
    ServerError,
    TooManyRequests,
    retry_after,
)
from agentkube.runtime.reflector import Backoff, retry_delay
from test.unit.runtime.test_controller import Recorder, eventually, started, stopped, unique


def status(code: int, reason: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason}
    body["message"] = "the server has received too many requests and has asked us to try again later"
    if details is not None:
        body["details"] = details
    return body


def test_retry_after_comes_from_the_status_details() -> None:
    error = ApiError.from_status(status(429, "TooManyRequests", {"retryAfterSeconds": 7}), status=429)
    assert isinstance(error, TooManyRequests)
    assert error.retry_after == 7.0
    assert retry_after(error) == 7.0


def test_retry_after_header_is_read_and_the_longer_of_header_and_body_wins() -> None:
    error = ApiError.from_status(
        status(429, "TooManyRequests", {"retryAfterSeconds": 2}), status=429, retry_after_header="5"
    )
    assert error.retry_after == 5.0
    only_header = ApiError.from_status(status(429, "TooManyRequests"), status=429, retry_after_header="3")
    assert only_header.retry_after == 3.0


@pytest.mark.parametrize("header", ["", "soon", "-4", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_retry_after_header_that_is_not_seconds_is_ignored(header: str) -> None:
    error = ApiError.from_status(status(429, "TooManyRequests"), status=429, retry_after_header=header)
    assert error.retry_after is None


def test_a_5xx_may_carry_retry_after_too() -> None:
    error = ApiError.from_status(status(503, "ServiceUnavailable"), status=503, retry_after_header="4")
    assert isinstance(error, ServerError) and error.retry_after == 4.0


def test_retry_after_is_found_through_wrapping_and_exception_groups() -> None:
    throttled = ApiError.from_status(status(429, "TooManyRequests", {"retryAfterSeconds": 9}), status=429)
    try:
        try:
            raise throttled
        except ApiError as inner:
            raise RuntimeError("reconcile step failed") from inner
    except RuntimeError as wrapped:
        assert retry_after(wrapped) == 9.0
        group = ExceptionGroup("children", [ValueError("x"), wrapped])
        assert retry_after(group) == 9.0
    assert retry_after(ValueError("no wait asked")) is None


def test_retry_after_survives_pickling() -> None:
    import pickle

    error = ApiError.from_status(status(429, "TooManyRequests", {"retryAfterSeconds": 3}), status=429)
    assert pickle.loads(pickle.dumps(error)).retry_after == 3.0


async def test_a_throttled_reconcile_is_requeued_no_sooner_than_the_server_asked() -> None:
    throttled = ApiError.from_status(status(429, "TooManyRequests", {"retryAfterSeconds": 1}), status=429)
    recorder = Recorder(throttled, None)
    controller = Controller(unique("throttled"), recorder)
    source, task = await started(controller)
    try:
        source.add("a")
        await eventually(lambda: len(recorder.calls) == 2, within=10)
        (_, first), (_, second) = recorder.calls
        assert second - first >= 1.0, f"retried after {second - first:.3f} s; the server asked for 1 s"
    finally:
        await stopped(controller, task)


def test_reflector_waits_at_least_what_the_server_asked() -> None:
    backoff = Backoff(rng=lambda: 0.0)
    throttled = ApiError.from_status(status(429, "TooManyRequests", {"retryAfterSeconds": 12}), status=429)
    assert retry_delay(backoff, throttled) == 12.0
    # A Retry-After shorter than the backoff does not shorten it.
    backoff = Backoff(initial=20.0, cap=30.0, rng=lambda: 0.0)
    assert retry_delay(backoff, throttled) == 20.0


def test_reflector_never_retries_a_429_without_retry_after_in_a_hot_loop() -> None:
    backoff = Backoff(initial=0.01, cap=0.02, rng=lambda: 0.0)
    bare = ApiError.from_status(status(429, "TooManyRequests"), status=429)
    assert retry_delay(backoff, bare) >= 1.0
