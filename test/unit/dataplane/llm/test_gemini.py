"""Gemini generateContent: client requests into it, its answers and streams out of it, and call ids
that carry Gemini's thought signatures through clients that know nothing of them."""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import CHAT, GEMINI, MESSAGES, RESPONSES
from agentkube.dataplane.llm.translate import gemini, ir
from agentkube.dataplane.llm.translate.anthropic_messages import tool_id
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError

PNG = "iVBORw0KGgo="
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def to_gemini(body: dict[str, Any], src: Any = CHAT, model: str = "gemini-2.5-flash") -> dict[str, Any]:
    return translate.request({"model": "alias", **body}, src, GEMINI, model)


def answer(parts: list[dict[str, Any]], reason: str = "STOP", **extra: Any) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": reason}],
        "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 4, "totalTokenCount": 24},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "Abc-123_x",
        **extra,
    }


# ------------------------------------------------------------------------------------------ requests


def test_a_chat_conversation_becomes_contents_and_system_instruction() -> None:
    body = to_gemini(
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "one"},
                {"role": "user", "content": [{"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "three"},
                {"role": "system", "content": "Now answer in French."},
                {"role": "user", "content": "four"},
            ],
            "temperature": 1.5,
            "top_p": 0.9,
            "max_completion_tokens": 77,
            "stop": ["END", "STOP"],
            "user": "u-1",
            "seed": 3,
        }
    )
    assert body == {
        "contents": [
            {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
            {"role": "model", "parts": [{"text": "three"}]},
            {"role": "user", "parts": [{"text": "four"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Now answer in French."}]},
        "generationConfig": {
            "temperature": 1.5,
            "topP": 0.9,
            "maxOutputTokens": 77,
            "stopSequences": ["END", "STOP"],
        },
    }


def test_images_go_inline_or_by_uri_with_a_media_type() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/dog.webp"}},
    ]
    parts = to_gemini({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/dog.webp"}},
    ]
    nameless = [{"type": "image_url", "image_url": {"url": "https://example.com/picture"}}]
    with pytest.raises(TranslationError, match="cannot be told from its name"):
        to_gemini({"messages": [{"role": "user", "content": nameless}]})
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    parts = to_gemini({"max_tokens": 9, "messages": [{"role": "user", "content": [pdf]}]}, MESSAGES)
    assert parts["contents"][0]["parts"] == [{"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}]


def test_tools_and_tool_choice_become_declarations_and_calling_config() -> None:
    messages = [{"role": "user", "content": "weather?"}]
    named = {"type": "function", "function": {"name": "get_weather"}}
    body = to_gemini({"messages": messages, "tools": [WEATHER], "tool_choice": named})
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather.",
                    "parametersJsonSchema": WEATHER["function"]["parameters"],
                }
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    for choice, mode in (("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")):
        config = to_gemini({"messages": messages, "tools": [WEATHER], "tool_choice": choice})["toolConfig"]
        assert config == {"functionCallingConfig": {"mode": mode}}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    structured = to_gemini(
        {
            "messages": messages,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        }
    )
    assert structured["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }


def test_tool_results_are_function_responses_named_after_their_calls() -> None:
    history = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "is_error": True,
                    "content": [
                        {"type": "text", "text": "clock broken"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                },
            ],
        },
    ]
    contents = to_gemini({"max_tokens": 9, "messages": history}, MESSAGES)["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {"city": "Rome"}}},
        ],
    }
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
        {"functionResponse": {"name": "get_time", "response": {"error": "clock broken"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
    ]
    orphan = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}
    ]
    with pytest.raises(TranslationError) as e:
        to_gemini({"max_tokens": 9, "messages": orphan}, MESSAGES)
    assert e.value.param == "messages[0]" and "toolu_9" in e.value.message


def test_gemini_3_gets_the_documented_skip_signature_on_unsigned_calls() -> None:
    history = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
    ]
    three = to_gemini({"max_tokens": 9, "messages": history}, MESSAGES, "gemini-3-pro-preview")
    assert three["contents"][1]["parts"][0]["thoughtSignature"] == gemini.SKIP_SIGNATURE
    two = to_gemini({"max_tokens": 9, "messages": history}, MESSAGES, "gemini-2.5-pro")
    assert "thoughtSignature" not in two["contents"][1]["parts"][0]


@pytest.mark.parametrize(
    ("model", "request_fields", "expected"),
    [
        (
            "gemini-2.5-flash",
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            {"thinkingBudget": 2048, "includeThoughts": True},
        ),
        ("gemini-2.5-flash", {"thinking": {"type": "disabled"}}, {"thinkingBudget": 0}),
        ("gemini-3-pro-preview", {"thinking": {"type": "disabled"}}, {"thinkingLevel": "low"}),
        (
            "gemini-2.5-pro",
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"}},
            {"thinkingBudget": 8192, "includeThoughts": True},
        ),
        (
            "gemini-3-flash",
            {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}},
            {"thinkingLevel": "high", "includeThoughts": True},
        ),
        ("gemini-3-flash", {"thinking": {"type": "adaptive"}}, {"includeThoughts": True}),
    ],
)
def test_thinking_becomes_a_budget_or_a_level_by_model_generation(
    model: str, request_fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    body = to_gemini(
        {"max_tokens": 9, "messages": [{"role": "user", "content": "hi"}], **request_fields}, MESSAGES, model
    )
    assert body["generationConfig"]["thinkingConfig"] == expected
    effort = to_gemini(
        {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"}, CHAT, model
    )
    level = {"thinkingLevel": "low"} if "gemini-3" in model else {"thinkingBudget": 1024}
    assert effort["generationConfig"]["thinkingConfig"] == {**level, "includeThoughts": True}


def test_verbosity_is_refused() -> None:
    with pytest.raises(TranslationError, match="verbosity"):
        to_gemini({"messages": [{"role": "user", "content": "hi"}], "verbosity": "low"})


# ------------------------------------------------------------------------------------------ answers


@pytest.mark.parametrize(
    ("reason", "stop"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("SOMETHING_LATER", "stop"),
    ],
)
def test_finish_reasons(reason: str, stop: str) -> None:
    assert gemini.parse_response(answer([{"text": "x"}], reason)).stop == stop


def test_an_answer_with_thoughts_text_and_calls() -> None:
    body = answer(
        [
            {"text": "Let me ", "thought": True},
            {"text": "think.", "thought": True},
            {"text": "Hel"},
            {"text": "lo", "thoughtSignature": "dGV4dA=="},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "c2ln+/==",
            },
            {"functionCall": {"name": "get_time", "args": {}}},
        ]
    )
    body["usageMetadata"] |= {"cachedContentTokenCount": 5, "thoughtsTokenCount": 6}
    parsed = gemini.parse_response(body)
    assert parsed.parts == [
        ir.Thinking("Let me think."),
        ir.Text("Hello"),
        ir.ToolCall("call_Abc123x_0__ts_c2ln-_", "get_weather", '{"city":"Paris"}'),
        ir.ToolCall("call_Abc123x_1", "get_time", "{}"),
    ]
    assert parsed.stop == "tool_calls"
    assert parsed.usage == ir.Usage(
        input_tokens=20, output_tokens=10, cache_read_tokens=5, cache_write_tokens=0, reasoning_tokens=6
    )
    chat = translate.response(body, GEMINI, CHAT, model="alias")
    assert chat["choices"][0]["message"]["reasoning_content"] == "Let me think."
    assert chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 5
    messages = translate.response(body, GEMINI, MESSAGES, model="alias")
    assert messages["usage"]["input_tokens"] == 15 and messages["usage"]["cache_read_input_tokens"] == 5


def test_a_blocked_prompt_is_a_refusal_and_an_error_object_an_upstream_error() -> None:
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    chat = translate.response(blocked, GEMINI, CHAT, model="alias")
    assert chat["choices"][0]["finish_reason"] == "content_filter"
    assert "SAFETY" in chat["choices"][0]["message"]["refusal"]
    with pytest.raises(UpstreamError) as e:
        gemini.parse_response({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
    assert (e.value.kind, e.value.message) == ("rate_limit", "quota")
    with pytest.raises(UpstreamError):
        gemini.parse_response({"usageMetadata": {}})


# ------------------------------------------------------------------------------------------ streams


def _feed(chunks: list[dict[str, Any]], dst: Any) -> list[bytes]:
    stream = translate.stream(GEMINI, dst, model="alias", include_usage=True)
    frames: list[bytes] = []
    for chunk in chunks:
        frames += stream.feed(None, orjson.dumps(chunk))
    return frames + stream.finish()


def _chat_chunks(frames: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(f[6:]) for f in frames if f.startswith(b"data: {")]


def test_a_stream_of_thoughts_text_and_a_call_to_chat_chunks() -> None:
    chunks = [
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "hmm", "thought": True}]}}],
            "responseId": "r1",
        },
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi "}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "there"}]}}]},
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3},
        },
    ]
    out = _chat_chunks(_feed(chunks, CHAT))
    deltas = [c["choices"][0]["delta"] for c in out if c["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "Hi there"
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "hmm"
    calls = [t for d in deltas for t in d.get("tool_calls") or []]
    assert calls[0]["id"] == "call_r1_0" and calls[0]["function"]["name"] == "f"
    assert "".join(t["function"].get("arguments") or "" for t in calls) == '{"a":1}'
    assert [
        c["choices"][0]["finish_reason"] for c in out if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["tool_calls"]
    assert out[-1]["usage"]["prompt_tokens"] == 7 and out[-1]["usage"]["completion_tokens"] == 3


def test_a_cut_stream_and_an_error_chunk_end_with_an_error_event() -> None:
    text = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}
    cut = _feed([text], MESSAGES)
    assert cut[-1].startswith(b"event: error") and b"ended before" in cut[-1]
    error = {"error": {"code": 503, "message": "model overloaded", "status": "UNAVAILABLE"}}
    failed = _feed([text, error], MESSAGES)
    assert b"overloaded_error" in failed[-1] and b"model overloaded" in failed[-1]


def test_a_blocked_prompt_in_a_stream_is_a_refusal() -> None:
    frames = _feed([{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}], MESSAGES)
    events = b"".join(frames).decode()
    assert "PROHIBITED_CONTENT" in events and '"stop_reason":"refusal"' in events


# --------------------------------------------------------------------------------------- properties

signatures = st.binary(min_size=1, max_size=300).map(lambda b: base64.b64encode(b).decode())
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
args = st.dictionaries(
    st.text(min_size=1, max_size=6), st.integers(-(2**53), 2**53) | st.text(max_size=6), max_size=3
)


@settings(max_examples=200, deadline=None)
@given(base=st.text(max_size=40), n=st.integers(0, 99), signature=signatures)
def test_call_ids_carry_any_signature_and_anthropic_keeps_them(base: str, n: int, signature: str) -> None:
    made = gemini.call_id(re.sub(r"[^A-Za-z0-9]", "", base) or "x", n, signature)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", made)
    assert tool_id(made) == made
    assert gemini.call_signature(made) == signature


@settings(max_examples=60, deadline=None)
@given(
    calls=st.lists(st.tuples(names, args, st.none() | signatures), min_size=1, max_size=4),
    text=st.text(max_size=20),
    client=st.sampled_from([CHAT, MESSAGES, RESPONSES]),
)
def test_gemini_calls_come_back_to_gemini_as_they_left_through_any_client_api(
    calls: list[tuple[str, dict[str, Any], str | None]], text: str, client: Any
) -> None:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for name, arguments, signature in calls:
        part: dict[str, Any] = {"functionCall": {"name": name, "args": arguments}}
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    answered = translate.response(answer(parts), GEMINI, client, model="alias")
    # The client sends its history back: the question, the answer as it got it, one result per call.
    if client == CHAT:
        message = answered["choices"][0]["message"]
        results = [
            {"role": "tool", "tool_call_id": c["id"], "content": f"r{i}"}
            for i, c in enumerate(message["tool_calls"])
        ]
        body = {"messages": [{"role": "user", "content": "q"}, message, *results]}
    elif client == MESSAGES:
        uses = [b for b in answered["content"] if b["type"] == "tool_use"]
        results = [
            {"type": "tool_result", "tool_use_id": u["id"], "content": f"r{i}"} for i, u in enumerate(uses)
        ]
        body = {
            "max_tokens": 9,
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": answered["content"]},
                {"role": "user", "content": results},
            ],
        }
    else:
        items = [i for i in answered["output"] if i["type"] == "function_call"]
        outputs = [
            {"type": "function_call_output", "call_id": i["call_id"], "output": f"r{n}"}
            for n, i in enumerate(items)
        ]
        body = {"input": [{"role": "user", "content": "q"}, *answered["output"], *outputs]}
    contents = to_gemini(body, client)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    sent_calls = [p for p in contents[1]["parts"] if "functionCall" in p]
    assert sent_calls == [p for p in parts if "functionCall" in p]
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == [name for name, _, _ in calls]
    assert [p["functionResponse"]["response"] for p in contents[2]["parts"]] == [
        {"output": f"r{i}"} for i in range(len(calls))
    ]
