"""Converse translation both ways, checked against botocore's own ``bedrock-runtime`` service model.

Requests built for Converse are validated with ``botocore.validate.ParamValidator`` on the Converse
input shape (blobs base64-decoded first, as botocore's parser reads the wire); sample answers and
stream events are validated against the output and event shapes the same way, so the samples the
decoders are tested on are ones Bedrock could send. What the client gets is checked with its SDK.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from botocore.validate import ParamValidator

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import API, CONVERSE
from agentkube.dataplane.llm.translate import bedrock_converse, ir
from agentkube.dataplane.llm.translate.errors import TranslationError
from test.e2e.bedrock_standin import _blobs, _service_model, validate_converse
from test.unit.dataplane.llm.test_translate_samples import (
    APIS,
    CHAT,
    MESSAGES,
    PNG,
    REQUESTS,
    RESPONSES,
    check_answer,
    check_stream_event,
    sse_events,
)
from test.unit.dataplane.llm.test_translate_streams import sdk_final

MODEL = "amazon.nova-pro-v1:0"


def on_bedrock(request: dict[str, Any]) -> dict[str, Any]:
    """A sample request with its web image URL as an S3 one (Converse takes inline data or S3)."""
    text = orjson.dumps(request).replace(b"https://example.com/paris.png", b"s3://photos/paris.png")
    return dict(orjson.loads(text))


def converse(request: dict[str, Any], api: API) -> dict[str, Any]:
    body = translate.request(copy.deepcopy(request), api, CONVERSE, MODEL)
    assert validate_converse(body, MODEL) == []
    return body


def valid_shape(shape_name: str, value: dict[str, Any]) -> None:
    shape = _service_model().shape_for(shape_name)
    problems: list[str] = []
    report = ParamValidator().validate(_blobs(shape, value, "", problems), shape)
    assert problems == [] and not report.has_errors(), report.generate_report()


# ------------------------------------------------------------------------------------------ requests


@pytest.mark.parametrize("api", APIS)
def test_every_client_api_becomes_a_valid_converse_request(api: API) -> None:
    body = converse(on_bedrock(REQUESTS[api]), api)
    assert body["system"] == [{"text": "You are terse."}]
    user, assistant, result = body["messages"]
    assert user["role"] == "user" and user["content"][0] == {"text": "Weather in Paris? Photos attached."}
    assert user["content"][1] == {
        "image": {"format": "png", "source": {"s3Location": {"uri": "s3://photos/paris.png"}}}
    }
    assert user["content"][2] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert assistant["role"] == "assistant"
    assert {
        "toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    } in assistant["content"]
    assert result == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C, sunny"}]}}],
    }
    assert body["inferenceConfig"] == {"maxTokens": 256, "temperature": 0.5, "topP": 0.9}
    tool = body["toolConfig"]["tools"][0]["toolSpec"]
    assert tool["name"] == "get_weather" and tool["inputSchema"]["json"]["required"] == ["city"]
    assert body["toolConfig"]["toolChoice"] == {"auto": {}}
    assert "modelId" not in body and "user-1" not in orjson.dumps(body).decode()


def test_the_validator_catches_what_bedrock_would_refuse() -> None:
    body = converse(on_bedrock(REQUESTS[CHAT]), CHAT)
    broken = {**body, "inferenceConfig": {"maxTokens": "many"}}
    assert validate_converse(broken, MODEL) != []
    assert validate_converse({**body, "temperature": 0.3}, MODEL) != []  # unknown top-level field
    image = {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": "not base64!"}}}]}
    assert validate_converse({"messages": [image]}, MODEL) != []


def test_thinking_documents_errors_and_choices_reach_converse() -> None:
    request = {
        "model": "m",
        "max_tokens": 100,
        "temperature": 1.0,
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "system": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": "Q3 report (final).pdf",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PNG},
                    },
                    {
                        "type": "document",
                        "title": "Q3 report (final).pdf",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": PNG},
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
                    {"type": "tool_use", "id": "toolu_01/x", "name": "lookup", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01/x", "is_error": True, "content": "boom"}
                ],
            },
        ],
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "lookup"},
    }
    body = converse(request, MESSAGES)
    assert body["system"] == [{"text": "one"}, {"text": "two"}]
    docs = [b["document"] for b in body["messages"][0]["content"] if "document" in b]
    assert [d["name"] for d in docs] == ["Q3 report (final)-pdf", "Q3 report (final)-pdf-2"]
    assert docs[0]["format"] == "pdf"
    thinking, redacted, call = body["messages"][1]["content"]
    assert thinking == {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig-1"}}}
    assert redacted == {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}}
    assert call["toolUse"]["toolUseId"] == "toolu_01_x"
    result = body["messages"][2]["content"][0]["toolResult"]
    assert result["toolUseId"] == "toolu_01_x" and result["status"] == "error"
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "lookup"}}
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": 1.0, "stopSequences": ["END"]}
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}


def test_tool_choice_none_leaves_the_tools_out_unless_the_history_uses_them() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    plain = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
        "tool_choice": "none",
    }
    assert "toolConfig" not in converse(plain, CHAT)
    required = converse({**plain, "tool_choice": "required"}, CHAT)
    assert required["toolConfig"]["toolChoice"] == {"any": {}}
    history = converse(on_bedrock(REQUESTS[CHAT]) | {"tool_choice": "none"}, CHAT)
    assert "toolChoice" not in history["toolConfig"] and history["toolConfig"]["tools"]


def test_effort_structured_output_and_a_late_system_message() -> None:
    request = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "system", "content": "Now answer in French."},
            {"role": "user", "content": "weather?"},
        ],
        "reasoning_effort": "minimal",
        "temperature": 1.7,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": True},
        },
    }
    body = converse(request, CHAT)
    assert body["system"] == [{"text": "Now answer in French."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["outputConfig"]["effort"] == "low"
    fmt = body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema" and orjson.loads(fmt["structure"]["jsonSchema"]["schema"]) == {
        "type": "object"
    }
    assert body["inferenceConfig"]["temperature"] == 1.0


def test_what_converse_cannot_take_is_refused_naming_why() -> None:
    web_image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with pytest.raises(TranslationError, match="inline data or s3"):
        translate.request(
            {"model": "m", "messages": [{"role": "user", "content": [web_image]}]}, CHAT, CONVERSE, MODEL
        )
    bmp = {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}
    with pytest.raises(TranslationError, match="image/bmp"):
        translate.request(
            {"model": "m", "messages": [{"role": "user", "content": [bmp]}]}, CHAT, CONVERSE, MODEL
        )
    with pytest.raises(TranslationError, match="verbosity"):
        translate.request(
            {"model": "m", "input": "hi", "text": {"verbosity": "high"}}, RESPONSES, CONVERSE, MODEL
        )


# ----------------------------------------------------------------------------------------- answers

ANSWER: dict[str, Any] = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "Paris, so...", "signature": "sig"}}},
                {"text": "Checking the weather."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": {"inputTokens": 20, "outputTokens": 30, "totalTokens": 150, "cacheReadInputTokens": 100},
    "metrics": {"latencyMs": 120},
}


def test_the_sample_answer_is_one_bedrock_could_send() -> None:
    valid_shape("ConverseResponse", ANSWER)


@pytest.mark.parametrize("api", APIS)
def test_a_converse_answer_reaches_each_client_api(api: API) -> None:
    out = translate.response(ANSWER, CONVERSE, api, model="alias")
    check_answer(api, out)
    if api == CHAT:
        message = out["choices"][0]["message"]
        assert message["content"] == "Checking the weather."
        assert message["tool_calls"][0]["function"]["name"] == "get_weather"
        assert out["choices"][0]["finish_reason"] == "tool_calls"
        assert out["usage"]["prompt_tokens"] == 120 and out["usage"]["completion_tokens"] == 30
    elif api == MESSAGES:
        assert [b["type"] for b in out["content"]] == ["thinking", "text", "tool_use"]
        assert out["content"][0]["signature"] == "sig"
        assert out["stop_reason"] == "tool_use"
        assert out["usage"]["input_tokens"] == 20 and out["usage"]["cache_read_input_tokens"] == 100
    else:
        assert out["output_text"] == "Checking the weather." if "output_text" in out else True
        assert any(i["type"] == "function_call" for i in out["output"])


@pytest.mark.parametrize(
    ("reason", "chat", "messages"),
    [
        ("guardrail_intervened", "content_filter", "refusal"),
        ("content_filtered", "content_filter", "refusal"),
        ("max_tokens", "length", "max_tokens"),
        ("model_context_window_exceeded", "length", "model_context_window_exceeded"),
        ("end_turn", "stop", "end_turn"),
        ("malformed_model_output", "stop", "end_turn"),
    ],
)
def test_stop_reasons_map_to_the_nearest_each_client_knows(reason: str, chat: str, messages: str) -> None:
    answer = {
        **ANSWER,
        "stopReason": reason,
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
    }
    valid_shape("ConverseResponse", answer)
    assert translate.response(answer, CONVERSE, CHAT, model="a")["choices"][0]["finish_reason"] == chat
    assert translate.response(answer, CONVERSE, MESSAGES, model="a")["stop_reason"] == messages


# ----------------------------------------------------------------------------------------- streams

EVENT_SHAPES = {
    "messageStart": "MessageStartEvent",
    "contentBlockStart": "ContentBlockStartEvent",
    "contentBlockDelta": "ContentBlockDeltaEvent",
    "contentBlockStop": "ContentBlockStopEvent",
    "messageStop": "MessageStopEvent",
    "metadata": "ConverseStreamMetadataEvent",
}


def ev(name: str, **payload: Any) -> tuple[str, bytes]:
    return name, orjson.dumps(payload)


STREAM: list[tuple[str, bytes]] = [
    ev("messageStart", role="assistant"),
    ev("contentBlockDelta", contentBlockIndex=0, delta={"reasoningContent": {"text": "Paris, so..."}}),
    ev("contentBlockDelta", contentBlockIndex=0, delta={"reasoningContent": {"signature": "sig"}}),
    ev("contentBlockStop", contentBlockIndex=0),
    ev("contentBlockDelta", contentBlockIndex=1, delta={"text": "Checking the "}),
    ev("contentBlockDelta", contentBlockIndex=1, delta={"text": "weather."}),
    ev("contentBlockStop", contentBlockIndex=1),
    ev(
        "contentBlockStart",
        contentBlockIndex=2,
        start={"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
    ),
    ev("contentBlockDelta", contentBlockIndex=2, delta={"toolUse": {"input": '{"city":'}}),
    ev("contentBlockDelta", contentBlockIndex=2, delta={"toolUse": {"input": '"Paris"}'}}),
    ev("contentBlockStop", contentBlockIndex=2),
    ev("messageStop", stopReason="tool_use"),
    ev(
        "metadata",
        usage={"inputTokens": 20, "outputTokens": 30, "totalTokens": 150, "cacheReadInputTokens": 100},
        metrics={"latencyMs": 12},
    ),
]


def test_the_sample_stream_events_are_ones_bedrock_could_send() -> None:
    for name, data in STREAM:
        valid_shape(EVENT_SHAPES[name], orjson.loads(data))


def run(dst: API, events: list[tuple[str, bytes]]) -> tuple[list[bytes], Any]:
    translator = translate.stream(CONVERSE, dst, model="alias", include_usage=True)
    frames = [f for name, data in events for f in translator.feed(name, data)]
    return frames + translator.finish(), translator


@pytest.mark.parametrize("api", APIS)
def test_a_converse_stream_reaches_each_client_sdk(api: API) -> None:
    frames, translator = run(api, STREAM)
    for event, data in sse_events(api, frames):
        check_stream_event(api, event, data)
    final = sdk_final(api, frames)
    assert final["model"] == "alias"
    assert final["text"] == "Checking the weather."
    assert [(c[1], c[2]) for c in final["calls"]] == [("get_weather", {"city": "Paris"})]
    assert final["usage"] == (120, 100, 30)
    assert translator.usage is not None and translator.usage.output_tokens == 30
    if api == MESSAGES:
        assert final["thinking"] == [("Paris, so...", "sig")]


@pytest.mark.parametrize("name", ["throttlingException", "error"])
def test_an_exception_mid_stream_ends_it_as_the_clients_error(name: str) -> None:
    payload = (
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        if name == "error"
        else {"message": "slow down"}
    )
    frames, _ = run(MESSAGES, [*STREAM[:5], (name, orjson.dumps(payload))])
    last = frames[-1]
    assert last.startswith(b"event: error\n")
    assert orjson.loads(last.split(b"data: ", 1)[1]) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    chat_frames, _ = run(CHAT, [*STREAM[:5], (name, orjson.dumps(payload))])
    assert b'"slow down"' in chat_frames[-1] and b'"error"' in chat_frames[-1]


def test_a_stream_cut_before_message_stop_is_an_error_and_after_it_finishes() -> None:
    decoder = bedrock_converse.Decoder()
    for name, data in STREAM[:6]:
        decoder.feed(name, data)
    *closed, error = decoder.finish()
    assert closed == [ir.BlockStop(1)]
    assert isinstance(error, ir.Error) and error.kind == "bad_gateway"
    decoder = bedrock_converse.Decoder()
    for name, data in STREAM[:-1]:
        decoder.feed(name, data)
    (finish,) = decoder.finish()
    assert isinstance(finish, ir.Finish) and finish.stop == "tool_calls" and finish.usage is None
