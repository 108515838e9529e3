"""Stream translation in every direction: each event typed by the client SDK, the whole stream
accumulated by the SDK's own streaming helpers (``chat.completions.stream``, ``responses.stream``,
``messages.stream``) reading the translated bytes."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest

from agentkube.dataplane.llm import translate
from agentkube.dataplane.llm.apis import API
from test.unit.dataplane.llm.test_translate_samples import (
    ANTHROPIC_STREAM,
    CHAT,
    CHAT_STREAM,
    MESSAGES,
    PAIRS,
    RESPONSES,
    RESPONSES_STREAM,
    STREAMS,
    check_stream_event,
    sse_events,
)

Stream = list[tuple[str | None, bytes]]


def run(src: API, dst: API, upstream: Stream, *, include_usage: bool = True) -> tuple[list[bytes], Any]:
    translator = translate.stream(src, dst, model="client-alias", include_usage=include_usage)
    frames: list[bytes] = []
    for event, data in upstream:
        out = translator.feed(event, data)
        assert all(f.endswith(b"\n\n") and f.count(b"\n\n") == 1 for f in out), "whole frames, one each"
        frames.extend(out)
    frames.extend(translator.finish())
    return frames, translator


def typed(dst: API, frames: list[bytes]) -> list[Any]:
    return [check_stream_event(dst, event, data) for event, data in sse_events(dst, frames)]


def _transport(frames: list[bytes]) -> httpx2.Client:
    body = b"".join(frames)

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(answer))


def sdk_final(dst: API, frames: list[bytes]) -> dict[str, Any]:
    """The answer the client SDK's streaming helper accumulates from ``frames``, API-neutrally."""
    if dst == MESSAGES:
        client = anthropic.Anthropic(api_key="k", base_url="http://gateway", http_client=_transport(frames))
        with client.messages.stream(
            model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        ) as s:
            message = s.get_final_message()
        usage = message.usage
        return {
            "model": message.model,
            "text": "".join(b.text for b in message.content if b.type == "text"),
            "calls": [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"],
            "thinking": [(b.thinking, b.signature) for b in message.content if b.type == "thinking"],
            "stop": message.stop_reason,
            "usage": (
                usage.input_tokens
                + (usage.cache_read_input_tokens or 0)
                + (usage.cache_creation_input_tokens or 0),
                usage.cache_read_input_tokens,
                usage.output_tokens,
            ),
        }
    client_ = openai.OpenAI(api_key="k", base_url="http://gateway/v1", http_client=_transport(frames))
    if dst == CHAT:
        with client_.chat.completions.stream(model="m", messages=[{"role": "user", "content": "x"}]) as c:
            completion = c.get_final_completion()
        choice = completion.choices[0]
        calls = choice.message.tool_calls or []
        u = completion.usage
        return {
            "model": completion.model,
            "text": choice.message.content or "",
            "calls": [(t.id, t.function.name, json.loads(t.function.arguments)) for t in calls],
            "thinking": [getattr(choice.message, "reasoning_content", None)],
            "stop": choice.finish_reason,
            "usage": (u.prompt_tokens, u.prompt_tokens_details.cached_tokens, u.completion_tokens)
            if u and u.prompt_tokens_details
            else None,
        }
    with client_.responses.stream(model="m", input="x") as r:
        response = r.get_final_response()
    items = [i for i in response.output if i.type == "function_call"]
    ru = response.usage
    assert ru is not None
    return {
        "model": response.model,
        "text": response.output_text,
        "calls": [(i.call_id, i.name, json.loads(i.arguments)) for i in items],
        "thinking": [
            ("".join(s.text for s in i.summary), i.encrypted_content)
            for i in response.output
            if i.type == "reasoning"
        ],
        "stop": response.status,
        "usage": (ru.input_tokens, ru.input_tokens_details.cached_tokens, ru.output_tokens),
    }


_CALL_ID = {CHAT: "call_w1", RESPONSES: "call_w1", MESSAGES: "toolu_01X"}
_STOP = {CHAT: "tool_calls", RESPONSES: "completed", MESSAGES: "tool_use"}


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_every_stream_translation_is_accepted_by_the_client_sdk(src: API, dst: API) -> None:
    frames, translator = run(src, dst, STREAMS[src])
    typed(dst, frames)
    final = sdk_final(dst, frames)
    assert final["model"] == "client-alias"
    assert final["text"] == "Checking the weather."
    assert final["calls"] == [(_CALL_ID[src], "get_weather", {"city": "Paris"})]
    assert final["stop"] == _STOP[dst]
    assert final["usage"] == (120, 100, 30)
    assert translator.usage is not None and translator.usage.output_tokens == 30


@pytest.mark.parametrize("dst", [RESPONSES, MESSAGES])
def test_anthropic_thinking_streams_with_its_signature(dst: API) -> None:
    frames, _ = (
        run(MESSAGES, dst, ANTHROPIC_STREAM)
        if dst != MESSAGES
        else run(RESPONSES, MESSAGES, RESPONSES_STREAM)
    )
    final = sdk_final(dst, frames)
    expected = (
        ("The user wants weather.", "sig-abc") if dst == RESPONSES else ("The user wants weather.", "enc-1")
    )
    assert final["thinking"] == [expected]


def test_anthropic_thinking_reaches_chat_clients_as_reasoning_content() -> None:
    frames, _ = run(MESSAGES, CHAT, ANTHROPIC_STREAM)
    chunks = [c for c in typed(CHAT, frames) if c is not None and c.choices]
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks)
    assert reasoning == "The user wants weather."


