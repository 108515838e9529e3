"""Google Vertex AI through the gateway: Claude by rawPredict, Gemini by generateContent, and the
OAuth tokens google-auth really fetches, from a service-account key or the metadata server.

The stand-in (``vertex_standin``) verifies what Vertex and Google's token endpoint would: the JWT
grant's signature against the key's public half, an unexpired bearer token on every request, Claude
bodies against the ``anthropic`` SDK's ``MessageCreateParams`` (model in the URL, not the body), and
Gemini bodies' shapes. The openai and anthropic SDKs are the clients and check every answer;
``anthropic.AnthropicVertex`` pointed at the stand-in is the reference for what a Claude request
should look like on the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from test.e2e.llm_harness import RunningGateway, metric, run_gateway, upstream
from test.e2e.llm_sdk import anthropic_client, openai_client
from test.e2e.vertex_standin import VERSION, VertexStandIn

pytestmark = pytest.mark.e2e

PROJECT = "agentkube-test"
CLAUDE = "claude-sonnet-4-5@20250929"
GEMINI = "gemini-2.5-flash"
HELLO: Any = [{"role": "user", "content": "hello"}]
TOOL_CHAT: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_MESSAGES: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """Nothing of this machine's own Google setup may leak in: no key file, an empty gcloud config."""
    gcloud = tmp / "gcloud"
    gcloud.mkdir(exist_ok=True)
    return {"GOOGLE_APPLICATION_CREDENTIALS": "", "CLOUDSDK_CONFIG": str(gcloud), **extra}


def _vertex(standin: VertexStandIn, **extra: Any) -> dict[str, Any]:
    return upstream(
        "vertex",
        "vertex",
        standin.url,
        [CLAUDE, GEMINI],
        project=standin.project,
        location=standin.location,
        **extra,
    )


@pytest.fixture(scope="module")
def standin() -> Iterator[VertexStandIn]:
    with VertexStandIn(project=PROJECT, location="us-east5") as made:
        yield made


@pytest.fixture(scope="module")
def key(standin: VertexStandIn) -> dict[str, Any]:
    return standin.service_account()


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, standin: VertexStandIn, key: dict[str, Any]
) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("llm-vertex")
    env = _env(tmp, VERTEX_KEY=json.dumps(key))
    with run_gateway(tmp, [_vertex(standin, apiKeyEnv="VERTEX_KEY")], env=env) as gw:
        yield gw


@pytest.fixture(autouse=True)
def fresh(standin: VertexStandIn) -> Iterator[None]:
    standin.reset()
    yield
    assert standin.invalid == []


# ---------------------------------------------------------------------------------------- Claude


def _reference(standin: VertexStandIn) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        region=standin.location,
        project_id=standin.project,
        access_token=standin.mint(),
        base_url=standin.url + "/v1",
        max_retries=0,
    )


