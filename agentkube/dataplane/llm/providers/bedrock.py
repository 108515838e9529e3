"""Amazon Bedrock (``provider: bedrock``): Claude through InvokeModel, every other model through Converse.

Which API a request is sent in depends on the model id, as Bedrock names it:

- Claude: an id that names an ``anthropic.`` model: a foundation model
  (``anthropic.claude-sonnet-4-5-20250929-v1:0``), a cross-region inference profile
  (``us.anthropic...``, ``eu.``, ``apac.``, ``global.anthropic...``) or an ARN naming either
  (``arn:aws:bedrock:us-east-1::foundation-model/anthropic...``,
  ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic...``). These go in the
  Anthropic Messages form to ``POST /model/{id}/invoke`` (``/invoke-with-response-stream`` when the
  client asked for a stream): the client's Messages body with ``model`` and ``stream`` removed and
  ``anthropic_version: bedrock-2023-05-31`` added, the client's ``anthropic-beta`` header as the
  body's ``anthropic_beta`` list. An Anthropic-speaking client's request reaches the model as it sent
  it (thinking, cache_control, betas...), and the answer comes back
  as Anthropic wrote it; OpenAI clients are translated into Messages as for ``provider: anthropic``.
- Every other model (Amazon Nova, Llama, Mistral, DeepSeek, an application inference profile ARN,
  which names no model): Converse, ``POST /model/{id}/converse`` (``/converse-stream``), translated
  by ``translate.bedrock_converse`` (its docstring lists what is lossy).

Why InvokeModel and not Bedrock's native Messages endpoint (``bedrock-mantle.{region}.api.aws``,
``/anthropic/v1/messages``, the ``anthropic`` SDK's ``AnthropicBedrockMantle``): InvokeModel on
``bedrock-runtime`` is what every Bedrock region serves for every Claude model, in every id form a
user has today (foundation model, cross-region and application inference profiles, provisioned
throughput ARNs), under the IAM actions existing policies grant (``bedrock:InvokeModel``,
``bedrock:InvokeModelWithResponseStream``), with the same SigV4 service (``bedrock``) as Converse;
and its body is the Anthropic Messages body, so nothing is lost. The Mantle endpoint is newer, on
another host with its own availability, and would have to be chosen per upstream (it is not
assumed). InvokeModel is also what the SDK's ``AnthropicBedrock`` client calls, so a request through
the gateway is the request that SDK sends (the e2e tier compares the two; they differ only in
``anthropic_version``: the installed SDK sends its own API version, the gateway Bedrock's documented
``bedrock-2023-05-31``).

The model id goes into the path percent-encoded as the ``anthropic`` SDK does (``:`` kept, ``/`` of
an ARN as ``%2F``). The endpoint is ``https://bedrock-runtime.{region}.amazonaws.com`` unless
``endpoint`` is set (a VPC endpoint, a proxy, a test's stand-in). ``region`` comes from the config
(the LLMGateway's ``spec.upstreams[].region``), else ``AWS_REGION``/``AWS_DEFAULT_REGION``.

Credentials:

- ``apiKeyEnv`` (the upstream's ``credentialsRef``): a Bedrock API key, sent as
  ``Authorization: Bearer <key>``; nothing is signed.
- none: botocore's credential chain, as the AWS SDKs resolve it: ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, IRSA (``AWS_ROLE_ARN`` +
  ``AWS_WEB_IDENTITY_TOKEN_FILE``, exchanged at STS), EKS Pod Identity
  (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``), shared
  config files. Each request is signed with SigV4 (``botocore.auth.SigV4Auth``, service ``bedrock``)
  inline: signing is HMAC work only (``python -m bench.llm_signing`` measures it). Resolving and
  refreshing credentials is I/O (STS, the Pod Identity agent) and never runs on the event loop: it
  runs in a worker thread (``asyncio.to_thread``) on the first request, and again in the background
  once less than ``min(15 min, half the credentials' lifetime)`` is left, while requests go on
  signing with the credentials still valid; only credentials within ``min(30 s, a quarter of their
  lifetime)`` of expiry make a request wait for the refresh. One refresh at a time; a failed
  background refresh is tried again 10 s later. Credentials that cannot be had (none found, STS
down) make the upstream count as failing (the next one is tried; alone, the client gets a 502
naming the fix), and for 10 s that failure is the answer at once, without fetching again.

Streams are AWS event streams (``providers.eventstream``), re-framed as the client's SSE: a Converse
event becomes an event named by its ``:event-type`` with its JSON payload; InvokeModel's ``chunk``
events carry an Anthropic stream event as base64 ``bytes``, decoded and named by its ``type``. An
exception message (``:message-type: exception``, or ``error``) becomes an Anthropic ``error``
event (its kind from the exception type) that the translators end the client's stream with.

Errors: Bedrock answers ``{"message": ...}`` with the type in ``x-amzn-ErrorType``
(``ThrottlingException``, ``ValidationException``, ``AccessDeniedException``...);
``error_envelope`` rewrites it as an Anthropic error envelope, its type from the exception type
(the table ``ERROR_KINDS``) or else from the status, and the message verbatim.

Not served: embeddings (Titan and Cohere embeddings take model-specific bodies), ``count_tokens``
(the gateway answers its estimate), guardrail configuration (``guardrailConfig``), prompt caching
through Converse (``cachePoint``), document and image sources other than inline bytes and ``s3://``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final
from urllib.parse import quote

import orjson
import structlog
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

from agentkube.dataplane.llm.apis import API, CONVERSE, EMBEDDINGS, KINDS, MESSAGES, Failure, Kind
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers.base import (
    EventSource,
    Outgoing,
    Provider,
    ProviderError,
    base_url,
)
from agentkube.dataplane.llm.providers.eventstream import EventStreamDecoder, EventStreamError, Message
from agentkube.dataplane.llm.providers.sse import Event
from agentkube.dataplane.llm.translate.errors import kind_for

__all__ = [
    "ANTHROPIC_VERSION",
    "ERROR_KINDS",
    "AwsCredentials",
    "BedrockEvents",
    "BedrockProvider",
    "is_claude",
    "model_path",
]

ANTHROPIC_VERSION: Final = "bedrock-2023-05-31"
SERVICE: Final = "bedrock"
EVENT_STREAM: Final = "application/vnd.amazon.eventstream"
# An ``anthropic.`` model named at the start of the id, after an inference profile's geography
# prefix, or after an ARN's ``/``.
_CLAUDE = re.compile(r"(?:^|[./])anthropic\.")

ERROR_KINDS: Final[dict[str, Kind]] = {
    "ThrottlingException": "rate_limit",
    "ServiceQuotaExceededException": "rate_limit",
    "TooManyRequestsException": "rate_limit",
    "ValidationException": "invalid_request",
    "SerializationException": "invalid_request",
    "AccessDeniedException": "permission",
    "UnrecognizedClientException": "authentication",
    "InvalidSignatureException": "authentication",
    "IncompleteSignatureException": "authentication",
    "ExpiredTokenException": "authentication",
    "MissingAuthenticationTokenException": "authentication",
    "ResourceNotFoundException": "not_found",
    "ModelNotReadyException": "overloaded",
    "ServiceUnavailableException": "overloaded",
    "InternalServerException": "api_error",
    "ModelErrorException": "api_error",
    "ModelStreamErrorException": "api_error",
    "ModelTimeoutException": "timeout",
}
"""Bedrock's exception types and the gateway's kind of each (the Anthropic error type it becomes)."""

log = structlog.get_logger("agentkube.llm.bedrock")

# botocore.auth logs the canonical request at debug level, session token included: keep it out of a
# gateway run at --log-level debug.
logging.getLogger("botocore.auth").setLevel(logging.INFO)


def is_claude(model: str) -> bool:
    """Whether ``model`` (a Bedrock model id, inference profile id or ARN) names an Anthropic model."""
    return _CLAUDE.search(model) is not None


def model_path(model: str) -> str:
    """``model`` as a path segment, percent-encoded as the ``anthropic`` SDK's Bedrock client does."""
    return quote(model, safe=":;")


