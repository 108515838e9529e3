"""Vertex AI: where each model's requests go, what they carry, how errors read, and the token cache."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import credentials as google_credentials
from google.auth import exceptions as google_exceptions

from agentkube.dataplane.llm.apis import CHAT, EMBEDDINGS, GEMINI, MESSAGES, RESPONSES, Failure
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers import ProviderError, build
from agentkube.dataplane.llm.providers.vertex import SCOPE, GoogleTokens, VertexProvider, host
from agentkube.testing import eventually

CLAUDE = "claude-sonnet-4-5@20250929"


def _key() -> dict[str, Any]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "gw@p-123456.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


KEY = orjson.dumps(_key()).decode()


def vertex(location: str = "us-east5", **fields: Any) -> VertexProvider:
    config = Upstream.model_validate(
        {
            "name": "v",
            "provider": "vertex",
            "models": ["m"],
            "project": "my-project",
            "location": location,
            "apiKeyEnv": "SA",
            **fields,
        }
    )
    built = build(config, {"SA": KEY})
    assert isinstance(built, VertexProvider)
    built.tokens = GoogleTokens("v", lambda: Issued(3600))  # its service account's token endpoint: not here
    return built


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("us-east5", "https://us-east5-aiplatform.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
    ],
)
def test_hosts_for_regions_global_and_multi_regions(location: str, expected: str) -> None:
    assert host(location) == expected
    prefix = f"{expected}/v1/projects/my-project/locations/{location}/publishers"
    provider = vertex(location)
    assert provider.url(MESSAGES, CLAUDE) == f"{prefix}/anthropic/models/{CLAUDE}:rawPredict"
    assert provider.url(GEMINI, "gemini-2.5-pro", stream=True) == (
        f"{prefix}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )


def test_an_endpoint_replaces_the_host_with_or_without_v1() -> None:
    for endpoint in ("http://127.0.0.1:9999", "http://127.0.0.1:9999/v1/"):
        provider = vertex("global", endpoint=endpoint)
        assert provider.url(GEMINI, "gemini-2.5-flash") == (
            "http://127.0.0.1:9999/v1/projects/my-project/locations/global/publishers/google/models/"
            "gemini-2.5-flash:generateContent"
        )


def test_claude_models_speak_messages_every_other_model_gemini() -> None:
    provider = vertex()
    for api in (CHAT, RESPONSES, MESSAGES):
        assert provider.api_for(api, CLAUDE) == MESSAGES
        assert provider.api_for(api, "claude-opus-4-1@20250805") == MESSAGES
        assert provider.api_for(api, "gemini-3-pro-preview") == GEMINI
    assert provider.api_for(EMBEDDINGS, "gemini-embedding-001") is None


async def test_claude_bodies_lose_model_and_gain_the_vertex_version() -> None:
    provider = vertex()
    body = orjson.dumps({"model": CLAUDE, "max_tokens": 5, "messages": [], "stream": True})
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "b1,b2", "x-api-key": "client"}
    out = await provider.prepare(MESSAGES, CLAUDE, body, headers, stream=True)
    assert out.url.endswith(f"/publishers/anthropic/models/{CLAUDE}:streamRawPredict")
    assert orjson.loads(out.body) == {
        "max_tokens": 5,
        "messages": [],
        "stream": True,
        "anthropic_version": "vertex-2023-10-16",
    }
    assert out.headers["Authorization"] == "Bearer t1"
    assert out.headers["anthropic-beta"] == "b1,b2"
    assert "anthropic-version" not in out.headers and "x-api-key" not in out.headers

    counted = await provider.prepare(MESSAGES, CLAUDE, body, {}, count_tokens=True)
    assert counted.url.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert orjson.loads(counted.body)["model"] == CLAUDE


async def test_gemini_bodies_go_as_they_are_to_generate_content() -> None:
    body = b'{"contents":[]}'
    out = await vertex().prepare(GEMINI, "gemini-2.5-flash", body, {"anthropic-beta": "x"})
    assert out.body is body and out.url.endswith("/google/models/gemini-2.5-flash:generateContent")
    assert "anthropic-beta" not in out.headers
    with pytest.raises(ProviderError):
        await vertex().prepare(EMBEDDINGS, "gemini-embedding-001", b"{}", {})


@pytest.mark.parametrize(
    ("status", "google_status", "anthropic_type"),
    [
        (429, "RESOURCE_EXHAUSTED", "rate_limit_error"),
        (400, "INVALID_ARGUMENT", "invalid_request_error"),
        (400, "FAILED_PRECONDITION", "invalid_request_error"),
        (401, "UNAUTHENTICATED", "authentication_error"),
        (403, "PERMISSION_DENIED", "permission_error"),
        (404, "NOT_FOUND", "not_found_error"),
        (500, "INTERNAL", "api_error"),
        (503, "UNAVAILABLE", "overloaded_error"),
        (504, "DEADLINE_EXCEEDED", "timeout_error"),
        (418, "SOMETHING_NEW", "invalid_request_error"),
    ],
)
def test_google_errors_become_anthropic_envelopes(
    status: int, google_status: str, anthropic_type: str
) -> None:
    google = {"error": {"code": status, "message": "Quota exceeded for aiplatform", "status": google_status}}
    for body in (orjson.dumps(google), orjson.dumps([google])):
        api, rewritten = vertex().error_envelope(GEMINI, status, body, {})
        assert api == MESSAGES
        assert orjson.loads(rewritten) == {
            "type": "error",
            "error": {"type": anthropic_type, "message": "Quota exceeded for aiplatform"},
        }


def test_anthropic_errors_pass_unchanged_and_pages_become_envelopes() -> None:
    anthropic = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert vertex().error_envelope(MESSAGES, 529, anthropic, {}) == (MESSAGES, anthropic)
    api, page = vertex().error_envelope(MESSAGES, 502, b"<html>Bad Gateway</html>", {})
    assert api == MESSAGES
    assert orjson.loads(page)["error"] == {"type": "api_error", "message": "<html>Bad Gateway</html>"}


def test_project_and_location_are_required() -> None:
    for missing in ("project", "location"):
        fields = {"project": "my-project", "location": "global"}
        del fields[missing]
        config = Upstream.model_validate({"name": "v", "provider": "vertex", "models": ["m"], **fields})
        with pytest.raises(ProviderError, match=rf"^upstreams\[v\]\.{missing}: provider vertex needs"):
            build(config, {})


@pytest.mark.parametrize("value", ["not json", '{"type": "authorized_user"}', '{"type": "service_account"}'])
def test_a_key_that_is_no_service_account_is_refused_without_its_value(value: str) -> None:
    config = Upstream.model_validate(
        {
            "name": "v",
            "provider": "vertex",
            "models": ["m"],
            "project": "my-project",
            "location": "global",
            "apiKeyEnv": "SA",
        }
    )
    with pytest.raises(ProviderError) as e:
        build(config, {"SA": value})
    assert str(e.value).startswith("upstreams[v].apiKeyEnv: SA")
    assert value not in str(e.value)


def test_a_service_account_key_makes_scoped_credentials() -> None:
    config = Upstream.model_validate(
        {
            "name": "v",
            "provider": "vertex",
            "models": ["m"],
            "project": "my-project",
            "location": "global",
            "apiKeyEnv": "SA",
        }
    )
    provider = build(config, {"SA": KEY})
    assert isinstance(provider, VertexProvider)
    credentials = provider.tokens._load()
    assert credentials.service_account_email == "gw@p-123456.iam.gserviceaccount.com"
    assert credentials.scopes == [SCOPE]


# ------------------------------------------------------------------------------------------ tokens


class Issued(google_credentials.Credentials):  # type: ignore[misc]
    """Real google-auth credentials whose refresh issues numbered tokens of ``lifetime`` seconds."""

    def __init__(self, lifetime: float, gate: threading.Event | None = None, fail: bool = False) -> None:
        super().__init__()
        self.lifetime = lifetime
        self.gate = gate
        self.fail = fail
        self.calls = 0
        self.threads: set[str] = set()

    def refresh(self, request: Any) -> None:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(10)
        self.calls += 1
        if self.fail:
            raise google_exceptions.RefreshError("invalid_grant: account disabled")
        self.token = f"t{self.calls}"
        self.expiry = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(
            seconds=self.lifetime
        )


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_callers_share_one_refresh_in_a_worker_thread() -> None:
    made = Issued(3600)
    tokens = GoogleTokens("v", lambda: made)
    got = await asyncio.gather(*(tokens.token() for _ in range(8)))
    assert got == ["t1"] * 8 and made.calls == 1
    assert threading.current_thread().name not in made.threads


async def test_a_token_due_for_refresh_is_still_used_while_one_runs_in_the_background() -> None:
    gate = threading.Event()
    gate.set()
    made = Issued(1000, gate)
    clock = Clock()
    tokens = GoogleTokens("v", lambda: made, clock=clock)
    assert await tokens.token() == "t1"
    gate.clear()
    clock.offset = 800  # past refresh time (1000 - 300), well before expiry
    started = time.monotonic()
    assert await asyncio.gather(tokens.token(), tokens.token()) == ["t1", "t1"]
    assert time.monotonic() - started < 1  # answered without waiting on the blocked refresh
    gate.set()
    await eventually(lambda: tokens.refreshes == 2, "the background refresh", within=10)
    assert await tokens.token() == "t2" and made.calls == 2


async def test_an_expired_token_is_waited_for() -> None:
    made = Issued(100)
    clock = Clock()
    tokens = GoogleTokens("v", lambda: made, clock=clock)
    assert await tokens.token() == "t1"
    clock.offset = 95  # inside the last tenth of its life: not sent any more
    assert await tokens.token() == "t2"


async def test_a_failed_refresh_keeps_a_valid_token_and_then_fails_naming_the_upstream() -> None:
    made = Issued(1000)
    clock = Clock()
    tokens = GoogleTokens("vertex-a", lambda: made, clock=clock)
    assert await tokens.token() == "t1"
    made.fail = True
    clock.offset = 800
    assert await tokens.token() == "t1"
    await eventually(lambda: tokens._failed_at is not None, "the failed refresh", within=10)
    assert await tokens.token() == "t1"  # still valid: used while refreshes are retried
    clock.offset = 2000
    with pytest.raises(Failure) as e:
        await tokens.token()
    assert e.value.kind == "bad_gateway"
    assert e.value.message.startswith("upstream vertex-a (vertex): could not get a Google access token:")
    assert "account disabled" in e.value.message
