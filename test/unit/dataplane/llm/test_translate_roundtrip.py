"""Properties: what every API can say survives a round trip through another API, requests and streams."""

from __future__ import annotations

import itertools
import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import API
from test.unit.dataplane.llm.test_translate_samples import (
    APIS,
    CHAT,
    MESSAGES,
    RESPONSES,
    check_answer,
    check_request,
    sse_events,
)

texts = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
# Conversations end with the user's turn (an assistant turn last would be a prefill).
turns = st.lists(texts, min_size=1, max_size=7).map(lambda t: t if len(t) % 2 else t[:-1])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
arguments = st.dictionaries(st.text(min_size=1, max_size=8), json_values, max_size=4)
others = st.sampled_from([RESPONSES, MESSAGES])


def _chat(system: str, conversation: list[str]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for i, text in enumerate(conversation):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return {"model": "x", "messages": messages, "max_completion_tokens": 100}


def _text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


@settings(max_examples=60, deadline=None)
@given(system=texts, conversation=turns, via=others)
def test_conversation_text_survives_chat_to_another_api_and_back(
    system: str, conversation: list[str], via: API
) -> None:
    body = _chat(system, conversation)
    there = translate.request(body, CHAT, via, "m")
    check_request(via, there)
    back = translate.request(there, via, CHAT, "m")
    check_request(CHAT, back)
    assert [(m["role"], _text(m)) for m in back["messages"]] == [
        (m["role"], m["content"]) for m in body["messages"]
    ]
    assert back["max_completion_tokens"] == 100


@settings(max_examples=60, deadline=None)
@given(values=st.lists(arguments, min_size=1, max_size=3), result=texts, via=st.sampled_from(APIS))
def test_tool_calls_and_results_survive_a_round_trip(
    values: list[dict[str, Any]], result: str, via: API
) -> None:
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": json.dumps(v)}}
        for i, v in enumerate(values)
    ]
    body = {
        "model": "x",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            *({"role": "tool", "tool_call_id": c["id"], "content": result} for c in calls),
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    there = translate.request(body, CHAT, via, "m")
    check_request(via, there)
    back = translate.request(there, via, CHAT, "m")
    assistant = back["messages"][1]
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == values
    assert [c["id"] for c in assistant["tool_calls"]] == [c["id"] for c in calls]
    results = [(m["tool_call_id"], m["content"]) for m in back["messages"] if m["role"] == "tool"]
    assert results == [(c["id"], result) for c in calls]


def _anthropic_stream(pieces: list[str], call_pieces: list[str]) -> list[tuple[str | None, bytes]]:
    def event(data: dict[str, Any]) -> tuple[str | None, bytes]:
        return data["type"], orjson.dumps(data)

    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    out = [event({"type": "message_start", "message": message})]
    out.append(
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    )
    out += [
        event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        for p in pieces
    ]
    out.append(event({"type": "content_block_stop", "index": 0}))
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    out.append(event({"type": "content_block_start", "index": 1, "content_block": block}))
    out += [
        event(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": p},
            }
        )
        for p in call_pieces
    ]
    out.append(event({"type": "content_block_stop", "index": 1}))
    delta = {"stop_reason": "tool_use", "stop_sequence": None}
    out.append(event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 9}}))
    out.append(event({"type": "message_stop"}))
    return out


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=60, deadline=None)
@given(
    text=texts,
    value=arguments,
    cuts=st.lists(st.integers(0, 200), max_size=6),
    via=st.sampled_from([CHAT, RESPONSES]),
)
def test_streamed_text_and_arguments_survive_any_chunking_there_and_back(
    text: str, value: dict[str, Any], cuts: list[int], via: API
) -> None:
    raw = json.dumps(value)
    upstream = _anthropic_stream(_split(text, cuts), _split(raw, cuts))
    forward = translate.stream(MESSAGES, via, model="m", include_usage=True)
    frames = [f for event, data in upstream for f in forward.feed(event, data)] + forward.finish()
    backward = translate.stream(via, MESSAGES, model="m")
    relayed = [f for event, data in sse_events(via, frames) for f in backward.feed(event, data.encode())]
    relayed += backward.finish()
    events = [orjson.loads(data) for _, data in sse_events(MESSAGES, relayed)]
    streamed = "".join(
        e["delta"]["text"] for e in events if e["type"] == "content_block_delta" and e["index"] == 0
    )
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta" and e["index"] == 1
    )
    assert streamed == text
    assert json.loads(partial) == value
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["output_tokens"] == 9


@settings(max_examples=60, deadline=None)
@given(text=texts, value=arguments, via=st.sampled_from(APIS), src=st.sampled_from(APIS))
def test_answers_survive_a_round_trip(text: str, value: dict[str, Any], via: API, src: API) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": [
            {"type": "text", "text": text},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": value},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "output_tokens": 5,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 1,
        },
    }
    start = translate.response(message, MESSAGES, src, model="m")
    there = translate.response(start, src, via, model="m")
    check_answer(via, there)
    back = check_answer(MESSAGES, translate.response(there, via, MESSAGES, model="m"))
    assert [(b.type, getattr(b, "text", None)) for b in back.content] == [("text", text), ("tool_use", None)]
    assert back.content[1].input == value and back.content[1].id == "toolu_1"
    assert back.stop_reason == "tool_use"
    usage = back.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (3, 5, 2)
    assert usage.cache_creation_input_tokens == 1