# ------------------------------------------------------------------------------------ credentials


def _chain() -> Any:
    """botocore's default credential chain (I/O: runs in a worker thread)."""
    import botocore.session  # type: ignore[import-untyped]

    return botocore.session.get_session().get_credentials()


class AwsCredentials:
    """AWS credentials from botocore's chain, resolved and refreshed off the event loop.

    ``current()`` returns frozen credentials (``access_key``, ``secret_key``, ``token``) to sign one
    request with; see the module docstring for when it refreshes. ``resolve`` is the chain (the
    default: botocore's), ``clock`` the time in epoch seconds.
    """

    RETRY_SECONDS: ClassVar[float] = 10.0

    def __init__(
        self, upstream: str, resolve: Callable[[], Any] = _chain, clock: Callable[[], float] = time.time
    ) -> None:
        self._upstream = upstream
        self._resolve = resolve
        self._clock = clock
        self._source: Any = None
        self._frozen: Any = None
        self._expiry: float | None = None
        self._fetched = 0.0
        self._task: asyncio.Task[Any] | None = None
        self._not_before = 0.0
        self._failed: BaseException | None = None

    def _fetch(self) -> tuple[Any, float | None]:
        if self._source is None:
            source = self._resolve()
            if source is None:
                raise Failure(
                    "bad_gateway",
                    f"upstream {self._upstream} (bedrock): no AWS credentials found; set the upstream's "
                    "credentialsRef to a Bedrock API key, or bind an IAM role to the gateway's service "
                    "account (spec.serviceAccountName: IRSA or EKS Pod Identity)",
                )
            self._source = source
        frozen = self._source.get_frozen_credentials()
        expiry = getattr(self._source, "_expiry_time", None)
        return frozen, expiry.timestamp() if expiry is not None else None

    async def _refresh(self) -> Any:
        try:
            frozen, expiry = await asyncio.to_thread(self._fetch)
        except Failure:
            raise
        except Exception as e:  # botocore's: STS refused the token, the agent did not answer...
            raise Failure(
                "bad_gateway",
                f"upstream {self._upstream} (bedrock): could not get AWS credentials: "
                f"{type(e).__name__}: {e}",
            ) from None
        if frozen.access_key != getattr(self._frozen, "access_key", None) or expiry != self._expiry:
            self._fetched = self._clock()
            log.debug(
                "AWS credentials fetched",
                upstream=self._upstream,
                expires_in=round(expiry - self._fetched) if expiry is not None else None,
            )
        self._frozen, self._expiry = frozen, expiry
        return frozen

    def _shared(self) -> asyncio.Task[Any]:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._refresh())
            self._task.add_done_callback(self._settled)
        return self._task

    def _settled(self, task: asyncio.Task[Any]) -> None:
        error = None if task.cancelled() else task.exception()
        self._failed = error
        if task.cancelled() or error is not None:
            self._not_before = self._clock() + self.RETRY_SECONDS
            log.warning(
                "could not refresh AWS credentials; retrying",
                upstream=self._upstream,
                seconds=self.RETRY_SECONDS,
                reason=str(error) if error is not None else "cancelled",
            )

    async def current(self) -> Any:
        frozen, expiry = self._frozen, self._expiry
        if frozen is not None:
            if expiry is None:
                return frozen
            now = self._clock()
            lifetime = max(expiry - self._fetched, 0.0)
            left = expiry - now
            if left > min(900.0, lifetime / 2):
                return frozen
            if left > min(30.0, lifetime / 4):
                if now >= self._not_before:
                    self._not_before = now + self.RETRY_SECONDS
                    self._shared()
                return frozen
        if self._failed is not None and self._clock() < self._not_before:
            # The last fetch failed moments ago: say so at once (the next upstream is tried) rather
            # than have every request wait for botocore's own retries again.
            raise self._failed
        return await asyncio.shield(self._shared())


