"""Upstream error envelopes re-written in the client's envelope, as the client SDKs raise them."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import orjson
import pytest
from anthropic.types.shared import ErrorResponse

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import API
from test.unit.dataplane.llm.test_translate_samples import CHAT, MESSAGES, OPENAI_ERROR, RESPONSES


def _openai_error(status: int, type_: str, message: str, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def _anthropic_error(type_: str, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_1"}
    )


@pytest.mark.parametrize(
    ("status", "body", "anthropic_type"),
    [
        (400, _openai_error(400, "invalid_request_error", "Bad value for messages"), "invalid_request_error"),
        (
            401,
            _openai_error(401, "invalid_request_error", "Incorrect API key", "invalid_api_key"),
            "authentication_error",
        ),
        (
            404,
            _openai_error(404, "invalid_request_error", "No such model", "model_not_found"),
            "not_found_error",
        ),
        (
            429,
            _openai_error(429, "requests", "Rate limit reached", "rate_limit_exceeded"),
            "rate_limit_error",
        ),
        (500, _openai_error(500, "server_error", "The server had an error"), "api_error"),
        (503, b"upstream connect error", "overloaded_error"),
    ],
)
def test_openai_errors_reach_anthropic_clients_typed_with_the_same_message(
    status: int, body: bytes, anthropic_type: str
) -> None:
    out = translate.error(body, status, CHAT, MESSAGES)
    envelope = ErrorResponse.model_validate_json(out, strict=True)
    assert envelope.error.type == anthropic_type
    expected = orjson.loads(body)["error"]["message"] if body.startswith(b"{") else body.decode()
    assert envelope.error.message == expected


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "invalid_request_error"),
        (429, "rate_limit_error", "requests"),
        (529, "overloaded_error", "server_error"),
        (500, "api_error", "server_error"),
    ],
)
@pytest.mark.parametrize("dst", [CHAT, RESPONSES])
def test_anthropic_errors_reach_openai_clients_in_openais_envelope(
    status: int, anthropic_type: str, openai_type: str, dst: API
) -> None:
    out = translate.error(
        _anthropic_error(anthropic_type, "prompt is too long: 210000 tokens"), status, MESSAGES, dst
    )
    envelope = OPENAI_ERROR.validate_json(out)
    assert envelope["error"]["type"] == openai_type
    assert envelope["error"]["message"] == "prompt is too long: 210000 tokens"


def _client_error(api: API, status: int, body: bytes) -> Exception:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": "application/json"}, content=body)

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    try:
        if api == MESSAGES:
            client = anthropic.Anthropic(
                api_key="k", base_url="http://gateway", http_client=http, max_retries=0
            )
            client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        else:
            openai_client = openai.OpenAI(
                api_key="k", base_url="http://gateway/v1", http_client=http, max_retries=0
            )
            openai_client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    except Exception as err:
        return err
    raise AssertionError("the SDK did not raise")


def test_client_sdks_raise_their_own_typed_errors_with_the_upstreams_message() -> None:
    err = _client_error(
        MESSAGES, 429, translate.error(_openai_error(429, "requests", "Slow down"), 429, CHAT, MESSAGES)
    )
    assert isinstance(err, anthropic.RateLimitError) and "Slow down" in str(err)
    body = translate.error(_anthropic_error("not_found_error", "model: nope"), 404, MESSAGES, CHAT)
    err = _client_error(CHAT, 404, body)
    assert isinstance(err, openai.NotFoundError) and "model: nope" in str(err)
    assert err.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_same_api_errors_pass_unchanged_even_when_not_json() -> None:
    body = _anthropic_error("overloaded_error", "Overloaded")
    assert translate.error(body, 529, MESSAGES, MESSAGES) == body
    assert translate.error(b"<html>502</html>", 502, CHAT, CHAT) == b"<html>502</html>"


def test_openai_envelopes_pass_unchanged_between_chat_and_responses() -> None:
    body = _openai_error(400, "invalid_request_error", "bad", "x")
    assert translate.error(body, 400, RESPONSES, CHAT) == body
    rebuilt = OPENAI_ERROR.validate_json(translate.error(b'{"error": "plain text"}', 500, CHAT, RESPONSES))
    assert rebuilt["error"]["message"] == "plain text"


def test_an_empty_error_body_names_the_status() -> None:
    envelope = ErrorResponse.model_validate_json(translate.error(b"", 502, CHAT, MESSAGES))
    assert envelope.error.message == "upstream answered HTTP 502"
    long = b"x" * 5000
    assert len(orjson.loads(translate.error(long, 500, MESSAGES, CHAT))["error"]["message"]) == 2000