def test_chat_chunks_follow_openais_shape() -> None:
    frames, _ = run(MESSAGES, CHAT, ANTHROPIC_STREAM)
    chunks = typed(CHAT, frames)
    assert chunks[-1] is None and frames[-1] == b"data: [DONE]\n\n"
    first, usage_chunk = chunks[0], chunks[-2]
    assert first.choices[0].delta.role == "assistant"
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert all(c.usage is None for c in chunks[:-2])
    assert len({c.id for c in chunks[:-1]}) == 1 and chunks[0].id.startswith("chatcmpl-")
    finishes = [c.choices[0].finish_reason for c in chunks[:-2]]
    assert finishes[-1] == "tool_calls" and set(finishes[:-1]) == {None}


def test_without_include_usage_chat_clients_get_no_usage_chunk() -> None:
    frames, translator = run(MESSAGES, CHAT, ANTHROPIC_STREAM, include_usage=False)
    chunks = [c for c in typed(CHAT, frames) if c is not None]
    assert all(c.choices for c in chunks)
    assert all(b'"usage"' not in f for f in frames)
    assert translator.usage is not None and translator.usage.input_tokens == 120


def test_anthropic_events_are_in_order_with_sequential_indices() -> None:
    frames, _ = run(CHAT, MESSAGES, CHAT_STREAM)
    events = [e for e in typed(MESSAGES, frames) if e is not None]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e.index for e in events if e.type == "content_block_start"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert starts == stops == [0, 1]
    delta = events[-2]
    assert delta.usage.input_tokens == 20 and delta.usage.cache_read_input_tokens == 100


def test_responses_events_number_their_sequence() -> None:
    frames, _ = run(MESSAGES, RESPONSES, ANTHROPIC_STREAM)
    events = typed(RESPONSES, frames)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    assert added == ["reasoning", "message", "function_call"]


def _chat_delta(delta: dict[str, Any], finish: str | None = None) -> tuple[None, bytes]:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return None, orjson.dumps(chunk)


def _call(
    index: int, call_id: str | None = None, name: str | None = None, arguments: str = ""
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call["id"], call["type"], call["function"]["name"] = call_id, "function", name
    return {"tool_calls": [call]}


def test_parallel_tool_calls_from_chat_become_separate_anthropic_blocks() -> None:
    upstream: Stream = [
        _chat_delta({"role": "assistant"}),
        _chat_delta(_call(0, "call_a", "get_weather")),
        _chat_delta(_call(0, arguments='{"city":"Paris"}')),
        _chat_delta(_call(1, "call_b", "get_weather")),
        _chat_delta(_call(1, arguments='{"city":"Nice"}')),
        _chat_delta({}, "tool_calls"),
        (None, b"[DONE]"),
    ]
    frames, _ = run(CHAT, MESSAGES, upstream)
    final = sdk_final(MESSAGES, frames)
    assert final["calls"] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_weather", {"city": "Nice"}),
    ]
    assert final["usage"] == (0, 0, 0), "an upstream that never reported usage"


def test_interleaved_tool_call_deltas_end_the_stream_with_an_error() -> None:
    upstream: Stream = [
        _chat_delta(_call(0, "call_a", "f")),
        _chat_delta(_call(1, "call_b", "f")),
        _chat_delta(_call(0, arguments="{}")),
        _chat_delta({}, "tool_calls"),
        (None, b"[DONE]"),
    ]
    frames, _ = run(CHAT, MESSAGES, upstream)
    events = sse_events(MESSAGES, frames)
    assert events[-1][0] == "error"
    with pytest.raises(anthropic.APIStatusError, match="interleaved"):
        sdk_final(MESSAGES, frames)


