"""The response cache's pure parts: keys, Cache-Control, the local LRU + TTL, entries and their
encoding for the shared store, and stream recording.

The shared store itself (entries seen by every replica, TTL there, an outage) is in
test/integration/test_llm_shared_store.py, against a real redis-server.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from agentkube.dataplane.llm.apis import CHAT, EMBEDDINGS, MESSAGES, RESPONSES
from agentkube.dataplane.llm.cache import (
    IGNORED_FIELDS,
    Entry,
    LocalCache,
    StreamRecording,
    _decode,
    _encode,
    cache_key,
    cacheable,
    may_serve,
)

CHAT_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "temperature": 0,
    "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ],
}
FRAMES = [
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
    b'data: {"choices":[]}\n\n',
    b"data: [DONE]\n\n",
]


class Clock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body_entry(body: bytes = b'{"id":"chatcmpl-1"}', status: int = 200) -> Entry:
    return Entry(status, "application/json", body=body)


# --- keys -------------------------------------------------------------------------------------------


def test_key_order_and_whitespace_of_the_clients_json_do_not_matter() -> None:
    compact = orjson.loads(orjson.dumps(CHAT_BODY))
    spaced = orjson.loads(
        b'{ "tools": [{"function": {"parameters": {"properties": {}, "type": "object"}, "name": "f"},'
        b' "type": "function"}], "temperature": 0, "messages": [{"content": "Be brief.", "role": "system"},'
        b' {"role": "user", "content": "Hi"}], "model": "gpt-4o-mini" }'
    )
    assert cache_key(CHAT, "gpt-4o-mini", compact) == cache_key(CHAT, "gpt-4o-mini", spaced)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(max_examples=150)
@given(body=st.dictionaries(st.text(max_size=6), json_values, max_size=6), seed=st.integers(0, 1000))
def test_any_reordering_of_keys_at_any_depth_gives_the_same_key(body: dict[str, Any], seed: int) -> None:
    assert cache_key(MESSAGES, "m", body) == cache_key(MESSAGES, "m", _shuffled(body, random.Random(seed)))


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.0},
        {"temperature": 1},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"model": "alias-of-gpt-4o-mini"},
        {"seed": 7},
        {"stream": True},
        {"service_tier": "flex"},
        {"tools": []},
    ],
)
def test_every_value_that_shapes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert cache_key(CHAT, "gpt-4o-mini", {**CHAT_BODY, **change}) != cache_key(
        CHAT, "gpt-4o-mini", CHAT_BODY
    )


def test_api_resolved_model_and_vary_are_part_of_the_key() -> None:
    base = cache_key(CHAT, "gpt-4o-mini", CHAT_BODY)
    others = {
        cache_key(RESPONSES, "gpt-4o-mini", CHAT_BODY),
        cache_key(CHAT, "gpt-4o", CHAT_BODY),
        cache_key(CHAT, "gpt-4o-mini", CHAT_BODY, vary={"client": "team-a"}),
        cache_key(CHAT, "gpt-4o-mini", CHAT_BODY, vary={"anthropic-beta": "output-128k-2025-02-19"}),
    }
    assert base not in others and len(others) == 4
    assert cache_key(CHAT, "gpt-4o-mini", CHAT_BODY, vary={}) == base


def test_vary_header_names_count_in_any_case() -> None:
    assert cache_key(MESSAGES, "m", CHAT_BODY, vary={"Anthropic-Version": "2023-06-01"}) == cache_key(
        MESSAGES, "m", CHAT_BODY, vary={"anthropic-version": "2023-06-01"}
    )


def test_who_asks_and_provider_bookkeeping_do_not_count() -> None:
    noisy = {
        **CHAT_BODY,
        "user": "end-user-42",
        "metadata": {"user_id": "u-1", "trace": "t"},
        "store": True,
        "safety_identifier": "hash",
        "prompt_cache_key": "pk",
        "prompt_cache_retention": "24h",
    }
    assert set(noisy) - set(CHAT_BODY) == IGNORED_FIELDS
    assert cache_key(CHAT, "gpt-4o-mini", noisy) == cache_key(CHAT, "gpt-4o-mini", CHAT_BODY)


def test_stream_false_is_absent_and_stream_options_count_only_when_streaming() -> None:
    plain = cache_key(CHAT, "m", CHAT_BODY)
    assert cache_key(CHAT, "m", {**CHAT_BODY, "stream": False}) == plain
    assert cache_key(CHAT, "m", {**CHAT_BODY, "stream_options": {"include_usage": True}}) == plain
    streamed = cache_key(CHAT, "m", {**CHAT_BODY, "stream": True})
    with_usage = cache_key(
        CHAT, "m", {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert len({plain, streamed, with_usage}) == 3


def test_the_key_leaves_the_body_unchanged_and_is_a_sha256_hex() -> None:
    body = {**copy.deepcopy(CHAT_BODY), "user": "u", "stream": False}
    before = copy.deepcopy(body)
    key = cache_key(EMBEDDINGS, "text-embedding-3-small", body)
    assert body == before
    assert len(key) == 64 and int(key, 16) >= 0


# --- Cache-Control --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "stores", "serves"),
    [
        ({}, True, True),
        ({"Cache-Control": "no-store"}, False, False),
        ({"cache-control": "No-Store"}, False, False),
        ({"Cache-Control": "private, no-cache"}, True, False),
        ({"Cache-Control": "max-age=0"}, True, False),
        ({"Cache-Control": "max-age = 0"}, True, False),
        ({"Cache-Control": "max-age=60"}, True, True),
        ({"Pragma": "no-cache"}, True, True),
    ],
)
def test_cache_control_of_the_request(headers: dict[str, str], stores: bool, serves: bool) -> None:
    assert (cacheable(headers), may_serve(headers)) == (stores, serves)


def test_every_cache_control_header_of_an_aiohttp_request_counts() -> None:
    headers = CIMultiDictProxy(CIMultiDict([("cache-control", "max-age=60"), ("Cache-Control", "no-store")]))
    assert not cacheable(headers)
    assert not may_serve(headers)


# --- entries ----------------------------------------------------------------------------------------


def test_an_entry_holds_a_body_or_events_never_both_nor_neither() -> None:
    with pytest.raises(ValueError, match="either a body or the events"):
        Entry(200, "application/json")
    with pytest.raises(ValueError, match="either a body or the events"):
        Entry(200, "text/event-stream", body=b"{}", events=[])
    assert Entry(200, "text/event-stream", events=FRAMES).size == sum(map(len, FRAMES))


@pytest.mark.parametrize(
    "entry",
    [
        body_entry(),
        body_entry(b""),
        Entry(201, "application/json; charset=utf-8", body=bytes(range(256)) * 10),
        Entry(200, "text/event-stream", events=FRAMES),
        Entry(200, "text/event-stream", events=[]),
        Entry(200, "text/event-stream", events=[b"", b"event: ping\ndata: {}\n\n"]),
    ],
)
def test_entries_read_back_from_the_stores_form_as_they_went_in(entry: Entry) -> None:
    assert _decode(_encode(entry)) == entry


def test_bytes_that_are_not_an_entry_of_this_version_read_as_none() -> None:
    good = _encode(Entry(200, "text/event-stream", events=FRAMES))
    for blob in (b"", b"AKc1", b"XXXX" + good[4:], good[:-1], good + b"x", good[:12], b"AKc0" + good[4:]):
        assert _decode(blob) is None


# --- the local cache ------------------------------------------------------------------------------


async def test_a_stored_answer_is_served_until_its_ttl_passes() -> None:
    clock = Clock()
    cache = LocalCache(10, 30, clock=clock)
    assert await cache.put("k", body_entry())
    clock.now += 29.9
    assert await cache.get("k") == body_entry()
    clock.now += 0.1
    assert await cache.get("k") is None
    assert len(cache) == 0 and cache.bytes == 0


async def test_the_least_recently_used_entry_goes_first() -> None:
    cache = LocalCache(2, 60, clock=Clock())
    await cache.put("a", body_entry(b"a"))
    await cache.put("b", body_entry(b"b"))
    assert await cache.get("a") is not None
    await cache.put("c", body_entry(b"c"))
    assert await cache.get("b") is None
    assert {k for k in "ac" if await cache.get(k)} == {"a", "c"}
    assert len(cache) == 2


async def test_storing_a_key_again_replaces_it_and_restarts_its_ttl() -> None:
    clock = Clock()
    cache = LocalCache(5, 10, clock=clock)
    await cache.put("k", body_entry(b"old"))
    clock.now += 8
    await cache.put("k", body_entry(b"newer"))
    clock.now += 8
    assert await cache.get("k") == body_entry(b"newer")
    assert (len(cache), cache.bytes) == (1, 5)


async def test_total_bytes_are_bounded_least_recently_used_out_first() -> None:
    cache = LocalCache(100, 60, max_bytes=1000, clock=Clock())
    for i in range(5):
        assert await cache.put(str(i), body_entry(bytes(300)))
    assert cache.bytes <= 1000
    assert [k for k in "01234" if await cache.get(k)] == ["2", "3", "4"]


async def test_only_successful_answers_within_the_entry_bound_are_stored() -> None:
    cache = LocalCache(10, 60, max_entry_bytes=100, clock=Clock())
    assert not await cache.put("429", body_entry(status=429))
    assert not await cache.put("500", body_entry(status=500))
    assert not await cache.put("304", body_entry(status=304))
    assert not await cache.put("big", body_entry(bytes(101)))
    assert not await cache.put("big-stream", Entry(200, "text/event-stream", events=[bytes(60), bytes(60)]))
    assert await cache.put("fits", body_entry(bytes(100)))
    assert len(cache) == 1
    assert cache.max_entry_bytes == 100


async def test_a_stream_comes_back_as_its_frames() -> None:
    cache = LocalCache(10, 60, clock=Clock())
    await cache.put("s", Entry(200, "text/event-stream", events=FRAMES))
    hit = await cache.get("s")
    assert hit is not None and hit.events == FRAMES and hit.body is None


def test_a_local_cache_needs_room_and_time() -> None:
    with pytest.raises(ValueError, match="maxEntries"):
        LocalCache(0, 10)
    with pytest.raises(ValueError, match="ttlSeconds"):
        LocalCache(10, 0)


# --- recording a stream -----------------------------------------------------------------------------


def test_a_recording_within_the_bound_becomes_an_entry() -> None:
    recording = StreamRecording(max_bytes=1000)
    recording.add(FRAMES[0])
    recording.extend(FRAMES[1:])
    entry = recording.entry()
    assert entry == Entry(200, "text/event-stream", events=FRAMES)
    assert not recording.overflowed


def test_a_recording_past_the_bound_lets_its_frames_go_and_yields_nothing() -> None:
    recording = StreamRecording(max_bytes=50)
    recording.extend([bytes(30), bytes(30), bytes(1)])
    assert recording.overflowed
    assert recording._frames is None
    assert recording.entry() is None
