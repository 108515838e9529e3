"""Recorded-shape requests, answers and streams of the three chat APIs, and the SDK checks over them.

The other ``test_translate_*`` modules import these. The tests here pin that every sample is itself
what its provider's SDK accepts, so a translation test starts from a realistic body.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
from typing import Any, Final

import anthropic.types as at
import openai.types.chat as oc
import openai.types.responses as orr
import orjson
import pytest
from anthropic._streaming import SSEDecoder as AnthropicSSEDecoder
from anthropic.types.shared import ErrorResponse
from openai._streaming import SSEDecoder as OpenAISSEDecoder
from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict

from agentkube.dataplane.llm.apis import API

CHAT: Final = "openai-chat"
RESPONSES: Final = "openai-responses"
MESSAGES: Final = "anthropic-messages"
APIS: Final[tuple[API, ...]] = (CHAT, RESPONSES, MESSAGES)
PAIRS: Final[list[tuple[API, API]]] = [(src, dst) for src in APIS for dst in APIS if src != dst]

PNG: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
WEATHER_SCHEMA: Final = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}

# --- client requests: the same two-turn tool round trip (tool call, then its result) in each API ---

CHAT_REQUEST: Final[dict[str, Any]] = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris? Photos attached."},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ],
    "tool_choice": "auto",
    "temperature": 0.5,
    "top_p": 0.9,
    "max_completion_tokens": 256,
    "user": "user-1",
}

RESPONSES_REQUEST: Final[dict[str, Any]] = {
    "model": "gpt-4.1",
    "instructions": "You are terse.",
    "input": [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather in Paris? Photos attached."},
                {"type": "input_image", "image_url": "https://example.com/paris.png", "detail": "low"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
            ],
        },
        {"type": "message", "role": "assistant", "content": "Let me check."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "18C, sunny"},
    ],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather by city",
            "parameters": WEATHER_SCHEMA,
            "strict": False,
        }
    ],
    "tool_choice": "auto",
    "temperature": 0.5,
    "top_p": 0.9,
    "max_output_tokens": 256,
    "user": "user-1",
}

MESSAGES_REQUEST: Final[dict[str, Any]] = {
    "model": "claude-sonnet-4-5",
    "system": "You are terse.",
    "max_tokens": 256,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris? Photos attached."},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.png"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"}],
        },
    ],
    "tools": [{"name": "get_weather", "description": "Weather by city", "input_schema": WEATHER_SCHEMA}],
    "tool_choice": {"type": "auto"},
    "temperature": 0.5,
    "top_p": 0.9,
    "metadata": {"user_id": "user-1"},
}

REQUESTS: Final = {CHAT: CHAT_REQUEST, RESPONSES: RESPONSES_REQUEST, MESSAGES: MESSAGES_REQUEST}

# --- upstream answers (non-stream): some thinking, text, one tool call, cached input ---------------

CHAT_COMPLETION: Final[dict[str, Any]] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1_760_000_000,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking the weather.",
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "call_w1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_1",
}

ANTHROPIC_MESSAGE: Final[dict[str, Any]] = {
    "id": "msg_01ABC",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig-abc"},
        {"type": "text", "text": "Checking the weather."},
        {"type": "tool_use", "id": "toolu_01X", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
        "output_tokens": 30,
    },
}

RESPONSES_RESPONSE: Final[dict[str, Any]] = {
    "id": "resp_abc",
    "object": "response",
    "created_at": 1_760_000_000,
    "status": "completed",
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "metadata": {},
    "model": "gpt-5-2025-08-07",
    "output": [
        {
            "id": "rs_1",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "The user wants weather."}],
            "encrypted_content": "enc-1",
        },
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Checking the weather.", "annotations": [], "logprobs": []}
            ],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_w1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
    ],
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": WEATHER_SCHEMA,
            "strict": False,
            "description": None,
        }
    ],
    "top_p": 1.0,
    "usage": {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 10},
        "total_tokens": 150,
    },
}

ANSWERS: Final = {CHAT: CHAT_COMPLETION, RESPONSES: RESPONSES_RESPONSE, MESSAGES: ANTHROPIC_MESSAGE}

# --- upstream streams, as (event name, data) pairs the gateway's SSE reader hands over -------------


def _chat_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> tuple[None, bytes]:
    chunk = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1_760_000_000,
        "model": "gpt-4.1-2025-04-14",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
        **extra,
    }
    return None, orjson.dumps(chunk)


CHAT_STREAM: Final[list[tuple[str | None, bytes]]] = [
    _chat_chunk({"role": "assistant", "content": "", "refusal": None}),
    _chat_chunk({"content": "Checking "}),
    _chat_chunk({"content": "the weather."}),
    _chat_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    _chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
    _chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Paris"}'}}]}),
    _chat_chunk({}, "tool_calls"),
    (
        None,
        orjson.dumps(
            {
                "id": "chatcmpl-s1",
                "object": "chat.completion.chunk",
                "created": 1_760_000_000,
                "model": "gpt-4.1-2025-04-14",
                "choices": [],
                "usage": {
                    "prompt_tokens": 120,
                    "completion_tokens": 30,
                    "total_tokens": 150,
                    "prompt_tokens_details": {"cached_tokens": 100},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            }
        ),
    ),
    (None, b"[DONE]"),
]


def _event(data: dict[str, Any]) -> tuple[str, bytes]:
    return str(data["type"]), orjson.dumps(data)


ANTHROPIC_STREAM: Final[list[tuple[str | None, bytes]]] = [
    _event(
        {
            "type": "message_start",
            "message": {
                "id": "msg_01S",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": 20,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 1,
                },
            },
        }
    ),
    _event({"type": "ping"}),
    _event(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        }
    ),
    _event(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "The user "},
        }
    ),
    _event(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "wants weather."},
        }
    ),
    _event(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "sig-abc"},
        }
    ),
    _event({"type": "content_block_stop", "index": 0}),
    _event({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    _event({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking "}}),
    _event(
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "the weather."}}
    ),
    _event({"type": "content_block_stop", "index": 1}),
    _event(
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_01X", "name": "get_weather", "input": {}},
        }
    ),
    _event(
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}
    ),
    _event(
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
        }
    ),
    _event(
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
        }
    ),
    _event({"type": "content_block_stop", "index": 2}),
    _event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 30},
        }
    ),
    _event({"type": "message_stop"}),
]


def _responses_stream() -> list[tuple[str | None, bytes]]:
    base = {k: v for k, v in RESPONSES_RESPONSE.items() if k not in ("output", "usage")}
    skeleton = {**base, "status": "in_progress", "output": [], "usage": None}
    reasoning = RESPONSES_RESPONSE["output"][0]
    message = RESPONSES_RESPONSE["output"][1]
    call = RESPONSES_RESPONSE["output"][2]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": skeleton},
        {"type": "response.in_progress", "response": skeleton},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"id": "rs_1", "type": "reasoning", "summary": []},
        },
        {
            "type": "response.reasoning_summary_part.added",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": ""},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "delta": "The user ",
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "delta": "wants weather.",
        },
        {
            "type": "response.reasoning_summary_text.done",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "text": "The user wants weather.",
        },
        {
            "type": "response.reasoning_summary_part.done",
            "item_id": "rs_1",
            "output_index": 0,
            "summary_index": 0,
            "part": {"type": "summary_text", "text": "The user wants weather."},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {
                "id": "msg_1",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "delta": "Checking ",
            "logprobs": [],
        },
        {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "delta": "the weather.",
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "text": "Checking the weather.",
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
            "part": message["content"][0],
        },
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {**call, "arguments": "", "status": "in_progress"},
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_1",
            "output_index": 2,
            "delta": '{"city"',
        },
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_1",
            "output_index": 2,
            "delta": ':"Paris"}',
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_1",
            "output_index": 2,
            "arguments": '{"city":"Paris"}',
        },
        {"type": "response.output_item.done", "output_index": 2, "item": call},
        {"type": "response.completed", "response": RESPONSES_RESPONSE},
    ]
    for seq, event in enumerate(events):
        event["sequence_number"] = seq
    return [_event(e) for e in events]


RESPONSES_STREAM: Final = _responses_stream()
STREAMS: Final = {CHAT: CHAT_STREAM, RESPONSES: RESPONSES_STREAM, MESSAGES: ANTHROPIC_STREAM}

# --- the SDKs' own checks -----------------------------------------------------------------------

_FORBID = ConfigDict(extra="forbid")
REQUEST_TYPES: Final[dict[str, TypeAdapter[Any]]] = {
    CHAT: TypeAdapter(oc.CompletionCreateParams, config=_FORBID),
    RESPONSES: TypeAdapter(orr.ResponseCreateParams, config=_FORBID),
    MESSAGES: TypeAdapter(at.MessageCreateParams, config=_FORBID),
}
# Anthropic's SDK dropped the sampling fields its older models still take (see anthropic_messages).
_UNTYPED: Final = {MESSAGES: ("temperature", "top_p")}
RESPONSES_EVENT: Final = TypeAdapter(orr.ResponseStreamEvent)


@with_config(_FORBID)
class _OpenAIErrorBody(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


@with_config(_FORBID)
class _OpenAIError(TypedDict):
    error: _OpenAIErrorBody


OPENAI_ERROR: Final = TypeAdapter(_OpenAIError)
"""OpenAI's error envelope (the SDK has no model of it; its fields are documented)."""
ANTHROPIC_EVENT: Final = TypeAdapter(at.RawMessageStreamEvent)


