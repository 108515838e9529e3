"""API errors: the right type for every Status, the server's words kept, and what is worth a retry."""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import aiohttp
import pytest

from agentkube.runtime.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KindNotServed,
    NotFound,
    RequestTimeout,
    ServerError,
    TooManyRequests,
    Unauthorized,
    WatchStalled,
    is_retryable,
)


def status(
    code: int, reason: str, message: str = "", causes: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if causes is not None:
        body["details"] = {"causes": causes}
    return body


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (400, "BadRequest", BadRequest),
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (410, "Gone", Gone),
        (410, "Expired", Gone),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TooManyRequests),
        (500, "InternalError", ServerError),
        (503, "ServiceUnavailable", ServerError),
        (504, "Timeout", ServerError),
        (418, "", ApiError),
    ],
)
def test_status_code_and_reason_pick_the_error_type(code: int, reason: str, expected: type[ApiError]) -> None:
    error = ApiError.from_status(status(code, reason, "msg"), status=code)
    assert type(error) is expected
    assert (error.status, error.reason, error.message) == (code, reason, "msg")


def test_already_exists_is_a_conflict_but_a_conflict_is_not_already_exists() -> None:
    assert isinstance(ApiError.from_status(status(409, "AlreadyExists"), status=409), Conflict)
    assert not isinstance(ApiError.from_status(status(409, "Conflict"), status=409), AlreadyExists)


def test_a_watch_error_event_without_http_status_uses_the_status_code() -> None:
    # What a watch stream sends when the resourceVersion asked for was compacted away.
    error = ApiError.from_status(status(410, "Expired", "too old resource version: 1 (300)"))
    assert isinstance(error, Gone)
    assert error.status == 410
    assert "too old resource version" in str(error)


def test_invalid_carries_and_prints_every_cause() -> None:
    causes = [
        {"reason": "FieldValueInvalid", "message": 'Invalid value: "Bad_Name"', "field": "metadata.name"},
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.upstreams[0].url"},
    ]
    error = ApiError.from_status(status(422, "Invalid", 'MCP "x" is invalid', causes), status=422)
    assert isinstance(error, Invalid)
    assert error.causes == causes
    text = str(error)
    assert "metadata.name: Invalid value" in text
    assert "spec.upstreams[0].url: Required value" in text
    assert 'MCP "x" is invalid' in text


def test_causes_missing_from_the_message_are_appended_for_any_error() -> None:
    causes = [{"field": "spec.replicas", "message": "must be positive"}]
    error = ApiError.from_status(status(409, "Conflict", "apply failed", causes), status=409)
    assert "spec.replicas: must be positive" in str(error)


def test_a_body_that_is_not_a_status_keeps_the_fallback_message() -> None:
    error = ApiError.from_status(None, status=502, fallback_message="Bad Gateway from a proxy")
    assert isinstance(error, ServerError)
    assert error.message == "Bad Gateway from a proxy"
    assert error.causes == [] and error.body is None
    assert ApiError.from_status({"kind": "Pod"}, status=404).body == {"kind": "Pod"}


def test_kind_not_served_names_the_kind_and_is_not_a_not_found() -> None:
    error = KindNotServed("example.com/v1", "Gizmo")
    assert not isinstance(error, NotFound)
    assert isinstance(error, ApiError) and error.status == 404
    assert "Gizmo" in str(error) and "example.com/v1" in str(error)


def test_errors_survive_pickling() -> None:
    causes = [{"field": "a", "message": "b"}]
    original = ApiError.from_status(status(422, "Invalid", "bad", causes), status=422)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is Invalid and copy.causes == causes and str(copy) == str(original)
    assert str(pickle.loads(pickle.dumps(KindNotServed("v1", "Gizmo")))) == str(KindNotServed("v1", "Gizmo"))


@pytest.mark.parametrize(
    "error",
    [
        ApiError.from_status(status(429, "TooManyRequests"), status=429),
        ApiError.from_status(status(500, "InternalError"), status=500),
        ApiError.from_status(status(503, "ServiceUnavailable"), status=503),
        RequestTimeout("GET /api/v1/pods: no answer within 30 s"),
        WatchStalled("no data"),
        TimeoutError(),
        aiohttp.ClientConnectionError("reset"),
        aiohttp.ServerDisconnectedError(),
        ConnectionRefusedError(),
    ],
    ids=repr,
)
def test_transient_failures_are_retryable(error: BaseException) -> None:
    assert is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        ApiError.from_status(status(404, "NotFound"), status=404),
        ApiError.from_status(status(409, "Conflict"), status=409),
        ApiError.from_status(status(422, "Invalid"), status=422),
        ApiError.from_status(status(403, "Forbidden"), status=403),
        KindNotServed("v1", "Gizmo"),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_answers_a_retry_would_only_repeat_are_not_retryable(error: BaseException) -> None:
    assert not is_retryable(error)


def test_timeouts_are_timeout_errors() -> None:
    assert isinstance(RequestTimeout("x"), TimeoutError)
    assert isinstance(WatchStalled("x"), asyncio.TimeoutError)