# ----------------------------------------------------------------------------------------- events


class BedrockEvents:
    """One Bedrock stream's bytes in, events out (an ``EventSource``): see the module docstring."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()

    def feed(self, chunk: bytes) -> list[Event]:
        return [e for m in self._decoder.feed(chunk) if (e := _event(m)) is not None]

    def finish(self) -> list[Event]:
        return [e for m in self._decoder.finish() if (e := _event(m)) is not None]


def _event(message: Message) -> Event | None:
    headers = message.headers
    kind = headers.get(":message-type", "event")
    if kind == "exception":
        name = str(headers.get(":exception-type") or "InternalServerException")
        try:
            payload = orjson.loads(message.payload) if message.payload else {}
        except orjson.JSONDecodeError:
            payload = {}
        text = payload.get("message") if isinstance(payload, dict) else None
        return _error_event(name, str(text or f"Bedrock ended the stream with {name}"))
    if kind == "error":
        name = str(headers.get(":error-code") or "InternalServerException")
        return _error_event(name, str(headers.get(":error-message") or f"Bedrock stream error {name}"))
    event_type = str(headers.get(":event-type") or "")
    if event_type == "chunk":
        try:
            chunk = orjson.loads(message.payload)
            inner = base64.b64decode(chunk["bytes"], validate=True)
            anthropic_type = orjson.loads(inner).get("type")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise EventStreamError("a Bedrock chunk event does not hold a base64 JSON event") from None
        return Event(str(anthropic_type) if anthropic_type else None, inner)
    return Event(event_type or None, message.payload)


def _exception_kind(name: str, status: int | None = None) -> Kind:
    # Event-stream exception types are camelCase (throttlingException), HTTP ones CamelCase.
    canonical = name[:1].upper() + name[1:]
    if canonical in ERROR_KINDS:
        return ERROR_KINDS[canonical]
    return kind_for(status) if status is not None else "api_error"


def _anthropic_error(kind: Kind, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": KINDS[kind].anthropic_type, "message": message}})


def _error_event(name: str, message: str) -> Event:
    return Event("error", _anthropic_error(_exception_kind(name), message))


# --------------------------------------------------------------------------------------- provider


class BedrockProvider(Provider):
    kind: ClassVar[str] = "bedrock"
    semconv_name: ClassVar[str] = "aws.bedrock"
    default_native: ClassVar[frozenset[API]] = frozenset({MESSAGES})
    translate_to: ClassVar[API] = MESSAGES
    stream_types: ClassVar[frozenset[str]] = frozenset({EVENT_STREAM})
    reframes: ClassVar[bool] = True

    def __init__(self, config: Upstream, environ: Mapping[str, str] | None = None) -> None:
        env = environ if environ is not None else os.environ
        region = config.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise ProviderError(
                f"upstreams[{config.name}].region: provider bedrock needs the AWS region of its models "
                "(e.g. us-east-1); set spec.upstreams[].region"
            )
        self.region = region
        super().__init__(config, environ)
        self.credentials = AwsCredentials(config.name) if self._key is None else None

    @property
    def root(self) -> str:
        return base_url(
            self.config.endpoint, f"https://bedrock-runtime.{self.region}.amazonaws.com", strip=""
        )

    def api_for(self, client_api: API, model: str) -> API | None:
        if client_api == EMBEDDINGS:
            return None
        return MESSAGES if is_claude(model) else CONVERSE

    def url(self, api: API, model: str, *, stream: bool) -> str:
        if api == MESSAGES:
            action = "invoke-with-response-stream" if stream else "invoke"
        else:
            action = "converse-stream" if stream else "converse"
        return f"{self.root}/model/{model_path(model)}/{action}"

    async def prepare(
        self,
        api: API,
        model: str,
        body: bytes,
        client_headers: Mapping[str, str],
        *,
        count_tokens: bool = False,
        stream: bool = False,
    ) -> Outgoing:
        if api not in (MESSAGES, CONVERSE) or count_tokens:
            raise ProviderError(f"upstream {self.name} (bedrock) does not serve {api}")
        if api == MESSAGES:
            body = invoke_body(body, client_headers.get("anthropic-beta"))
        url = self.url(api, model, stream=stream)
        headers = {
            "Content-Type": "application/json",
            "Accept": EVENT_STREAM if stream else "application/json",
        }
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key}"
        else:
            assert self.credentials is not None
            headers = sign(await self.credentials.current(), self.region, url, body, headers)
        headers.setdefault("User-Agent", "agentkube-llm-gateway")
        return Outgoing(url, headers, body, self.egress)

    def stream_events(self) -> EventSource:
        return BedrockEvents()

    def error_envelope(
        self, api: API, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[API, bytes]:
        name = (headers.get("x-amzn-ErrorType") or "").split(":", 1)[0]
        message: Any = None
        try:
            parsed = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            if parsed.get("type") == "error" and isinstance(parsed.get("error"), dict):
                return MESSAGES, body  # already Anthropic's envelope (a proxy in front of Bedrock)
            message = parsed.get("message") or parsed.get("Message")
            name = name or str(parsed.get("__type") or "").rsplit("#", 1)[-1]
        if not isinstance(message, str) or not message:
            text = body.decode("utf-8", "replace").strip()[:2000] if parsed is None else ""
            message = text or f"Bedrock answered HTTP {status}" + (f" ({name})" if name else "")
        return MESSAGES, _anthropic_error(
            _exception_kind(name, status) if name else kind_for(status), message
        )


def invoke_body(body: bytes, beta: str | None) -> bytes:
    """A Messages body as InvokeModel takes it: no ``model`` or ``stream``, ``anthropic_version`` set
    (the client's own when it gave one), the ``anthropic-beta`` header as ``anthropic_beta``."""
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise Failure("invalid_request", "the request body must be a JSON object")
    data.pop("model", None)
    data.pop("stream", None)
    data.setdefault("anthropic_version", ANTHROPIC_VERSION)
    if beta:
        betas = [b.strip() for b in beta.split(",") if b.strip()]
        if betas:
            data.setdefault("anthropic_beta", betas)
    return orjson.dumps(data)


def sign(credentials: Any, region: str, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` plus SigV4's (``Authorization``, ``X-Amz-Date``, ``X-Amz-Security-Token`` with
    temporary credentials) for ``POST url`` with ``body``, for service ``bedrock`` in ``region``."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials, SERVICE, region).add_auth(request)
    return dict(request.headers.items())