def _materialize(value: Any) -> Any:
    """Walk a validated value so every lazily validated ``Iterable`` field is validated too."""
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_materialize(v) for v in value]
    if isinstance(value, cabc.Iterator):
        return [_materialize(v) for v in value]
    return value


def check_request(api: API, body: dict[str, Any]) -> None:
    """``body`` is a request the SDK of ``api`` types (unknown top-level keys refused)."""
    body = copy.deepcopy(body)
    for key in _UNTYPED.get(api, ()):
        value = body.pop(key, None)
        assert value is None or isinstance(value, int | float), key
    _materialize(REQUEST_TYPES[api].validate_python(orjson.loads(orjson.dumps(body))))


def check_answer(api: API, body: dict[str, Any]) -> Any:
    """``body`` parses as the SDK's answer model of ``api`` (strict types); the parsed model."""
    data = orjson.loads(orjson.dumps(body))
    if api == CHAT:
        return oc.ChatCompletion.model_validate(data, strict=True)
    if api == RESPONSES:
        return orr.Response.model_validate(data, strict=True)
    return at.Message.model_validate(data, strict=True)


def sse_events(api: API, frames: list[bytes]) -> list[tuple[str | None, str]]:
    """Frames as the SDK's own SSE decoder reads them: ``(event, data)``."""
    decoder = AnthropicSSEDecoder() if api == MESSAGES else OpenAISSEDecoder()
    return [(e.event, e.data) for e in decoder.iter_bytes(iter(frames))]


