"""The Bedrock provider: model-id routing, the InvokeModel body, signing, credential refresh, stream
events and error envelopes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import threading
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from botocore.credentials import Credentials, RefreshableCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.llm.apis import CHAT, CONVERSE, EMBEDDINGS, MESSAGES, RESPONSES, Failure
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers import ProviderError, build
from agentkube.dataplane.llm.providers.bedrock import AwsCredentials, BedrockProvider, is_claude
from agentkube.dataplane.llm.providers.eventstream import EventStreamError
from test.e2e.bedrock_standin import Issued, event_frame, exception_frame, frame, verify_sigv4

CLAUDE_IDS = [
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "global.anthropic.claude-haiku-4-5-20251001-v1:0",
    "apac.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
]
OTHER_IDS = [
    "amazon.nova-pro-v1:0",
    "us.meta.llama3-3-70b-instruct-v1:0",
    "mistral.mistral-large-2407-v1:0",
    "deepseek.r1-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
    "cohere.command-r-plus-v1:0",
]


def bedrock(environ: dict[str, str] | None = None, **fields: Any) -> BedrockProvider:
    config = Upstream.model_validate(
        {"name": "aws", "provider": "bedrock", "models": ["m"], "region": "us-east-1", **fields}
    )
    built = build(config, environ if environ is not None else {})
    assert isinstance(built, BedrockProvider)
    return built


def static(provider: BedrockProvider, key: str = "AKIDEXAMPLE", token: str | None = None) -> None:
    provider.credentials = AwsCredentials("aws", resolve=lambda: Credentials(key, "secret", token))


@pytest.mark.parametrize("model", CLAUDE_IDS)
def test_claude_ids_profiles_and_arns_go_through_invoke_model(model: str) -> None:
    p = bedrock()
    assert is_claude(model)
    assert [p.api_for(a, model) for a in (CHAT, RESPONSES, MESSAGES, EMBEDDINGS)] == [
        MESSAGES,
        MESSAGES,
        MESSAGES,
        None,
    ]


@pytest.mark.parametrize("model", OTHER_IDS)
def test_every_other_model_goes_through_converse(model: str) -> None:
    p = bedrock()
    assert not is_claude(model)
    assert [p.api_for(a, model) for a in (CHAT, RESPONSES, MESSAGES)] == [CONVERSE, CONVERSE, CONVERSE]


async def test_urls_quote_the_model_id_as_the_anthropic_sdk_does() -> None:
    p = bedrock(api_key_env="KEY", environ={"KEY": "bedrock-api-key"})
    arn = CLAUDE_IDS[-1]
    out = await p.prepare(MESSAGES, arn, b'{"model":"x","messages":[]}', {}, stream=True)
    assert out.url == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/arn:aws:bedrock:us-east-1:123456789012:"
        "inference-profile%2Fus.anthropic.claude-opus-4-1-20250805-v1:0/invoke-with-response-stream"
    )
    assert (await p.prepare(MESSAGES, CLAUDE_IDS[0], b"{}", {})).url.endswith("-v1:0/invoke")
    assert (await p.prepare(CONVERSE, "amazon.nova-pro-v1:0", b"{}", {})).url.endswith(
        "/model/amazon.nova-pro-v1:0/converse"
    )
    streamed = await p.prepare(CONVERSE, "amazon.nova-pro-v1:0", b"{}", {}, stream=True)
    assert streamed.url.endswith("/converse-stream")
    assert streamed.headers["Accept"] == "application/vnd.amazon.eventstream"
    local = bedrock(endpoint="http://127.0.0.1:9000/", api_key_env="KEY", environ={"KEY": "k"})
    assert (await local.prepare(CONVERSE, "m", b"{}", {})).url == "http://127.0.0.1:9000/model/m/converse"


async def test_an_api_key_goes_as_bearer_and_the_body_loses_model_and_stream() -> None:
    p = bedrock(api_key_env="KEY", environ={"KEY": "bedrock-api-key"})
    assert p.credentials is None
    body = orjson.dumps({"model": "claude", "stream": True, "max_tokens": 9, "messages": []})
    out = await p.prepare(
        MESSAGES, CLAUDE_IDS[0], body, {"anthropic-beta": "a-2025, b-2025", "anthropic-version": "2023-06-01"}
    )
    assert out.headers["Authorization"] == "Bearer bedrock-api-key"
    assert "anthropic-version" not in out.headers and "anthropic-beta" not in out.headers
    assert orjson.loads(out.body) == {
        "max_tokens": 9,
        "messages": [],
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["a-2025", "b-2025"],
    }
    converse = await p.prepare(CONVERSE, "amazon.nova-pro-v1:0", b'{"messages":[]}', {})
    assert converse.body == b'{"messages":[]}'


async def test_sigv4_signs_what_is_sent_and_a_changed_byte_breaks_it() -> None:
    p = bedrock(endpoint="http://127.0.0.1:9000")
    static(p, token="session-token")
    out = await p.prepare(MESSAGES, CLAUDE_IDS[1], b'{"model":"x","max_tokens":1,"messages":[]}', {})
    assert out.headers["X-Amz-Security-Token"] == "session-token"
    assert "Credential=AKIDEXAMPLE/" in out.headers["Authorization"]
    host = urlsplit(out.url).netloc
    path = out.url.split(host, 1)[1]
    headers = {**out.headers, "Host": host}
    known = {"AKIDEXAMPLE": Issued("secret", "session-token", None)}
    assert verify_sigv4("POST", path, headers, out.body, known, region="us-east-1") is None
    assert verify_sigv4("POST", path, headers, out.body + b" ", known, region="us-east-1") is not None
    assert verify_sigv4("POST", path, headers, out.body, known, region="eu-west-1") is not None
    assert (
        verify_sigv4("POST", path, headers, out.body, known, region="us-east-1", service="sagemaker")
        is not None
    )
    assert verify_sigv4("POST", path + "x", headers, out.body, known, region="us-east-1") is not None


def test_a_region_is_required_from_the_config_or_the_environment() -> None:
    config = Upstream.model_validate({"name": "aws", "provider": "bedrock", "models": ["m"]})
    with pytest.raises(ProviderError, match=r"upstreams\[aws\]\.region"):
        build(config, {})
    built = build(config, {"AWS_REGION": "eu-central-1"})
    assert isinstance(built, BedrockProvider) and built.root.endswith("eu-central-1.amazonaws.com")


# ------------------------------------------------------------------------------------ credentials


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def refreshable(clock: Clock, lifetime: float, fetched: list[str]) -> Any:
    import datetime

    def refresh() -> dict[str, str]:
        fetched.append(threading.current_thread().name)
        expiry = datetime.datetime.fromtimestamp(clock.now + lifetime, datetime.UTC)
        return {
            "access_key": f"ASIA{len(fetched)}",
            "secret_key": "s",
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    def make() -> RefreshableCredentials:
        first = refresh()
        return RefreshableCredentials(
            first["access_key"],
            first["secret_key"],
            first["token"],
            datetime.datetime.fromisoformat(first["expiry_time"]),
            refresh,
            "test",
            time_fetcher=lambda: datetime.datetime.fromtimestamp(clock.now, datetime.UTC),
        )

    return make


async def test_credentials_are_fetched_off_the_loop_and_refreshed_ahead_of_expiry() -> None:
    clock, fetched = Clock(), []
    creds = AwsCredentials("aws", resolve=refreshable(clock, 3600, fetched), clock=clock)
    loop_thread = threading.current_thread().name
    first = await creds.current()
    assert first.access_key == "ASIA1" and loop_thread not in fetched
    for _ in range(50):  # well before expiry: no fetch at all
        assert (await creds.current()).access_key == "ASIA1"
    clock.now += 3600 - 800  # 13 min left: inside the 15 min window, refreshed in the background
    assert (await creds.current()).access_key == "ASIA1"  # the valid ones, without waiting
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (await creds.current()).access_key != "ASIA1":
            break
    assert (await creds.current()).access_key == "ASIA2"
    assert loop_thread not in fetched


async def test_short_lived_credentials_refresh_at_half_their_life_and_never_are_used_expired() -> None:
    clock, fetched = Clock(), []
    creds = AwsCredentials("aws", resolve=refreshable(clock, 8, fetched), clock=clock)
    first = (await creds.current()).access_key
    count = len(fetched)
    clock.now += 3
    assert (await creds.current()).access_key == first  # 5 s of 8 left: kept, nothing fetched
    assert len(fetched) == count
    clock.now += 6.5  # past expiry: the caller waits for new ones
    assert (await creds.current()).access_key != first
    assert len(fetched) > count


async def test_no_credentials_anywhere_is_a_502_naming_the_fix() -> None:
    creds = AwsCredentials("aws", resolve=lambda: None)
    with pytest.raises(Failure) as e:
        await creds.current()
    assert e.value.status == 502
    assert "credentialsRef" in e.value.message and "serviceAccountName" in e.value.message


async def test_a_failing_chain_is_a_502_with_its_reason_answered_at_once_until_it_is_tried_again() -> None:
    calls = []
    now = [1000.0]

    def broken() -> Any:
        calls.append(1)
        raise RuntimeError("sts said no")

    creds = AwsCredentials("aws", resolve=broken, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(Failure, match="sts said no"):
            await creds.current()
    assert len(calls) == 1, "within RETRY_SECONDS the last failure is the answer: no request waits again"
    now[0] += AwsCredentials.RETRY_SECONDS
    with pytest.raises(Failure, match="sts said no"):
        await creds.current()
    assert len(calls) == 2


# ----------------------------------------------------------------------------------------- events


def test_invoke_model_chunks_become_the_anthropic_events_they_carry() -> None:
    inner = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    chunk = event_frame("chunk", {"bytes": base64.b64encode(orjson.dumps(inner)).decode()})
    source = bedrock().stream_events()
    events = source.feed(chunk[:10]) + source.feed(chunk[10:])
    assert [(e.event, orjson.loads(e.data)) for e in events] == [("content_block_delta", inner)]
    assert source.finish() == []


def test_converse_events_keep_their_type_and_payload() -> None:
    data = event_frame("messageStop", {"stopReason": "end_turn"})
    (event,) = bedrock().stream_events().feed(data)
    assert event.event == "messageStop" and orjson.loads(event.data)["stopReason"] == "end_turn"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("throttlingException", "rate_limit_error"),
        ("modelStreamErrorException", "api_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("validationException", "invalid_request_error"),
    ],
)
def test_exception_frames_become_anthropic_error_events(name: str, kind: str) -> None:
    (event,) = bedrock().stream_events().feed(exception_frame(name, "it broke"))
    assert event.event == "error"
    assert orjson.loads(event.data) == {"type": "error", "error": {"type": kind, "message": "it broke"}}
    error = frame({":message-type": "error", ":error-code": "InternalFailure", ":error-message": "oops"}, b"")
    (event,) = bedrock().stream_events().feed(error)
    assert orjson.loads(event.data)["error"]["message"] == "oops"


def test_a_chunk_without_base64_json_is_a_malformed_stream() -> None:
    with pytest.raises(EventStreamError):
        bedrock().stream_events().feed(event_frame("chunk", {"bytes": "%%%"}))


# ----------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error_type", "anthropic_type"),
    [
        (429, "ThrottlingException", "rate_limit_error"),
        (400, "ValidationException", "invalid_request_error"),
        (403, "AccessDeniedException", "permission_error"),
        (403, "UnrecognizedClientException", "authentication_error"),
        (503, "ServiceUnavailableException", "overloaded_error"),
        (429, "ModelNotReadyException", "overloaded_error"),
        (404, "ResourceNotFoundException", "not_found_error"),
        (500, "InternalServerException", "api_error"),
        (408, "ModelTimeoutException", "timeout_error"),
        (418, "SomethingNewException", "invalid_request_error"),
    ],
)
def test_bedrock_errors_become_anthropic_envelopes(status: int, error_type: str, anthropic_type: str) -> None:
    headers = {"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    api, body = bedrock().error_envelope(CONVERSE, status, b'{"message":"Too many tokens"}', headers)
    assert api == MESSAGES
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": anthropic_type, "message": "Too many tokens"},
    }


def test_an_error_without_a_type_or_json_still_gets_an_envelope() -> None:
    _, body = bedrock().error_envelope(MESSAGES, 503, b"upstream connect error", {})
    assert orjson.loads(body)["error"] == {"type": "overloaded_error", "message": "upstream connect error"}
    _, body = bedrock().error_envelope(MESSAGES, 502, b"", {})
    assert orjson.loads(body)["error"]["message"] == "Bedrock answered HTTP 502"


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_a_converse_stream_translates_the_same_however_its_bytes_are_cut(cuts: list[int]) -> None:
    from agentkube.dataplane.llm import translate
    from test.unit.dataplane.llm.test_bedrock_converse import STREAM

    data = b"".join(event_frame(name, orjson.loads(payload)) for name, payload in STREAM)
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})

    def translated(pieces: list[bytes]) -> bytes:
        source = bedrock().stream_events()
        translator = translate.stream(CONVERSE, MESSAGES, model="alias")
        out = [f for piece in pieces for e in source.feed(piece) for f in translator.feed(e.event, e.data)]
        out += [f for e in source.finish() for f in translator.feed(e.event, e.data)]
        return b"".join(out + translator.finish())

    whole = translated([data])
    assert whole.count(b"event: message_stop") == 1
    cut = translated([data[a:b] for a, b in itertools.pairwise(points)])
    strip = re.compile(rb'"id":"msg_[0-9a-f]+"')  # the gateway makes a fresh message id each time
    assert strip.sub(b"", cut) == strip.sub(b"", whole)
