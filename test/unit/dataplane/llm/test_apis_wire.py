"""What the gateway reads and writes on the wire of each API: the model rewrite done in place, SSE
frames split as they arrive, and the token usage each API reports."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkube.dataplane.llm.apis import CHAT, EMBEDDINGS, MESSAGES, RESPONSES
from agentkube.dataplane.llm.gateway import rewrite_model
from agentkube.dataplane.llm.metrics import StreamUsage, Usage, usage_of
from agentkube.dataplane.llm.providers.sse import Event, EventTooLarge, SseSplitter


def test_rewrite_touches_only_the_model() -> None:
    raw = b'{"messages":[{"role":"user","content":"x \\u00e9"}] , "model" : "fast","temperature":0.50}'
    assert rewrite_model(raw, "fast", "gpt-4o") == (
        b'{"messages":[{"role":"user","content":"x \\u00e9"}] , "model":"gpt-4o","temperature":0.50}'
    )


def test_rewrite_adds_a_model_first_when_there_was_none() -> None:
    assert rewrite_model(b' {"messages": []}', None, "m") == b' {"model":"m","messages": []}'
    assert rewrite_model(b"{}", None, "m") == b'{"model":"m"}'


def test_rewrite_declines_when_it_cannot_be_sure() -> None:
    twice = b'{"model": "fast", "metadata": {"model": "fast"}}'
    assert rewrite_model(twice, "fast", "x") is None
    escaped = b'{"model": "f\\u0061st"}'
    assert rewrite_model(escaped, "fast", "x") is None


@given(
    st.text(min_size=1, max_size=20),
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=4),
)
def test_rewrite_keeps_the_json_meaning(old: str, new: str, extra: dict[str, int]) -> None:
    body = {**{k: v for k, v in extra.items() if k != "model"}, "model": old}
    raw = orjson.dumps(body)
    rewritten = rewrite_model(raw, old, new)
    if rewritten is not None:
        assert orjson.loads(rewritten) == {**body, "model": new}


def test_sse_frames_split_anywhere_come_out_whole() -> None:
    stream = (
        b'event: message_start\r\ndata: {"a":1}\r\n\r\n: ping\n\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    )
    for cut in range(1, len(stream)):
        splitter = SseSplitter()
        events = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:]) + splitter.finish()
        assert events == [
            Event("message_start", b'{"a":1}'),
            Event(None, b'{"b":\n2}'),
            Event(None, b"[DONE]"),
        ]


def test_a_last_frame_without_its_blank_line_is_kept_and_a_huge_one_refused() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b"data: x") == []
    assert splitter.finish() == [Event(None, b"x")]
    with pytest.raises(EventTooLarge):
        SseSplitter(max_event_bytes=10).feed(b"data: " + b"x" * 20)


def test_usage_of_each_api() -> None:
    chat = {
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}
    }
    assert usage_of(CHAT, chat) == Usage(input=6, output=5, cache_read=4)
    responses = {
        "usage": {"input_tokens": 8, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 0}}
    }
    assert usage_of(RESPONSES, responses) == Usage(input=8, output=2)
    assert usage_of(EMBEDDINGS, {"usage": {"prompt_tokens": 3, "total_tokens": 3}}) == Usage(input=3)
    messages = {
        "usage": {
            "input_tokens": 7,
            "output_tokens": 9,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        }
    }
    assert usage_of(MESSAGES, messages) == Usage(input=7, output=9, cache_read=100, cache_write=20)
    assert usage_of(CHAT, {"usage": None}) is None and usage_of(CHAT, [1]) is None


def test_stream_usage_reads_only_the_events_that_carry_it() -> None:
    chat = StreamUsage(CHAT)
    chat.feed(None, b'{"choices":[{"delta":{"content":"hi"}}]}')
    assert chat.usage is None
    chat.feed(None, b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}')
    assert chat.usage == Usage(input=3, output=4)
    messages = StreamUsage(MESSAGES)
    messages.feed(
        "message_start", b'{"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}'
    )
    messages.feed("message_delta", b'{"type":"message_delta","delta":{},"usage":{"output_tokens":30}}')
    assert messages.usage == Usage(input=12, output=30)
    responses = StreamUsage(RESPONSES)
    responses.feed("response.created", b'{"type":"response.created","response":{"usage":null}}')
    responses.feed(
        "response.completed",
        b'{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":6}}}',
    )
    assert responses.usage == Usage(input=5, output=6)
    broken = StreamUsage(CHAT)
    broken.feed(None, b'{"usage": [not json')
    assert broken.usage is None