def test_claude_requests_go_out_as_anthropic_vertex_sends_them(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    params: Any = {
        "model": CLAUDE,
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": HELLO,
        "tools": [TOOL_MESSAGES],
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "extra_headers": {"anthropic-beta": "context-1m-2025-08-07"},
    }
    # This SDK release writes its own dated version into the body; Vertex documents vertex-2023-10-16,
    # which the gateway sends: the reference is told to send it too, everything else is the SDK's.
    reference = _reference(standin)
    for stream in (False, True):
        standin.reset()
        if stream:
            with reference.messages.stream(**params, extra_body={"anthropic_version": VERSION}) as s:
                s.until_done()
            with anthropic_client(gateway).messages.stream(**params) as s:
                s.until_done()
        else:
            reference.messages.create(**params, extra_body={"anthropic_version": VERSION})
            anthropic_client(gateway).messages.create(**params)
        theirs, ours = standin.received()
        assert ours.path == theirs.path
        assert ours.path.endswith(
            f"/publishers/anthropic/models/{CLAUDE}:" + ("streamRawPredict" if stream else "rawPredict")
        )
        assert ours.body == theirs.body
        assert ours.body["anthropic_version"] == VERSION and "model" not in ours.body
        assert ours.headers["anthropic-beta"] == theirs.headers["anthropic-beta"] == "context-1m-2025-08-07"
        assert "anthropic-version" not in ours.headers
        assert ours.headers["authorization"].startswith("Bearer ya29.standin-")

    standin.reset()
    counted = reference.messages.count_tokens(
        model=CLAUDE, messages=HELLO, extra_body={"anthropic_version": VERSION}
    )
    through = anthropic_client(gateway).messages.count_tokens(model=CLAUDE, messages=HELLO)
    theirs, ours = standin.received()
    assert ours.path == theirs.path and ours.path.endswith(
        "/publishers/anthropic/models/count-tokens:rawPredict"
    )
    assert ours.body == theirs.body
    assert through.input_tokens == counted.input_tokens == 10


def test_claude_messages_and_streams_pass_through(gateway: RunningGateway, standin: VertexStandIn) -> None:
    client = anthropic_client(gateway)
    message = client.messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
    assert message.content[0].type == "text" and message.content[0].text == "vertex says hello"
    assert message.usage.input_tokens == 11
    with client.messages.stream(model=CLAUDE, max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "vertex says hello" and final.stop_reason == "end_turn"


def test_openai_chat_reaches_claude_on_vertex_translated(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    client = openai_client(gateway)
    completion = client.chat.completions.create(model=CLAUDE, messages=HELLO)
    assert completion.choices[0].message.content == "vertex says hello"
    (sent,) = standin.received(":rawPredict")
    assert sent.body["anthropic_version"] == VERSION and "model" not in sent.body
    chunks = list(client.chat.completions.create(model=CLAUDE, messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "vertex says hello"
    (streamed,) = standin.received(":streamRawPredict")
    assert streamed.body["stream"] is True


def test_anthropic_errors_from_raw_predict_reach_the_client_unchanged(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}}
    standin.fail(400, body=body)
    with pytest.raises(anthropic.BadRequestError) as raised:
        anthropic_client(gateway).messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
    assert raised.value.body == body


# ---------------------------------------------------------------------------------------- Gemini


def test_gemini_chat_completion_and_usage(gateway: RunningGateway, standin: VertexStandIn) -> None:
    before = metric(gateway.metrics(), "agentkube_llm_tokens_total", model=GEMINI, kind="input")
    completion = openai_client(gateway).chat.completions.create(
        model=GEMINI,
        messages=[{"role": "system", "content": "Be brief."}, *HELLO],
        temperature=0.2,
        max_completion_tokens=50,
        stop=["END"],
    )
    assert completion.choices[0].message.content == "vertex says hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    (sent,) = standin.received(":generateContent")
    assert sent.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]
    assert sent.body["generationConfig"] == {
        "temperature": 0.2,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
    }
    after = metric(gateway.metrics(), "agentkube_llm_tokens_total", model=GEMINI, kind="input")
    assert after - before == 11


def test_gemini_streams_reach_each_client_api(gateway: RunningGateway, standin: VertexStandIn) -> None:
    chunks = list(
        openai_client(gateway).chat.completions.create(
            model=GEMINI, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text == "vertex says hello" and usage is not None and usage.completion_tokens == 3
    (sent,) = standin.received(":streamGenerateContent")
    assert sent.query == {"alt": "sse"}

    with anthropic_client(gateway).messages.stream(model=GEMINI, max_tokens=64, messages=HELLO) as stream:
        assert "".join(stream.text_stream) == "vertex says hello"
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3

    events = list(openai_client(gateway).responses.create(model=GEMINI, input="hello", stream=True))
    completed = [e for e in events if e.type == "response.completed"]
    assert completed and completed[0].response.output_text == "vertex says hello"


def test_a_gemini_stream_cut_midway_ends_in_an_error_the_sdk_raises(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    standin.break_stream()
    with (
        pytest.raises(anthropic.APIStatusError, match="failed mid-stream"),
        anthropic_client(gateway).messages.stream(model=GEMINI, max_tokens=64, messages=HELLO) as stream,
    ):
        stream.get_final_message()


def test_gemini_tool_call_round_trip_with_chat_completions(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    client = openai_client(gateway)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model=GEMINI, messages=messages, tools=[TOOL_CHAT])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    (sent,) = standin.received(":generateContent")
    assert sent.body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": TOOL_CHAT["function"]["parameters"],
                }
            ]
        }
    ]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(model=GEMINI, messages=messages, tools=[TOOL_CHAT])
    assert second.choices[0].message.content == "vertex got the tool result: sunny"
    # The stand-in refuses the second turn unless its call came back with its thought signature.
    history = standin.received(":generateContent")[-1].body["contents"]
    assert [c["role"] for c in history] == ["user", "model", "user"]
    assert history[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}
    ]


def test_gemini_tool_call_round_trip_with_a_messages_stream(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    client = anthropic_client(gateway)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    with client.messages.stream(
        model=GEMINI, max_tokens=64, messages=messages, tools=[TOOL_MESSAGES], tool_choice={"type": "any"}
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    assert standin.received(":streamGenerateContent")[0].body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY"}
    }
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    with client.messages.stream(
        model=GEMINI, max_tokens=64, messages=messages, tools=[TOOL_MESSAGES]
    ) as stream:
        assert "".join(stream.text_stream) == "vertex got the tool result: sunny"


def test_google_errors_reach_each_client_in_its_own_envelope(
    gateway: RunningGateway, standin: VertexStandIn
) -> None:
    standin.fail(429, headers={"Retry-After": "7"})
    with pytest.raises(openai.RateLimitError) as chat_error:
        openai_client(gateway).chat.completions.create(model=GEMINI, messages=HELLO)
    assert "failed on purpose" in chat_error.value.message
    assert chat_error.value.response.headers["retry-after"] == "7"
    standin.fail(429)
    with pytest.raises(anthropic.RateLimitError) as messages_error:
        anthropic_client(gateway).messages.create(model=GEMINI, max_tokens=64, messages=HELLO)
    assert messages_error.value.body["error"]["type"] == "rate_limit_error"
    standin.fail(404)
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(gateway).messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
    standin.fail(403)
    with pytest.raises(openai.PermissionDeniedError):
        openai_client(gateway).chat.completions.create(model=GEMINI, messages=HELLO)


def test_no_key_or_token_reaches_the_log(
    gateway: RunningGateway, standin: VertexStandIn, key: dict[str, Any]
) -> None:
    openai_client(gateway).chat.completions.create(model=GEMINI, messages=HELLO)
    log = gateway.log()
    body_of_key = key["private_key"].splitlines()[1]
    assert body_of_key not in log and "ya29." not in log
    assert all(token not in log for token in standin.issued)


# ------------------------------------------------------------------------------ workload identity


def test_workload_identity_through_the_metadata_server_and_the_global_location(
    tmp_path: Path,
) -> None:
    with VertexStandIn(project=PROJECT, location="global") as vertex:
        env = _env(tmp_path, **vertex.metadata_env())
        with run_gateway(tmp_path, [_vertex(vertex)], env=env) as gw:
            completion = openai_client(gw).chat.completions.create(model=GEMINI, messages=HELLO)
            message = anthropic_client(gw).messages.create(model=CLAUDE, max_tokens=64, messages=HELLO)
        assert completion.choices[0].message.content == message.content[0].text == "vertex says hello"  # type: ignore[union-attr]
        assert vertex.invalid == []
        paths = [r.path for r in vertex.requests]
        assert all(f"/projects/{PROJECT}/locations/global/publishers/" in p for p in paths)
        assert {who for _, who in vertex.issued.values()} == {"metadata"}


@pytest.mark.parametrize("source", ["service-account", "metadata"])
def test_a_token_expiring_mid_run_is_refreshed_without_a_failed_request(tmp_path: Path, source: str) -> None:
    lifetime = 5.0  # refreshed from 2.5 s on; not sent in its last 0.5 s
    with VertexStandIn(project=PROJECT, token_seconds=lifetime) as vertex:
        if source == "metadata":
            env = _env(tmp_path, **vertex.metadata_env())
            config = _vertex(vertex)
        else:
            env = _env(tmp_path, VERTEX_KEY=json.dumps(vertex.service_account()))
            config = _vertex(vertex, apiKeyEnv="VERTEX_KEY")
        with run_gateway(tmp_path, [config], env=env) as gw:
            chat = openai_client(gw)
            messages = anthropic_client(gw)
            deadline = time.monotonic() + 2.5 * lifetime
            answered = 0
            while time.monotonic() < deadline:  # every request must succeed: none may carry a stale token
                assert chat.chat.completions.create(model=GEMINI, messages=HELLO).choices[0].message.content
                assert messages.messages.create(model=CLAUDE, max_tokens=16, messages=HELLO).content
                answered += 2
        assert vertex.invalid == []
        assert len(vertex.tokens_used) == answered
        assert all(use.seconds_left > 0 for use in vertex.tokens_used)
        assert len({use.token for use in vertex.tokens_used}) >= 3  # refreshed twice or more while serving
        assert len(vertex.issued) >= 3
