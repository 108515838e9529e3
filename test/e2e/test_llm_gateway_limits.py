"""Rate limits and the cache across replicas: two real ``agentkube llm-gateway`` processes, one store.

Two gateway processes with the same config stand for two replicas of one LLMGateway. With a ``store``
(a real redis-server with a password, from hack/install-redis.sh, handed over through ``passwordEnv``)
they draw on one budget and one cache; without one, each enforces its share of the budget. Clients
are the real ``openai`` and ``anthropic`` SDKs (retries off, so every 429 reaches the test); the
headers are read from the SDKs' raw responses. Budgets are small (3 to 6 a minute) so that a test
never waits for a refill: GCRA lets the whole budget through at once and then one request every
``60 / N`` seconds, far longer than a test takes. The tests skip only when no redis-server can be had.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from agentkube.testing import eventually
from test.e2e.llm_harness import RunningGateway, metric, run_gateway, upstream
from test.e2e.llm_standins import StandIn
from test.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-up-openai-" + secrets.token_hex(8)
ANTHROPIC_KEY = "sk-up-anthropic-" + secrets.token_hex(8)
ALICE_KEY = "sk-alice-" + secrets.token_hex(8)
BOB_KEY = "sk-bob-" + secrets.token_hex(8)
HELLO: Any = [{"role": "user", "content": "hello"}]
GPT, CLAUDE = "gpt-x", "claude-x"


@dataclass(frozen=True)
class Reply:
    """What one client saw: status, headers (lower-case names), the error envelope or the text;
    ``gateway`` is the answering process's port, for failure messages."""

    gateway: str
    status: int
    headers: dict[str, str]
    envelope: Any = None
    text: str | None = None

    @property
    def limit(self) -> int:
        return int(self.headers["x-ratelimit-limit-requests"])

    @property
    def remaining(self) -> int:
        return int(self.headers["x-ratelimit-remaining-requests"])

    @property
    def reset_seconds(self) -> float:
        return go_duration(self.headers["x-ratelimit-reset-requests"])


def go_duration(text: str) -> float:
    """Seconds in Go's duration format as OpenAI's reset headers use it (``20ms``, ``1.5s``, ``1m0s``)."""
    found = re.fullmatch(r"(?:(\d+)m)?(\d+(?:\.\d+)?)(ms|s)", text)
    assert found, f"not a duration: {text!r}"
    minutes, amount, unit = found.groups()
    return int(minutes or 0) * 60 + float(amount) / (1000 if unit == "ms" else 1)


async def ask_openai(gw: RunningGateway, *, model: str = GPT, key: str = "unused") -> Reply:
    """One Chat Completions request through the openai SDK."""
    name = gw.url.rsplit(":", 1)[1]
    async with openai.AsyncOpenAI(base_url=gw.openai_base, api_key=key, max_retries=0) as client:
        try:
            raw = await client.chat.completions.with_raw_response.create(model=model, messages=HELLO)
        except openai.RateLimitError as e:
            return Reply(name, e.status_code, dict(e.response.headers), envelope=e.response.json())
        completion = raw.parse()
        return Reply(name, raw.status_code, dict(raw.headers), text=completion.choices[0].message.content)


async def ask_anthropic(gw: RunningGateway, *, model: str = CLAUDE, key: str = "unused") -> Reply:
    """One Messages request through the anthropic SDK."""
    name = gw.url.rsplit(":", 1)[1]
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0) as client:
        try:
            raw = await client.messages.with_raw_response.create(model=model, max_tokens=32, messages=HELLO)
        except anthropic.RateLimitError as e:
            return Reply(name, e.status_code, dict(e.response.headers), envelope=e.response.json())
        message = await raw.parse()
        text = "".join(block.text for block in message.content if block.type == "text")
        return Reply(name, raw.status_code, dict(raw.headers), text=text)


