"""Failover, cool-down and the gateway's own 429, seen through the real SDKs.

Two upstreams serve each model here, the primary at priority 0 and the secondary at priority 1. The
primary is made to fail (500, 429, a hang past its first-byte timeout, a refused connection, a stream
cut after its first events), and the tests check who answered, what the SDK saw, and what the
gateway counted and logged.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from test.e2e.llm_harness import RunningGateway, metric, request, run_gateway, upstream
from test.e2e.llm_sdk import anthropic_client, openai_client
from test.e2e.llm_standins import StandIn, refusing_url, running

pytestmark = pytest.mark.e2e

PRIMARY_KEY = "sk-primary-" + secrets.token_hex(8)
SECONDARY_KEY = "sk-secondary-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def standins() -> Iterator[dict[str, StandIn]]:
    made = {
        "primary": StandIn("openai", name="primary", key=PRIMARY_KEY, hang_seconds=5),
        "secondary": StandIn("openai", name="secondary", key=SECONDARY_KEY),
        "a-primary": StandIn("anthropic", name="a-primary", key=PRIMARY_KEY, hang_seconds=5),
        "a-secondary": StandIn("anthropic", name="a-secondary", key=SECONDARY_KEY),
    }
    with running(*made.values()):
        yield made


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, standins: dict[str, StandIn]
) -> Iterator[RunningGateway]:
    fast = {"firstByteSeconds": 1, "connectSeconds": 1}
    upstreams = [
        upstream("primary", "openai", standins["primary"].url, ["gpt-ha"], apiKeyEnv="K1", timeouts=fast),
        upstream("refused", "openai", refusing_url(), ["gpt-refused"], apiKeyEnv="K1", timeouts=fast),
        upstream(
            "secondary",
            "openai",
            standins["secondary"].url,
            ["gpt-ha", "gpt-refused"],
            apiKeyEnv="K2",
            priority=1,
        ),
        upstream(
            "a-primary", "anthropic", standins["a-primary"].url, ["claude-ha"], apiKeyEnv="K1", timeouts=fast
        ),
        upstream(
            "a-secondary", "anthropic", standins["a-secondary"].url, ["claude-ha"], apiKeyEnv="K2", priority=1
        ),
    ]
    env = {"K1": PRIMARY_KEY, "K2": SECONDARY_KEY}
    with run_gateway(
        tmp_path_factory.mktemp("llm-failover"), upstreams, env=env, routing={"failuresBeforeCooldown": 1000}
    ) as gw:
        yield gw


@pytest.fixture(autouse=True)
def fresh(standins: dict[str, StandIn]) -> Iterator[None]:
    for s in standins.values():
        s.reset()
    yield
    for s in standins.values():
        assert s.invalid == []


HELLO = [{"role": "user", "content": "hello"}]


def failovers(gw: RunningGateway, upstream: str, reason: str) -> float:
    return metric(gw.metrics(), "agentkube_llm_failovers_total", upstream=upstream, reason=reason)


def test_a_500_fails_over_to_the_next_priority(gateway: RunningGateway, standins: dict[str, StandIn]) -> None:
    before = failovers(gateway, "primary", "5xx")
    standins["primary"].fail(500)
    completion = openai_client(gateway).chat.completions.create(model="gpt-ha", messages=HELLO)
    assert completion.choices[0].message.content == "secondary says hello"
    assert len(standins["primary"].requests) == 1
    (received,) = standins["secondary"].requests
    assert received.headers["authorization"] == f"Bearer {SECONDARY_KEY}"
    assert failovers(gateway, "primary", "5xx") == before + 1
    assert '"failed":"primary"' in gateway.log() and '"to":"secondary"' in gateway.log()


def test_without_failures_the_lowest_priority_number_serves(
    gateway: RunningGateway, standins: dict[str, StandIn]
) -> None:
    assert openai_client(gateway).chat.completions.create(model="gpt-ha", messages=HELLO).choices[
        0
    ].message.content == ("primary says hello")
    assert standins["secondary"].requests == []


def test_a_429_fails_over_too(gateway: RunningGateway, standins: dict[str, StandIn]) -> None:
    standins["a-primary"].fail(429, headers={"retry-after": "30"})
    message = anthropic_client(gateway).messages.create(model="claude-ha", max_tokens=16, messages=HELLO)
    assert message.content[0].type == "text" and message.content[0].text == "a-secondary says hello"
    assert failovers(gateway, "a-primary", "429") >= 1


def test_a_hang_past_the_first_byte_timeout_fails_over(
    gateway: RunningGateway, standins: dict[str, StandIn]
) -> None:
    standins["primary"].hang()
    started = time.monotonic()
    completion = openai_client(gateway).chat.completions.create(model="gpt-ha", messages=HELLO)
    assert completion.choices[0].message.content == "secondary says hello"
    assert 1.0 <= time.monotonic() - started < 4.5  # the primary's 1 s, not its 5 s hang
    assert failovers(gateway, "primary", "timeout") >= 1


def test_a_refused_connection_fails_over(gateway: RunningGateway, standins: dict[str, StandIn]) -> None:
    before = failovers(gateway, "refused", "connection")
    with openai_client(gateway).responses.stream(model="gpt-refused", input="hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == "secondary says hello"
    assert failovers(gateway, "refused", "connection") == before + 1


def test_a_stream_fails_over_while_nothing_reached_the_client(
    gateway: RunningGateway, standins: dict[str, StandIn]
) -> None:
    standins["a-primary"].fail(503)
    with anthropic_client(gateway).messages.stream(
        model="claude-ha", max_tokens=16, messages=HELLO
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "a-secondary says hello"
    assert len(standins["a-primary"].requests) == 1


def test_a_failure_after_the_first_byte_is_not_retried(
    gateway: RunningGateway, standins: dict[str, StandIn]
) -> None:
    standins["primary"].break_stream()
    stream = openai_client(gateway).chat.completions.create(model="gpt-ha", messages=HELLO, stream=True)
    got = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            got += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert "failed mid-stream" in e.value.message
    assert got == "primary "  # the first events arrived, then the error, and nothing more
    assert standins["secondary"].requests == []
    standins["a-primary"].break_stream()
    with pytest.raises(anthropic.APIStatusError) as ae:  # noqa: SIM117
        with anthropic_client(gateway).messages.stream(
            model="claude-ha", max_tokens=16, messages=HELLO
        ) as astream:
            "".join(astream.text_stream)
    assert ae.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": ae.value.body["error"]["message"]},
    }
    assert standins["a-secondary"].requests == []
    assert "not retried" in gateway.log()


def test_a_4xx_goes_back_without_failover(gateway: RunningGateway, standins: dict[str, StandIn]) -> None:
    standins["primary"].fail(422)
    with pytest.raises(openai.UnprocessableEntityError):
        openai_client(gateway).chat.completions.create(model="gpt-ha", messages=HELLO)
    assert standins["secondary"].requests == []


def test_when_every_upstream_fails_the_last_ones_answer_goes_back(
    gateway: RunningGateway, standins: dict[str, StandIn]
) -> None:
    standins["primary"].fail(500)
    overloaded = {"message": "secondary overloaded", "type": "server_error", "param": None, "code": None}
    standins["secondary"].fail(503, body={"error": overloaded})
    with pytest.raises(openai.InternalServerError) as e:
        openai_client(gateway).chat.completions.create(model="gpt-ha", messages=HELLO)
    assert e.value.status_code == 503 and e.value.body == overloaded


def test_unreachable_everywhere_is_a_502_naming_the_upstream(tmp_path: Path) -> None:
    upstreams = [
        upstream("gone", "openai", refusing_url(), ["m"], apiKeyEnv="K", timeouts={"connectSeconds": 1})
    ]
    with run_gateway(tmp_path, upstreams, env={"K": "k"}) as gw:
        answer = request("POST", gw.openai_base + "/chat/completions", b'{"model": "m", "messages": []}')
    assert answer.status_code == 502
    assert answer.json()["error"]["message"].startswith("upstream gone could not be reached")


def test_an_upstream_that_keeps_failing_cools_down(tmp_path: Path) -> None:
    with StandIn("openai", name="flaky") as flaky, StandIn("openai", name="steady") as steady:
        upstreams = [
            upstream("flaky", "openai", flaky.url, ["m"], apiKeyEnv="K"),
            upstream("steady", "openai", steady.url, ["m"], apiKeyEnv="K", priority=5),
        ]
        with run_gateway(
            tmp_path, upstreams, env={"K": "k"}, routing={"failuresBeforeCooldown": 2, "cooldownSeconds": 600}
        ) as gw:
            flaky.fail(500, times=100)
            client = openai_client(gw)
            for _ in range(5):
                assert client.chat.completions.create(model="m", messages=HELLO).choices[
                    0
                ].message.content == ("steady says hello")
            assert len(flaky.requests) == 2  # then skipped while it cools down
            assert len(steady.requests) == 5
            assert metric(gw.metrics(), "agentkube_llm_upstream_cooling_down", upstream="flaky") == 1
            assert "cooling down" in gw.log()


def test_the_gateways_own_429_is_retried_by_the_sdk_after_retry_after(tmp_path: Path) -> None:
    with StandIn("openai", name="limited") as limited:
        upstreams = [upstream("limited", "openai", limited.url, ["m"], apiKeyEnv="K")]
        with run_gateway(tmp_path, upstreams, env={"K": "k"}, rateLimit={"requestsPerMinute": 60}) as gw:
            body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
            statuses = [
                request("POST", gw.openai_base + "/chat/completions", body).status_code for _ in range(61)
            ]
            assert statuses[:60] == [200] * 60
            assert statuses[60] == 429
            refused = request("POST", gw.openai_base + "/chat/completions", body)
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert refused.headers["x-ratelimit-limit-requests"] == "60"
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            retrying = openai.OpenAI(base_url=gw.openai_base, api_key="unused", max_retries=3)
            started = time.monotonic()
            completion = retrying.chat.completions.create(model="m", messages=HELLO)
            assert completion.choices[0].message.content == "limited says hello"
            assert time.monotonic() - started > 0.3  # it waited as told before trying again
            assert metric(gw.metrics(), "agentkube_llm_rate_limited_total") >= 3
            assert len(limited.requests) == 61


def test_no_provider_key_reaches_the_log(gateway: RunningGateway) -> None:
    log = gateway.log()
    assert '"event":"failing over"' in log
    for key in (PRIMARY_KEY, SECONDARY_KEY):
        assert key not in log