def check_stream_event(api: API, event: str | None, data: str) -> Any:
    """One decoded event as the SDK's stream event model of ``api`` (``None`` for Chat's [DONE])."""
    if api == CHAT:
        assert event is None
        if data == "[DONE]":
            return None
        if "error" in orjson.loads(data):  # how OpenAI ends a stream with an error
            return OPENAI_ERROR.validate_json(data)
        return oc.ChatCompletionChunk.model_validate_json(data, strict=True)
    payload = orjson.loads(data)
    assert event == payload["type"], "the event name repeats the data's type"
    if api == RESPONSES:
        return RESPONSES_EVENT.validate_python(payload)
    if payload["type"] == "ping":  # the SDK skips pings before typing events
        return None
    if payload["type"] == "error":
        return ErrorResponse.model_validate(payload, strict=True)
    return ANTHROPIC_EVENT.validate_python(payload)


# --- the samples are what the SDKs accept ---------------------------------------------------------


@pytest.mark.parametrize("api", APIS)
def test_sample_requests_are_valid_sdk_requests(api: API) -> None:
    check_request(api, REQUESTS[api])


@pytest.mark.parametrize("api", APIS)
def test_sample_answers_are_valid_sdk_answers(api: API) -> None:
    check_answer(api, ANSWERS[api])


@pytest.mark.parametrize("api", APIS)
def test_sample_streams_are_valid_sdk_streams(api: API) -> None:
    for event, data in STREAMS[api]:
        if data != b"[DONE]":
            check_stream_event(api, event, data.decode())


def test_unknown_request_fields_fail_the_sdk_check() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        check_request(CHAT, {**CHAT_REQUEST, "bogus": 1})
