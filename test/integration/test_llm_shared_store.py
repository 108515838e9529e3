"""Rate limits and the response cache in a real shared store: a redis-server started by the test.

Two limiter (or cache) instances, each with its own client connection, stand for two replicas of
one gateway. No kube-apiserver is needed; redis-server comes from hack/install-redis.sh (Debian's
package unpacked into a cache), and the tests skip, saying why, only when that script cannot
provide it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from redis.asyncio import Redis

from agentkube.dataplane.llm import store
from agentkube.dataplane.llm.cache import Entry, SharedCache, StreamRecording
from agentkube.dataplane.llm.ratelimit import Decision, LocalLimiter, SharedLimiter
from agentkube.dataplane.llm.store import Outage
from agentkube.testing import eventually
from test.redis_server import LOOPBACK, RedisServer, running_redis

PREFIX = store.key_prefix("team-a/gateway")
FRAMES = [b"event: message_start\ndata: {}\n\n", b'event: content_block_delta\ndata: {"d":"hi"}\n\n']


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[Redis]]:
    """Two clients of the store, one per replica."""
    made = [store.connect(redis_server.url, password=redis_server.password, timeout=5.0) for _ in range(2)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


def shared_limiter(
    client: Redis, per_minute: int, *, replicas: int = 2, retry: float = 1.0, timeout: float = 5.0
) -> SharedLimiter:
    """A limiter of one replica. The deadline is generous unless a test is about it: these tests
    count decisions, and a busy test machine must not turn a slow answer into a fallback."""
    return SharedLimiter(
        client,
        per_minute,
        fallback=LocalLimiter(per_minute, replicas=replicas),
        prefix=PREFIX,
        timeout=timeout,
        outage=Outage("ratelimit", retry_seconds=retry),
    )


# --- rate limits ------------------------------------------------------------------------------------


async def test_two_replicas_draw_on_one_budget_exactly(clients: list[Redis]) -> None:
    # 20 a minute: one request every 3 s refills, far more than the test takes.
    replicas = [shared_limiter(client, 20) for client in clients]
    decisions: list[Decision] = await asyncio.gather(*(replicas[i % 2].acquire("global") for i in range(50)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 20
    assert sorted(d.remaining for d in allowed) == list(range(20))
    assert {i % 2 for i, d in enumerate(decisions) if d.allowed} == {0, 1}
    refused = [d for d in decisions if not d.allowed]
    assert all(d.limit == 20 and d.remaining == 0 and 0 < d.retry_after <= 3.0 for d in refused)
    assert all(r.fallback_decisions == 0 and r.store_errors == 0 for r in replicas)


async def allowed(limiter: SharedLimiter, key: str = "global") -> bool:
    return (await limiter.acquire(key)).allowed


async def test_a_spent_budget_refills_one_request_per_interval_for_every_replica(
    clients: list[Redis],
) -> None:
    # 120 a minute: one request every 0.5 s refills; the burst takes a few milliseconds.
    first, second = (shared_limiter(client, 120) for client in clients)
    assert all(await asyncio.gather(*(allowed(first) for _ in range(120))))
    refused = await second.acquire("global")
    assert not refused.allowed and 0 < refused.retry_after <= 0.5
    started = time.monotonic()
    await eventually(
        lambda: allowed(second), "the other replica gets the first refill", within=5, interval=0.02
    )
    assert not await allowed(first), "one interval refills one request"
    await eventually(lambda: allowed(first), "the next refill", within=5, interval=0.02)
    assert 0.5 <= time.monotonic() - started + refused.retry_after < 3.0


async def test_per_client_and_per_model_keys_are_separate_budgets(clients: list[Redis]) -> None:
    a, b = (shared_limiter(client, 3) for client in clients)
    for limiter in (a, b, a):
        assert (await limiter.acquire("client:team-a")).allowed
    assert not (await b.acquire("client:team-a")).allowed
    assert [(await b.acquire("client:team-b")).allowed for _ in range(4)] == [True] * 3 + [False]
    assert [(await a.acquire("model:gpt-4o")).allowed for _ in range(4)] == [True] * 3 + [False]
    assert (await a.acquire("model:claude-sonnet-4")).allowed
    assert (await a.acquire("global")).allowed


async def test_gateways_sharing_a_store_keep_their_own_budgets(clients: list[Redis]) -> None:
    ours = shared_limiter(clients[0], 1)
    theirs = SharedLimiter(clients[1], 1, fallback=LocalLimiter(1), prefix=store.key_prefix("team-b/gateway"))
    assert (await ours.acquire("global")).allowed
    assert not (await ours.acquire("global")).allowed
    assert (await theirs.acquire("global")).allowed


async def test_a_key_expires_in_the_store_once_its_budget_is_whole(clients: list[Redis]) -> None:
    limiter = shared_limiter(clients[0], 60)
    await limiter.acquire("client:x")
    ttl_ms = await clients[1].pttl(f"{PREFIX}ratelimit:client:x")
    assert 0 < ttl_ms <= 1000


async def test_a_store_outage_falls_back_to_the_local_share_and_ends_when_it_answers(
    redis_server: RedisServer, clients: list[Redis]
) -> None:
    limiter = shared_limiter(clients[0], 10, replicas=2, retry=0.05)
    assert (await limiter.acquire("global")).limit == 10
    with structlog.testing.capture_logs() as logs:
        redis_server.stop()
        started = time.monotonic()
        during = [await limiter.acquire("global") for _ in range(8)]
        assert time.monotonic() - started < 2.0
        assert [d.allowed for d in during] == [True] * 5 + [False] * 3
        assert all(d.limit == 5 for d in during)
        assert limiter.outage.down and limiter.outage.outages == 1
        assert limiter.fallback_decisions == 8 and limiter.store_errors >= 1

        redis_server.start()
        back = await eventually(
            lambda: _from_store(limiter), "the limiter uses the store again", within=10, interval=0.02
        )
        assert back.allowed and back.limit == 10
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["shared store unreachable; falling back until it answers"]
    assert warnings[0]["user"] == "ratelimit"
    assert [e["event"] for e in logs if e["log_level"] == "info"] == ["shared store answers again"]
    assert limiter.outage.outages == 1


async def _from_store(limiter: SharedLimiter) -> Decision | None:
    decision = await limiter.acquire("global")
    return decision if decision.limit == 10 and not limiter.outage.down else None


async def test_a_store_that_never_answers_costs_a_request_one_timeout_then_nothing() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    client = store.connect(f"redis://{LOOPBACK}:{port}/0", password="unused", timeout=0.2)
    limiter = shared_limiter(client, 10, replicas=1, timeout=0.2)
    try:
        started = time.monotonic()
        first = await limiter.acquire("global")
        first_took = time.monotonic() - started
        assert first.allowed and first.limit == 10 and limiter.fallback_decisions == 1
        assert 0.15 <= first_took < 1.0
        started = time.monotonic()
        rest = [await limiter.acquire("global") for _ in range(20)]
        assert time.monotonic() - started < 0.1, "calls during the outage must not wait for the store"
        assert sum(d.allowed for d in rest) == 9
        assert accepted, "the client did reach the silent store"
    finally:
        await client.aclose()
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_a_wrong_password_is_an_outage_whose_logs_never_show_a_password(
    redis_server: RedisServer,
) -> None:
    wrong = "not-" + redis_server.password
    client = store.connect(redis_server.url, password=wrong)
    limiter = shared_limiter(client, 4, replicas=2)
    try:
        with structlog.testing.capture_logs() as logs:
            decision = await limiter.acquire("global")
        assert decision.allowed and decision.limit == 2 and limiter.outage.down
        text = repr(logs)
        assert "Authentication" in text or "WRONGPASS" in text or "invalid" in text
        assert wrong not in text and redis_server.password not in text
    finally:
        await client.aclose()


# --- the cache --------------------------------------------------------------------------------------


def shared_cache(client: Redis, ttl: float = 60.0, retry: float = 1.0) -> SharedCache:
    return SharedCache(client, ttl, prefix=PREFIX, timeout=5.0, outage=Outage("cache", retry_seconds=retry))


async def test_an_answer_one_replica_stores_is_served_by_the_other(clients: list[Redis]) -> None:
    first, second = (shared_cache(client) for client in clients)
    body = Entry(200, "application/json", body=b'{"id":"chatcmpl-1","choices":[]}')
    recording = StreamRecording(first.max_entry_bytes)
    recording.extend(FRAMES)
    stream = recording.entry()
    assert stream is not None
    assert await first.put("plain", body)
    assert await first.put("streamed", stream)
    assert await second.get("plain") == body
    hit = await second.get("streamed")
    assert hit is not None and hit.events == FRAMES and hit.content_type == "text/event-stream"
    assert await second.get("never-stored") is None


async def test_entries_expire_in_the_store_after_the_ttl(clients: list[Redis]) -> None:
    cache = shared_cache(clients[0], ttl=0.3)
    assert await cache.put("k", Entry(200, "application/json", body=b"{}"))
    assert 0 < await clients[1].pttl(f"{PREFIX}cache:k") <= 300
    assert await cache.get("k") is not None
    await eventually(lambda: _gone(cache, "k"), "the entry expires", within=5, interval=0.05)


async def _gone(cache: SharedCache, key: str) -> bool:
    return await cache.get(key) is None


async def test_the_shared_cache_stores_only_successful_answers_within_the_bound(clients: list[Redis]) -> None:
    cache = SharedCache(clients[0], 60, prefix=PREFIX, max_entry_bytes=64)
    assert not await cache.put("e", Entry(500, "application/json", body=b"{}"))
    assert not await cache.put("big", Entry(200, "application/json", body=bytes(65)))
    assert await clients[1].exists(f"{PREFIX}cache:e", f"{PREFIX}cache:big") == 0


async def test_a_store_outage_makes_the_cache_miss_and_store_nothing_until_it_answers(
    redis_server: RedisServer, clients: list[Redis]
) -> None:
    cache = shared_cache(clients[0], retry=0.05)
    entry = Entry(200, "application/json", body=b'{"ok":true}')
    assert await cache.put("k", entry)
    redis_server.stop()
    assert await cache.get("k") is None
    assert not await cache.put("k2", entry)
    assert cache.outage.down and cache.outage.errors >= 1
    redis_server.start()
    # Without persistence the restarted store is empty; what matters is that it is used again.
    await eventually(lambda: cache.put("k3", entry), "the cache stores into the store again", within=10)
    assert await cache.get("k3") == entry and not cache.outage.down


async def test_an_entry_in_a_form_this_version_cannot_read_is_a_miss(clients: list[Redis]) -> None:
    cache = shared_cache(clients[0])
    await clients[1].set(f"{PREFIX}cache:odd", b"not an entry")
    assert await cache.get("odd") is None
    assert not cache.outage.down