@pytest.mark.parametrize("dst", [CHAT, RESPONSES, MESSAGES])
def test_an_upstream_error_mid_stream_reaches_the_client_as_its_sdk_error(dst: API) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    src: API = MESSAGES if dst != MESSAGES else CHAT
    if src == MESSAGES:
        upstream: Stream = [
            ANTHROPIC_STREAM[0],
            ANTHROPIC_STREAM[7],
            ANTHROPIC_STREAM[8],
            ("error", orjson.dumps(error)),
        ]
    else:
        upstream = [
            CHAT_STREAM[0],
            CHAT_STREAM[1],
            (None, orjson.dumps({"error": {"message": "Overloaded"}})),
        ]
    frames, _ = run(src, dst, upstream)
    typed(dst, frames)
    if dst == MESSAGES:
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            sdk_final(dst, frames)
    elif dst == CHAT:
        with pytest.raises(openai.APIError, match="Overloaded"):
            sdk_final(dst, frames)
    else:
        assert orjson.loads(sse_events(dst, frames)[-1][1])["message"] == "Overloaded"


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_a_stream_cut_before_its_end_ends_with_an_error_not_a_success(src: API, dst: API) -> None:
    upstream = [e for e in STREAMS[src] if e[1] != b"[DONE]"][:4]
    frames, _ = run(src, dst, upstream)
    last_event, last_data = sse_events(dst, frames)[-1]
    assert b"[DONE]" not in frames[-1]
    assert "ended before the answer finished" in last_data
    assert last_event in (None, "error")


def test_redacted_thinking_round_trips_through_a_responses_client_stream() -> None:
    upstream: Stream = [
        ANTHROPIC_STREAM[0],
        (
            "content_block_start",
            orjson.dumps(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "redacted_thinking", "data": "OPAQUE"},
                }
            ),
        ),
        ("content_block_stop", orjson.dumps({"type": "content_block_stop", "index": 0})),
        *ANTHROPIC_STREAM[7:11],
        (
            "message_delta",
            orjson.dumps(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 3},
                }
            ),
        ),
        ANTHROPIC_STREAM[-1],
    ]
    frames, _ = run(MESSAGES, RESPONSES, upstream)
    events = typed(RESPONSES, frames)
    completed = events[-1].response
    assert (
        completed.output[0].type == "reasoning" and completed.output[0].encrypted_content == "redacted:OPAQUE"
    )
    back, _ = run(RESPONSES, MESSAGES, [(e, d.encode()) for e, d in sse_events(RESPONSES, frames)])
    blocks = [e for e in typed(MESSAGES, back) if e is not None and e.type == "content_block_start"]
    assert blocks[0].content_block.type == "redacted_thinking" and blocks[0].content_block.data == "OPAQUE"


def test_a_responses_function_call_sent_whole_still_carries_its_arguments() -> None:
    upstream = [e for e in RESPONSES_STREAM if b"function_call_arguments.delta" not in e[1]]
    frames, _ = run(RESPONSES, MESSAGES, upstream)
    assert sdk_final(MESSAGES, frames)["calls"] == [("call_w1", "get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("api", [CHAT, RESPONSES, MESSAGES])
def test_same_api_streams_pass_unchanged_and_report_usage(api: API) -> None:
    frames, translator = run(api, api, STREAMS[api])
    assert [(e, d.encode()) for e, d in sse_events(api, frames)] == STREAMS[api]
    assert translator.usage is not None and translator.usage.input_tokens == 120


def test_reasoning_sent_whole_without_deltas_still_becomes_thinking() -> None:
    upstream = [e for e in RESPONSES_STREAM if b"reasoning_summary" not in e[1]]
    frames, _ = run(RESPONSES, MESSAGES, upstream)
    assert sdk_final(MESSAGES, frames)["thinking"] == [("The user wants weather.", "enc-1")]


def test_chat_reasoning_deltas_and_usage_in_the_finish_chunk() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    upstream: Stream = [
        _chat_delta({"role": "assistant", "reasoning_content": "Hmm, "}),
        _chat_delta({"reasoning_content": "easy."}),
        _chat_delta({"content": "Four."}),
        (None, orjson.dumps({**orjson.loads(_chat_delta({}, "stop")[1]), "usage": usage})),
    ]
    frames, translator = run(CHAT, MESSAGES, upstream)  # no [DONE]: the finish chunk carried the usage
    final = sdk_final(MESSAGES, frames)
    assert final["thinking"] == [("Hmm, easy.", "")]
    assert (final["text"], final["stop"], final["usage"]) == ("Four.", "end_turn", (9, 0, 4))
    assert translator.usage is not None and translator.usage.total_tokens == 13


def test_a_refusal_streams_as_a_refusal_part_to_responses_clients() -> None:
    upstream: Stream = [
        _chat_delta({"role": "assistant", "refusal": "I can't "}),
        _chat_delta({"refusal": "help with that."}),
        _chat_delta({}, "stop"),
        (None, b"[DONE]"),
    ]
    frames, _ = run(CHAT, RESPONSES, upstream)
    events = typed(RESPONSES, frames)
    message = events[-1].response.output[0]
    assert message.content[0].type == "refusal" and message.content[0].refusal == "I can't help with that."
    assert sdk_final(MESSAGES, run(CHAT, MESSAGES, upstream)[0])["text"] == "I can't help with that."


def test_embeddings_do_not_stream() -> None:
    with pytest.raises(translate.TranslationError):
        translate.stream("openai-embeddings", CHAT, model="m")
