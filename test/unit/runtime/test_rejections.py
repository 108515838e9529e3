"""Which answers refuse a write for what it says (``is_rejection``): a retry would be refused again."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.runtime.errors import ApiError, KindNotServed, RequestTimeout, is_rejection


def answer(code: int, reason: str, message: str = "") -> ApiError:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "code": code,
        "reason": reason,
        "message": message,
    }
    return ApiError.from_status(body, status=code)


@pytest.mark.parametrize(
    "error",
    [
        answer(
            500,
            "InternalError",
            "failed to create typed patch object (ns/a; /v1, Kind=ConfigMap): "
            ".bogus: field not declared in schema",
        ),
        answer(
            500,
            "InternalError",
            "failed to create typed patch object (ns/d; apps/v1, Kind=Deployment): .spec.replicas: "
            "expected numeric (int or float), got string",
        ),
        answer(422, "Invalid", 'ConfigMap "a" is invalid: metadata.labels: Invalid value'),
        answer(400, "BadRequest", "error decoding YAML"),
        answer(413, "RequestEntityTooLarge", "request is too large"),
        answer(415, "UnsupportedMediaType", "the body of the request was in an unknown format"),
    ],
    ids=lambda e: f"{e.status}:{e.message[:40]}",
)
def test_answers_refusing_the_body_are_rejections(error: ApiError) -> None:
    assert is_rejection(error)


@pytest.mark.parametrize(
    "error",
    [
        answer(500, "InternalError", "etcdserver: request timed out"),
        answer(
            500, "InternalError", 'Internal error occurred: failed calling webhook "x": connection refused'
        ),
        answer(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
        answer(429, "TooManyRequests", "please try again later"),
        answer(409, "Conflict", "the object has been modified"),
        answer(403, "Forbidden", "cannot patch configmaps"),
        answer(404, "NotFound", 'namespaces "gone" not found'),
        KindNotServed("example.com/v1", "Gizmo"),
        RequestTimeout("no answer"),
        ValueError("a bug"),
    ],
    ids=repr,
)
def test_failures_that_may_pass_next_time_are_not_rejections(error: BaseException) -> None:
    assert not is_rejection(error)