def assert_refused(reply: Reply, limit: int, *, api: str = "openai") -> None:
    """A 429 of the gateway's limiter: the client API's own envelope and every rate-limit header,
    ``Retry-After`` no later than one emission interval and consistent with the reset time."""
    assert reply.status == 429, reply
    if api == "openai":
        error = reply.envelope["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded", reply.envelope
    else:
        assert reply.envelope["type"] == "error", reply.envelope
        assert reply.envelope["error"]["type"] == "rate_limit_error", reply.envelope
    assert f"rate limit of {limit} requests per minute" in str(reply.envelope)
    assert reply.limit == limit and reply.remaining == 0
    interval = 60 / limit
    retry_after, retry_ms = int(reply.headers["retry-after"]), int(reply.headers["retry-after-ms"])
    assert 1 <= retry_after <= math.ceil(interval), reply.headers
    assert retry_after == max(1, math.ceil(retry_ms / 1000)), reply.headers
    # GCRA: a refused request's reset (all of the budget back) is (limit - 1) intervals past its
    # retry (one request back); both come from one decision, each rounded up to the millisecond.
    assert abs(reply.reset_seconds * 1000 - retry_ms - (limit - 1) * interval * 1000) <= 2, reply.headers
    assert 60 - 15 < reply.reset_seconds <= 60, reply.headers


def assert_allowed(reply: Reply, limit: int, remaining: int) -> None:
    assert reply.status == 200 and reply.text, reply
    assert (reply.limit, reply.remaining) == (limit, remaining), reply.headers
    assert "retry-after" not in reply.headers
    # Time until the whole budget is back: the requests spent so far, one interval each.
    spent = limit - remaining
    assert spent * 60 / limit - 15 < reply.reset_seconds <= spent * 60 / limit, reply.headers


@pytest.fixture
def standins() -> Iterator[dict[str, StandIn]]:
    with (
        StandIn("openai", name="up-openai", key=OPENAI_KEY) as up_openai,
        StandIn("anthropic", name="up-anthropic", key=ANTHROPIC_KEY) as up_anthropic,
    ):
        yield {GPT: up_openai, CLAUDE: up_anthropic}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    with running_redis(workdir) as server:
        yield server


@contextlib.contextmanager
def replicas(
    tmp_path: Path, standins: dict[str, StandIn], store: RedisServer | None, **extra: Any
) -> Iterator[tuple[RunningGateway, RunningGateway]]:
    """Two gateway processes of one config (one name, so one key prefix in the store)."""
    upstreams = [
        upstream("up-openai", "openai", standins[GPT].url, [GPT], apiKeyEnv="OPENAI_KEY"),
        upstream("up-anthropic", "anthropic", standins[CLAUDE].url, [CLAUDE], apiKeyEnv="ANTHROPIC_KEY"),
    ]
    env = {
        "OPENAI_KEY": OPENAI_KEY,
        "ANTHROPIC_KEY": ANTHROPIC_KEY,
        "ALICE_KEY": ALICE_KEY,
        "BOB_KEY": BOB_KEY,
    }
    if store is not None:
        env["STORE_PASSWORD"] = store.password
        extra["store"] = {"url": store.url, "passwordEnv": "STORE_PASSWORD"}
    with (
        run_gateway(tmp_path, upstreams, env=env, **extra) as a,
        run_gateway(tmp_path, upstreams, env=env, **extra) as b,
    ):
        yield a, b


def upstream_requests(standins: dict[str, StandIn]) -> int:
    return sum(len(s.requests) for s in standins.values())


def assert_no_secret_logged(*gateways: RunningGateway, store: RedisServer | None = None) -> None:
    secrets_used = [OPENAI_KEY, ANTHROPIC_KEY, ALICE_KEY, BOB_KEY] + ([store.password] if store else [])
    for gw in gateways:
        log = gw.log()
        assert log, "the gateway logged nothing"
        for secret in secrets_used:
            assert secret not in log


async def test_a_global_budget_holds_across_two_replicas_whichever_gets_the_requests(
    tmp_path: Path, standins: dict[str, StandIn], store: RedisServer
) -> None:
    limit = 5
    with replicas(
        tmp_path, standins, store, rateLimit={"requestsPerMinute": limit, "scope": "global", "replicas": 2}
    ) as (a, b):
        # One after the other, alternating processes and client APIs: the remaining count goes down
        # across both, so each decision saw the other process's requests.
        allowed = [
            await ask_openai(a),
            await ask_openai(b),
            await ask_anthropic(a),
            await ask_anthropic(b),
            await ask_openai(b),
        ]
        for spent, reply in enumerate(allowed, start=1):
            assert_allowed(reply, limit, limit - spent)
        # Every further request is refused, by either process, in the envelope of its client's API.
        assert_refused(await ask_openai(a), limit)
        assert_refused(await ask_anthropic(b), limit, api="anthropic")
        assert_refused(await ask_openai(b), limit)
        assert_refused(await ask_anthropic(a), limit, api="anthropic")
        assert upstream_requests(standins) == limit
        refused = [metric(gw.metrics(), "agentkube_llm_rate_limited_total") for gw in (a, b)]
        assert refused == [2, 2]
        for gw in (a, b):
            assert metric(gw.metrics(), "agentkube_llm_store_errors", user="ratelimit") == 0
    assert_no_secret_logged(a, b, store=store)


async def test_concurrent_requests_over_both_replicas_get_exactly_each_models_budget(
    tmp_path: Path, standins: dict[str, StandIn], store: RedisServer
) -> None:
    limit, burst = 4, 10
    # replicas: 2 makes a decision of the fallback (limit 2) tell itself apart from the store's (4).
    with replicas(
        tmp_path, standins, store, rateLimit={"requestsPerMinute": limit, "scope": "perModel", "replicas": 2}
    ) as (a, b):
        # One model's budget spent first, by requests sent at once to both processes in turn ...
        gateways = itertools.cycle((a, b))
        gpt = await asyncio.gather(*(ask_openai(next(gateways)) for _ in range(burst)))
        # ... leaves the other model's whole.
        claude = await asyncio.gather(*(ask_anthropic(next(gateways)) for _ in range(burst)))
        for per_model, api in ((gpt, "openai"), (claude, "anthropic")):
            assert sorted(r.status for r in per_model) == [200] * limit + [429] * (burst - limit)
            assert {r.limit for r in per_model} == {limit}  # every one decided by the store
            assert sorted(r.remaining for r in per_model if r.status == 200) == list(range(limit))
            for reply in per_model:
                if reply.status == 429:
                    assert_refused(reply, limit, api=api)
        assert len(standins[GPT].requests) == limit and len(standins[CLAUDE].requests) == limit
        for gw in (a, b):
            assert metric(gw.metrics(), "agentkube_llm_store_errors", user="ratelimit") == 0
        assert sum(metric(gw.metrics(), "agentkube_llm_rate_limited_total") for gw in (a, b)) == 2 * (
            burst - limit
        )
    assert_no_secret_logged(a, b, store=store)


async def test_per_client_budgets_are_separate_and_each_holds_across_both_replicas(
    tmp_path: Path, standins: dict[str, StandIn], store: RedisServer
) -> None:
    limit = 3
    auth = {
        "mode": "apikey",
        "clients": [{"id": "alice", "keyEnv": "ALICE_KEY"}, {"id": "bob", "keyEnv": "BOB_KEY"}],
    }
    with replicas(
        tmp_path, standins, store, auth=auth, rateLimit={"requestsPerMinute": limit, "scope": "perClient"}
    ) as (a, b):
        alice = [
            await ask_openai(a, key=ALICE_KEY),
            await ask_anthropic(b, key=ALICE_KEY),
            await ask_openai(b, model=CLAUDE, key=ALICE_KEY),  # another model: still alice's budget
        ]
        for spent, reply in enumerate(alice, start=1):
            assert_allowed(reply, limit, limit - spent)
        assert_refused(await ask_openai(a, key=ALICE_KEY), limit)
        assert_refused(await ask_anthropic(b, key=ALICE_KEY), limit, api="anthropic")
        # Alice's spent budget leaves bob's whole, on either process.
        bob = [
            await ask_anthropic(b, key=BOB_KEY),
            await ask_openai(a, key=BOB_KEY),
            await ask_openai(b, key=BOB_KEY),
        ]
        for spent, reply in enumerate(bob, start=1):
            assert_allowed(reply, limit, limit - spent)
        assert_refused(await ask_openai(a, key=BOB_KEY), limit)
        assert_refused(await ask_openai(b, key=ALICE_KEY), limit)
        assert upstream_requests(standins) == 2 * limit
        for client, refused in (("alice", 3), ("bob", 1)):
            texts = [gw.metrics() for gw in (a, b)]
            assert sum(metric(t, "agentkube_llm_rate_limited_total", client=client) for t in texts) == refused
        # The client's own key never went upstream: each stand-in saw only its provider key.
        assert all(r.headers.get("authorization") == f"Bearer {OPENAI_KEY}" for r in standins[GPT].requests)
        assert all(r.headers.get("x-api-key") == ANTHROPIC_KEY for r in standins[CLAUDE].requests)
    assert_no_secret_logged(a, b, store=store)


async def test_without_a_store_each_replica_enforces_its_share(
    tmp_path: Path, standins: dict[str, StandIn]
) -> None:
    limit, share = 6, 3
    with replicas(
        tmp_path, standins, None, rateLimit={"requestsPerMinute": limit, "scope": "global", "replicas": 2}
    ) as (a, b):
        for gw in (a, b):
            replies = [await ask_openai(gw), await ask_anthropic(gw), await ask_openai(gw)]
            for spent, reply in enumerate(replies, start=1):
                assert_allowed(reply, share, share - spent)
            assert_refused(await ask_openai(gw), share)
            assert_refused(await ask_anthropic(gw), share, api="anthropic")
        # Together about the budget: each share was spent on its own process.
        assert upstream_requests(standins) == limit


async def test_a_store_outage_falls_back_to_each_replicas_share_and_ends_when_it_answers(
    tmp_path: Path, standins: dict[str, StandIn], store: RedisServer
) -> None:
    limit, share = 6, 3
    # At debug level, the most the gateway ever logs: the store's password is still not in it.
    with replicas(
        tmp_path,
        standins,
        store,
        log_level="debug",
        rateLimit={"requestsPerMinute": limit, "scope": "global", "replicas": 2},
    ) as (a, b):
        assert_allowed(await ask_openai(a), limit, limit - 1)
        assert_allowed(await ask_openai(b), limit, limit - 2)

        store.stop()
        # Each process goes on answering, under its own share (whole when the outage begins).
        for gw in (a, b):
            replies = [await ask_openai(gw), await ask_anthropic(gw), await ask_openai(gw)]
            for spent, reply in enumerate(replies, start=1):
                assert_allowed(reply, share, share - spent)
            assert_refused(await ask_openai(gw), share)
            text = gw.metrics()
            assert metric(text, "agentkube_llm_store_down", user="ratelimit") == 1
            assert metric(text, "agentkube_llm_store_errors", user="ratelimit") >= 1
            assert '"event":"shared store unreachable; falling back until it answers"' in gw.log()
        assert upstream_requests(standins) == 2 + 2 * share

        # The store is back, empty (it keeps nothing on disk), its scripts forgotten. Each process
        # probes it at most once a second; until then its exhausted share refuses, costing nothing.
        store.start()

        back: list[Reply] = []
        for gw in (a, b):

            async def decided_by_the_store(gw: RunningGateway = gw) -> Reply | None:
                reply = await ask_openai(gw)
                return reply if reply.limit == limit else None

            back.append(await eventually(decided_by_the_store, f"the store decides on {gw.url} again", 10))
        # One budget again, drawn on by both: the remaining count goes down across the processes.
        back += [await ask_anthropic(a), await ask_openai(b), await ask_openai(a), await ask_anthropic(b)]
        for spent, reply in enumerate(back, start=1):
            assert_allowed(reply, limit, limit - spent)
        assert_refused(await ask_openai(a), limit)
        assert_refused(await ask_anthropic(b), limit, api="anthropic")
        for gw in (a, b):
            assert metric(gw.metrics(), "agentkube_llm_store_down", user="ratelimit") == 0
            assert '"event":"shared store answers again"' in gw.log()
        assert upstream_requests(standins) == 2 + 2 * share + limit
    assert_no_secret_logged(a, b, store=store)


async def test_an_answer_cached_by_one_replica_is_served_by_the_other(
    tmp_path: Path, standins: dict[str, StandIn], store: RedisServer
) -> None:
    with replicas(tmp_path, standins, store, caching={"enabled": True, "ttlSeconds": 60}) as (a, b):
        async with (
            openai.AsyncOpenAI(base_url=a.openai_base, api_key="unused", max_retries=0) as oa,
            openai.AsyncOpenAI(base_url=b.openai_base, api_key="unused", max_retries=0) as ob,
            anthropic.AsyncAnthropic(base_url=a.url, api_key="unused", max_retries=0) as aa,
            anthropic.AsyncAnthropic(base_url=b.url, api_key="unused", max_retries=0) as ab,
        ):
            first = await oa.chat.completions.with_raw_response.create(model=GPT, messages=HELLO)
            second = await ob.chat.completions.with_raw_response.create(model=GPT, messages=HELLO)
            assert "x-agentkube-cache" not in first.headers
            assert second.headers.get("x-agentkube-cache") == "hit"
            assert second.parse().model_dump() == first.parse().model_dump()  # same id, same text
            assert len(standins[GPT].requests) == 1

            # A stream stored by b is replayed by a as a stream, frame for frame.
            texts, ids = [], []
            for client in (ob, oa):
                async with client.chat.completions.with_streaming_response.create(
                    model=GPT, messages=HELLO, stream=True
                ) as raw:
                    assert raw.headers["content-type"].startswith("text/event-stream")
                    hit = raw.headers.get("x-agentkube-cache")
                    chunks = [chunk async for chunk in await raw.parse()]
                texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
                ids.append((hit, {c.id for c in chunks}))
            assert texts == ["up-openai says hello"] * 2
            assert ids[0][0] is None and ids[1][0] == "hit" and ids[0][1] == ids[1][1]
            assert len(standins[GPT].requests) == 2

            # Anthropic's Messages likewise, stored by a and served by b.
            m1 = await aa.messages.with_raw_response.create(model=CLAUDE, max_tokens=32, messages=HELLO)
            m2 = await ab.messages.with_raw_response.create(model=CLAUDE, max_tokens=32, messages=HELLO)
            assert m2.headers.get("x-agentkube-cache") == "hit" and "x-agentkube-cache" not in m1.headers
            assert (await m2.parse()).id == (await m1.parse()).id
            assert len(standins[CLAUDE].requests) == 1
        assert (
            sum(metric(gw.metrics(), "agentkube_llm_cache_lookups_total", result="hit") for gw in (a, b)) == 3
        )
        assert (
            sum(metric(gw.metrics(), "agentkube_llm_cache_lookups_total", result="miss") for gw in (a, b))
            == 3
        )
        for gw in (a, b):
            assert metric(gw.metrics(), "agentkube_llm_store_errors", user="cache") == 0
    assert_no_secret_logged(a, b, store=store)
