"""Error envelopes: every failure in the shape of the API the client spoke."""

from __future__ import annotations

import orjson
import pytest

from agentkube.dataplane.llm.apis import (
    APIS,
    CHAT,
    EMBEDDINGS,
    KINDS,
    MESSAGES,
    PATHS,
    RESPONSES,
    Failure,
    error_body,
    family,
    stream_error,
)


def test_four_apis_four_paths() -> None:
    assert [PATHS[a] for a in APIS] == [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
        "/v1/messages",
    ]
    assert [family(a) for a in APIS] == ["openai", "openai", "openai", "anthropic"]


@pytest.mark.parametrize("api", [CHAT, RESPONSES, EMBEDDINGS])
def test_openai_envelope(api: str) -> None:
    body = orjson.loads(error_body(api, Failure("not_found", "no such model", param="model")))  # type: ignore[arg-type]
    assert body == {
        "error": {
            "message": "no such model",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_anthropic_envelope() -> None:
    body = orjson.loads(error_body(MESSAGES, Failure("authentication", "invalid API key")))
    assert body == {"type": "error", "error": {"type": "authentication_error", "message": "invalid API key"}}


@pytest.mark.parametrize(
    ("kind", "status", "openai_type", "anthropic_type"),
    [
        ("invalid_request", 400, "invalid_request_error", "invalid_request_error"),
        ("authentication", 401, "invalid_request_error", "authentication_error"),
        ("permission", 403, "invalid_request_error", "permission_error"),
        ("not_found", 404, "invalid_request_error", "not_found_error"),
        ("request_too_large", 413, "invalid_request_error", "request_too_large"),
        ("rate_limit", 429, "requests", "rate_limit_error"),
        ("api_error", 500, "server_error", "api_error"),
        ("bad_gateway", 502, "server_error", "api_error"),
        ("overloaded", 503, "server_error", "overloaded_error"),
        ("timeout", 504, "server_error", "timeout_error"),
    ],
)
def test_each_kind_has_a_status_and_a_type_in_each_family(
    kind: str, status: int, openai_type: str, anthropic_type: str
) -> None:
    failure = Failure(kind, "m")  # type: ignore[arg-type]
    assert failure.status == status == KINDS[kind].status  # type: ignore[index]
    assert orjson.loads(error_body(CHAT, failure))["error"]["type"] == openai_type
    assert orjson.loads(error_body(MESSAGES, failure))["error"]["type"] == anthropic_type


def test_a_failure_may_override_status_code_and_carry_headers() -> None:
    failure = Failure("rate_limit", "slow down", code="custom", status=429, headers={"Retry-After": "2"})
    assert failure.headers == {"Retry-After": "2"}
    assert orjson.loads(error_body(CHAT, failure))["error"]["code"] == "custom"
    assert Failure("invalid_request", "no", status=405).status == 405


def test_stream_errors_are_one_frame_each_sdk_raises_on() -> None:
    failure = Failure("bad_gateway", "upstream u failed mid-stream")
    chat = stream_error(CHAT, failure)
    assert chat.startswith(b"data: ") and chat.endswith(b"\n\n")
    assert orjson.loads(chat[6:])["error"]["message"] == "upstream u failed mid-stream"
    name, data = stream_error(MESSAGES, failure).split(b"\n", 1)
    assert name == b"event: error"
    assert orjson.loads(data.removeprefix(b"data: ")) == {
        "type": "error",
        "error": {"type": "api_error", "message": "upstream u failed mid-stream"},
    }
    name, data = stream_error(RESPONSES, failure, sequence_number=7).split(b"\n", 1)
    event = orjson.loads(data.removeprefix(b"data: "))
    assert name == b"event: error" and event["type"] == "error" and event["sequence_number"] == 7
    assert event["code"] == "upstream_unavailable"
