"""``agentkube llm-gateway`` with the real ``openai`` and ``anthropic`` SDKs as clients.

The gateway is the real console script; behind it, provider stand-ins (``llm_standins``) check every
request it sends against the providers' own SDK request types, record the headers (the client's key
must never arrive, the provider's must) and answer in each API's recorded shape. The SDK clients run
with ``_strict_response_validation``, so every answer the gateway gives is also checked against the
SDK's response types.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from anthropic._client import ANTHROPIC_API_VERSION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test.e2e.llm_harness import RunningGateway, metric, request, run_gateway, upstream
from test.e2e.llm_standins import StandIn, running

pytestmark = pytest.mark.e2e

KEY_A = "agw-team-a-" + secrets.token_hex(12)
KEY_B = "agw-team-b-" + secrets.token_hex(12)
OPENAI_KEY = "sk-upstream-openai-" + secrets.token_hex(12)
ANTHROPIC_KEY = "sk-ant-upstream-" + secrets.token_hex(12)
SECRETS = (KEY_A, KEY_B, OPENAI_KEY, ANTHROPIC_KEY)
PROMPT_MARKER = "marker-" + secrets.token_hex(6)
WEATHER_TOOL_CHAT: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_MESSAGES: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER_TOOL_RESPONSES: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


@pytest.fixture(scope="module")
def openai_up() -> Iterator[StandIn]:
    with StandIn("openai", name="openai-up", key=OPENAI_KEY) as standin:
        yield standin


@pytest.fixture(scope="module")
def anthropic_up() -> Iterator[StandIn]:
    with StandIn("anthropic", name="anthropic-up", key=ANTHROPIC_KEY) as standin:
        yield standin


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, openai_up: StandIn, anthropic_up: StandIn
) -> Iterator[RunningGateway]:
    work = tmp_path_factory.mktemp("llm-gateway")
    upstreams = [
        # The endpoint with its /v1, as the OpenAI SDK's base_url is written: the gateway takes either.
        upstream(
            "openai", "openai", openai_up.url + "/v1", ["gpt-test", "embed-test"], apiKeyEnv="AK_OPENAI"
        ),
        upstream("anthropic", "anthropic", anthropic_up.url, ["claude-test"], apiKeyEnv="AK_ANTHROPIC"),
    ]
    env = {
        "AK_OPENAI": OPENAI_KEY,
        "AK_ANTHROPIC": ANTHROPIC_KEY,
        "AGW_CLIENT_team-a": KEY_A,
        "AGW_CLIENT_team-b": KEY_B,
    }
    with run_gateway(
        work,
        upstreams,
        env=env,
        routing={
            "defaultModel": "gpt-test",
            "modelMap": [
                {"from": "fast", "to": "gpt-test", "upstream": "openai"},
                {"from": "opus", "to": "claude-test", "upstream": "anthropic"},
            ],
        },
        auth={
            "mode": "apikey",
            "clients": [
                {"id": "team-a", "keyEnv": "AGW_CLIENT_team-a"},
                {"id": "team-b", "keyEnv": "AGW_CLIENT_team-b"},
            ],
        },
        limits={"maxRequestBytes": 65536},
    ) as gw:
        yield gw


@pytest.fixture(autouse=True)
def fresh(openai_up: StandIn, anthropic_up: StandIn) -> Iterator[None]:
    openai_up.reset()
    anthropic_up.reset()
    yield
    # Whatever a test did, nothing the gateway sent failed the SDKs' request types, and no request
    # carried a client's key.
    for standin in (openai_up, anthropic_up):
        assert standin.invalid == []
        for received in standin.requests:
            for value in received.headers.values():
                assert KEY_A not in value and KEY_B not in value, received.headers


def oai(gw: RunningGateway, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.openai_base, api_key=key, max_retries=0, _strict_response_validation=True
    )


def ant(gw: RunningGateway, key: str = KEY_A) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, _strict_response_validation=True)


# ------------------------------------------------------------------------------- chat completions


def test_chat_completion_goes_upstream_with_the_provider_key_and_comes_back_with_usage(
    gateway: RunningGateway, openai_up: StandIn
) -> None:
    completion = oai(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.choices[0].message.content == "openai-up says hello"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    (received,) = openai_up.received("/v1/chat/completions")
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert received.body["model"] == "gpt-test"


def test_same_api_bytes_pass_through_with_only_the_alias_rewritten(
    gateway: RunningGateway, openai_up: StandIn
) -> None:
    raw = (
        b'{"messages": [{"role": "user", "content": "caf\\u00e9 \xc3\xa9"}],'
        b'   "model" :  "fast", "temperature": 0.50}'
    )
    answer = request(
        "POST",
        gateway.openai_base + "/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert answer.status_code == 200, answer.text
    (received,) = openai_up.received("/v1/chat/completions")
    assert received.raw == raw.replace(b'"model" :  "fast"', b'"model":"gpt-test"')
    # The upstream's answer comes back as its bytes too.
    assert answer.json()["model"] == "gpt-test"


def test_a_request_without_model_goes_to_the_default_model(
    gateway: RunningGateway, openai_up: StandIn
) -> None:
    raw = b'{"messages": [{"role": "user", "content": "hi"}]}'
    answer = request(
        "POST",
        gateway.openai_base + "/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert answer.status_code == 200, answer.text
    (received,) = openai_up.received("/v1/chat/completions")
    assert received.body == {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_stream_arrives_as_it_is_sent_with_usage_last(
    gateway: RunningGateway, openai_up: StandIn
) -> None:
    openai_up.chunk_delay = 0.25
    try:
        started = time.monotonic()
        stream = oai(gateway).chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        arrivals: list[float] = []
        text = ""
        usage = None
        for chunk in stream:
            arrivals.append(time.monotonic() - started)
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                usage = chunk.usage
    finally:
        openai_up.chunk_delay = 0.0
    assert text == "openai-up says hello"
    assert usage is not None and usage.completion_tokens == 3
    # Seven frames, a quarter second apart upstream: the first reached the client long before the last.
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals


def test_a_chat_stream_without_include_usage_is_counted_and_the_client_gets_no_usage_chunk(
    gateway: RunningGateway, openai_up: StandIn
) -> None:
    def tokens() -> float:
        return metric(gateway.metrics(), "agentkube_llm_tokens_total", model="gpt-test", kind="output")

    before = tokens()
    raw = b'{"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hello"}]}'
    answer = request(
        "POST",
        gateway.openai_base + "/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert answer.status_code == 200, answer.text
    chunks = [orjson.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
    assert chunks and all(chunk["choices"] for chunk in chunks), "no usage-only chunk reaches the client"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "openai-up says hello"
    assert answer.text.rstrip().endswith("data: [DONE]")
    # The gateway asked the upstream for usage (and only added that to what the client sent).
    received = openai_up.received("/v1/chat/completions")[-1].body
    assert received["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in received.items() if k != "stream_options"} == orjson.loads(raw)
    assert tokens() == before + 3


def test_chat_tool_call_round_trip(gateway: RunningGateway, openai_up: StandIn) -> None:
    client = oai(gateway)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model="fast", messages=messages, tools=[WEATHER_TOOL_CHAT])
    (call,) = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"})
    second = client.chat.completions.create(model="fast", messages=messages, tools=[WEATHER_TOOL_CHAT])
    assert second.choices[0].message.content == "openai-up got the tool result: 18 C and sunny"
    assert len(openai_up.received("/v1/chat/completions")) == 2


def test_chat_tool_call_streams_its_arguments(gateway: RunningGateway) -> None:
    stream = oai(gateway).chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER_TOOL_CHAT],
        stream=True,
    )
    arguments = ""
    finish = None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            arguments += (call.function.arguments or "") if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


# -------------------------------------------------------------------------------------- responses


def test_responses_non_stream_and_stream(gateway: RunningGateway, openai_up: StandIn) -> None:
    client = oai(gateway)
    response = client.responses.create(model="gpt-test", input="hello")
    assert response.output_text == "openai-up says hello"
    assert response.usage is not None and response.usage.input_tokens == 11
    with client.responses.stream(model="gpt-test", input="hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "openai-up says hello"
    assert final.output_text == "openai-up says hello"
    assert final.usage is not None and final.usage.output_tokens == 3
    assert [r.body.get("stream") for r in openai_up.received("/v1/responses")] == [None, True]


def test_responses_tool_call_round_trip(gateway: RunningGateway) -> None:
    client = oai(gateway)
    first = client.responses.create(
        model="gpt-test", input="weather in Paris?", tools=[WEATHER_TOOL_RESPONSES]
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = client.responses.create(
        model="gpt-test",
        tools=[WEATHER_TOOL_RESPONSES],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 C and sunny"},
        ],
    )
    assert second.output_text == "openai-up got the tool result: 18 C and sunny"


# --------------------------------------------------------------------------------------- messages


def test_messages_with_the_anthropic_sdk_send_its_version_and_betas_on(
    gateway: RunningGateway, anthropic_up: StandIn
) -> None:
    client = ant(gateway)
    message = client.messages.create(
        model="opus",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"},
    )
    assert message.content[0].type == "text" and message.content[0].text == "anthropic-up says hello"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
    (received,) = anthropic_up.received("/v1/messages")
    assert received.body["model"] == "claude-test"
    assert received.headers["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in received.headers
    assert received.headers["anthropic-version"] == ANTHROPIC_API_VERSION  # the SDK's own
    assert received.headers["anthropic-beta"] == "fine-grained-tool-streaming-2025-05-14"


def test_messages_stream(gateway: RunningGateway) -> None:
    with ant(gateway).messages.stream(
        model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "anthropic-up says hello"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 3)


def test_messages_tool_use_round_trip_streamed_and_not(gateway: RunningGateway) -> None:
    client = ant(gateway)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(
        model="opus", max_tokens=64, messages=messages, tools=[WEATHER_TOOL_MESSAGES]
    )
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    messages.append(
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}
    )
    messages.append(
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C and sunny"}],
        }
    )
    with client.messages.stream(
        model="opus", max_tokens=64, messages=messages, tools=[WEATHER_TOOL_MESSAGES]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "anthropic-up got the tool result: 18 C and sunny"
    with client.messages.stream(
        model="opus", max_tokens=64, messages=messages[:1], tools=[WEATHER_TOOL_MESSAGES]
    ) as stream:
        final = stream.get_final_message()
    (streamed_use,) = [b for b in final.content if b.type == "tool_use"]
    assert streamed_use.input == {"city": "Paris"}


def test_count_tokens_is_the_providers_own_or_an_estimate(
    gateway: RunningGateway, anthropic_up: StandIn
) -> None:
    client = ant(gateway)
    counted = client.messages.count_tokens(model="opus", messages=[{"role": "user", "content": "hello"}])
    assert counted.input_tokens == 10  # the stand-in's 7 per message + 3
    (received,) = anthropic_up.received("/v1/messages/count_tokens")
    assert received.headers["x-api-key"] == ANTHROPIC_KEY
    raw = client.messages.with_raw_response.count_tokens(
        model="gpt-test", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert raw.headers["x-agentkube-token-count"] == "estimate"
    assert raw.parse().input_tokens == 100


# ------------------------------------------------------------------------------------- embeddings


def test_embeddings_in_both_encodings(gateway: RunningGateway, openai_up: StandIn) -> None:
    client = oai(gateway)
    floats = client.embeddings.create(model="embed-test", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [[0.25, -0.5, 0.125], [0.5, -0.5, 0.125]]
    # Unasked, the SDK wants base64 and decodes it after parsing (so its strict check would refuse it).
    lenient = openai.OpenAI(base_url=gateway.openai_base, api_key=KEY_A, max_retries=0)
    packed = lenient.embeddings.create(model="embed-test", input="a")
    assert packed.data[0].embedding == [0.25, -0.5, 0.125]
    assert len(openai_up.received("/v1/embeddings")) == 2


def test_embeddings_of_a_model_without_them_is_a_clear_400(gateway: RunningGateway) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai(gateway).embeddings.create(model="claude-test", input="a")
    assert "has no embeddings API" in e.value.message


# ----------------------------------------------------------------------------------------- models


def test_models_in_the_openai_shape(gateway: RunningGateway) -> None:
    models = oai(gateway).models.list()
    assert [(m.id, m.owned_by) for m in models] == [
        ("gpt-test", "openai"),
        ("embed-test", "openai"),
        ("claude-test", "anthropic"),
        ("fast", "openai"),
        ("opus", "anthropic"),
    ]
    assert oai(gateway).models.retrieve("opus").id == "opus"


def test_models_in_the_anthropic_shape(gateway: RunningGateway) -> None:
    client = ant(gateway)
    assert [m.id for m in client.models.list()] == ["gpt-test", "embed-test", "claude-test", "fast", "opus"]
    page = client.models.list(limit=2)
    assert [m.id for m in page.data] == ["gpt-test", "embed-test"] and page.has_more
    assert [m.id for m in client.models.list(limit=2, after_id="embed-test").data] == ["claude-test", "fast"]
    assert client.models.retrieve("claude-test").display_name == "claude-test"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("nope")


# ---------------------------------------------------------------------------------------- errors


def test_unknown_model_is_404_in_each_apis_envelope(gateway: RunningGateway) -> None:
    with pytest.raises(openai.NotFoundError) as oe:
        oai(gateway).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert oe.value.code == "model_not_found" and oe.value.param == "model"
    with pytest.raises(anthropic.NotFoundError) as ae:
        ant(gateway).messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    message = "model 'nope' is not served by this gateway; GET /v1/models lists the models it serves"
    assert ae.value.body == {"type": "error", "error": {"type": "not_found_error", "message": message}}


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b'{"model": "gpt-test", "messages": [', None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"model": 5, "messages": []}', "model", "model: must be"),
        (b'{"model": "gpt-test", "messages": "hi"}', "messages", "messages: required"),
        (b'{"model": "gpt-test", "messages": [], "stream": "yes"}', "stream", "stream: must be"),
        (b"", None, "has no body"),
    ],
)
def test_bad_input_is_a_400_in_the_client_apis_shape(
    gateway: RunningGateway, body: bytes, param: str | None, needle: str
) -> None:
    auth = {"Authorization": f"Bearer {KEY_A}"}
    answer = request("POST", gateway.openai_base + "/chat/completions", content=body, headers=auth)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and needle in error["message"]
    answer = request(
        "POST",
        gateway.url + "/v1/messages",
        content=body,
        headers={"x-api-key": KEY_A, "anthropic-version": "2023-06-01"},
    )
    assert answer.status_code == 400
    assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "invalid_request_error"


def test_an_oversized_body_is_413_in_each_shape(gateway: RunningGateway) -> None:
    big = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "' + b"x" * 70000 + b'"}]}'
    answer = request(
        "POST",
        gateway.openai_base + "/chat/completions",
        content=big,
        headers={"Authorization": f"Bearer {KEY_A}"},
    )
    assert answer.status_code == 413 and "exceeds 65536 bytes" in answer.json()["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as e:
        ant(gateway).messages.create(
            model="opus", max_tokens=5, messages=[{"role": "user", "content": "x" * 70000}]
        )
    assert e.value.status_code == 413
    assert e.value.body == {
        "type": "error",
        "error": {"type": "request_too_large", "message": "request body exceeds 65536 bytes"},
    }


def test_an_upstream_error_passes_through_unchanged(
    gateway: RunningGateway, openai_up: StandIn, anthropic_up: StandIn
) -> None:
    openai_error = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    openai_up.fail(400, body=openai_error, headers={"x-request-id": "req_standin"})
    with pytest.raises(openai.BadRequestError) as oe:
        oai(gateway).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert oe.value.response.content == json.dumps(openai_error, separators=(",", ":")).encode()
    assert oe.value.request_id == "req_standin"
    anthropic_error = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 210000 tokens > 200000 maximum",
        },
    }
    anthropic_up.fail(400, body=anthropic_error)
    with pytest.raises(anthropic.BadRequestError) as ae:
        ant(gateway).messages.create(model="opus", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ae.value.body == anthropic_error


def test_unknown_paths_and_methods_answer_in_shape(gateway: RunningGateway) -> None:
    auth = {"Authorization": f"Bearer {KEY_A}"}
    answer = request("GET", gateway.openai_base + "/chat/completions", headers=auth)
    assert answer.status_code == 405 and answer.json()["error"]["type"] == "invalid_request_error"
    answer = request("POST", gateway.openai_base + "/fine_tuning/jobs", headers=auth)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


# ------------------------------------------------------------------------------------------- auth


def test_a_wrong_or_missing_key_is_401_in_each_shape(gateway: RunningGateway, openai_up: StandIn) -> None:
    with pytest.raises(openai.AuthenticationError) as oe:
        oai(gateway, key="agw-wrong").chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "x"}]
        )
    assert oe.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError) as ae:
        ant(gateway, key="agw-wrong").messages.create(
            model="opus", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert ae.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }
    with pytest.raises(anthropic.AuthenticationError):
        ant(gateway, key="agw-wrong").models.list()
    answer = request("POST", gateway.openai_base + "/chat/completions", content=b"{}")
    assert answer.status_code == 401 and "no API key" in answer.json()["error"]["message"]
    assert openai_up.requests == []


def test_either_key_header_works_and_the_client_id_labels_metrics(gateway: RunningGateway) -> None:
    before = metric(gateway.metrics(), "agentkube_llm_requests_total", client="team-b", code="200")
    ant(gateway, key=KEY_B).messages.create(
        model="opus", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    oai(gateway, key=KEY_B).chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
    text = gateway.metrics()
    assert metric(text, "agentkube_llm_requests_total", client="team-b", code="200") == before + 2
    assert (
        metric(
            text,
            "agentkube_llm_tokens_total",
            client="team-b",
            model="opus",
            upstream="anthropic",
            kind="input",
        )
        >= 11
    )


# ------------------------------------------------------------------------------------------- logs


def test_logs_carry_no_key_and_no_prompt(gateway: RunningGateway) -> None:
    oai(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": PROMPT_MARKER}]
    )
    ant(gateway).messages.create(
        model="opus", max_tokens=5, messages=[{"role": "user", "content": PROMPT_MARKER}]
    )
    log = gateway.log()
    assert '"event":"request"' in log
    for value in (*SECRETS, PROMPT_MARKER, "agw-wrong"):
        assert value not in log
    assert gateway.config_path.read_text().count("sk-") == 0


def test_a_config_naming_an_unset_key_variable_does_not_start(tmp_path: Path) -> None:
    import subprocess

    from test.e2e.llm_harness import gateway_config
    from test.e2e.proxy_harness import AGENTKUBE

    path = tmp_path / "config.json"
    config = gateway_config(
        [upstream("openai", "openai", "http://127.0.0.1:9", ["m"], apiKeyEnv="AK_NOT_SET_ANYWHERE")],
        18001,
        18002,
    )
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [AGENTKUBE, "llm-gateway", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "upstreams[openai].apiKeyEnv: AK_NOT_SET_ANYWHERE is not set" in done.stderr


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
BODIES = st.one_of(
    JSON.map(lambda v: orjson.dumps(v)),
    st.dictionaries(
        st.sampled_from(["model", "messages", "input", "stream", "max_tokens", "tools", "system"]),
        JSON,
        max_size=5,
    ).map(lambda v: orjson.dumps(v)),
    st.binary(max_size=64),
)
PATHS = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), body=BODIES)
def test_any_body_gets_an_answer_in_the_clients_shape_and_never_a_500(
    gateway: RunningGateway, openai_up: StandIn, anthropic_up: StandIn, path: str, body: bytes
) -> None:
    answer = request("POST", gateway.url + path, body, {"x-api-key": KEY_A})
    assert answer.status_code < 500 or answer.status_code in (501, 502), (answer.status_code, answer.text)
    if answer.status_code >= 400:
        parsed = answer.json()
        if path.startswith("/v1/messages"):
            assert parsed["type"] == "error" and isinstance(parsed["error"]["message"], str)
        else:
            assert isinstance(parsed["error"]["message"], str)
    # What reached a stand-in was the client's own body (passed through as it is); its verdict
    # on garbage is not the gateway's concern here.
    openai_up.reset()
    anthropic_up.reset()


def test_streams_keep_working_after_all_that(gateway: RunningGateway) -> None:
    """No bad input above took a worker down: the same process still streams."""
    with running(StandIn("openai", name="late")):
        pass
    stream = oai(gateway).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "x"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "openai-up says hello"
    assert gateway.peer.process.poll() is None
