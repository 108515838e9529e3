"""Google Vertex AI (``provider: vertex``): Claude and Gemini in one Google Cloud project and location.

Where requests go (``project`` and ``location`` from the config; ``endpoint`` replaces the host, for
a proxy or a test): ``https://{location}-aiplatform.googleapis.com``, ``https://aiplatform.googleapis.com``
for ``global``, and the multi-region hosts ``aiplatform.us.rep.googleapis.com`` /
``aiplatform.eu.rep.googleapis.com`` for ``us`` / ``eu``; then ``/v1/projects/{project}/locations/
{location}/publishers/...``:

- Claude (a model whose name starts with ``claude``, as Vertex names them: ``claude-sonnet-4-5@20250929``)
  is sent in Anthropic's Messages form to ``publishers/anthropic/models/{model}:rawPredict``
  (``:streamRawPredict`` for a stream): the Messages body without ``model`` and with
  ``anthropic_version: vertex-2023-10-16`` (a client's own ``anthropic_version`` in the body is
  kept), ``stream`` as the client sent it, and the client's ``anthropic-beta`` header forwarded. So a
  Messages client loses nothing, and its stream passes through as Vertex sends it. Token counting is
  Vertex's own ``publishers/anthropic/models/count-tokens:rawPredict`` (the body keeps ``model``).
- Every other model is taken for a Gemini model: ``publishers/google/models/{model}:generateContent``
  (``:streamGenerateContent?alt=sse``), every client API translated (``translate.gemini``). Other
  publishers of Vertex's Model Garden are not served. Embeddings are not served.

Credentials: an OAuth access token with the ``cloud-platform`` scope, sent as ``Authorization:
Bearer``. With ``apiKeyEnv`` (the operator fills it from ``credentialsRef``) the variable holds a
service-account key, the JSON file Google issues (``type: service_account``): it is read when the
provider is built, and a value that is not one is a ``ProviderError`` naming the variable (never the
value). Without it, google-auth's application default credentials: on GKE, the pod's workload
identity through the metadata server; elsewhere ``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's.
``GoogleTokens`` keeps the token: see there for when it is refreshed. google-auth fetches tokens
through ``requests``, which honours ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` on its own: behind a
forward proxy on GKE, list the metadata server (``169.254.169.254,metadata.google.internal``) in
``NO_PROXY``.

Errors: Google's envelope (``{"error": {"code", "message", "status"}}``, also as a one-element list)
is rewritten as Anthropic's, its type from ``status`` (``RESOURCE_EXHAUSTED`` -> ``rate_limit_error``,
``UNAVAILABLE`` -> ``overloaded_error``, ...; ``translate.gemini.error_kind``) and its message kept;
an Anthropic error from ``rawPredict`` passes unchanged; a body that is no JSON (a proxy's page)
becomes an Anthropic error holding its text. A token that cannot be had answers 502 naming the
upstream (it is not failed over: the gateway asks for the request before it tries the upstream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any, ClassVar, Final
from urllib.parse import quote

import orjson
import structlog

from agentkube.dataplane.llm.apis import API, EMBEDDINGS, GEMINI, KINDS, MESSAGES, Failure
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers.base import Outgoing, Provider, ProviderError, base_url
from agentkube.dataplane.llm.translate.errors import kind_for
from agentkube.dataplane.llm.translate.gemini import error_kind

__all__ = ["ANTHROPIC_VERSION", "SCOPE", "GoogleTokens", "VertexProvider", "host"]

SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
ANTHROPIC_VERSION: Final = "vertex-2023-10-16"
REFRESH_BEFORE: Final = 300.0
"""A token is refreshed (in the background) from this many seconds before it expires, or from half
its lifetime when it is issued for less than ten minutes."""
EXPIRY_MARGIN: Final = 30.0
"""A token is not sent in its last this many seconds (or last tenth of its lifetime, if shorter):
a request waits for the refresh instead."""
RETRY_AFTER_FAILURE: Final = 5.0
"""After a failed refresh, how long a still-valid token is used before another refresh is tried."""
_MAX_TEXT: Final = 2000

log = structlog.get_logger("agentkube.llm.vertex")


def host(location: str) -> str:
    """The public Vertex AI host of ``location``."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def is_claude(model: str) -> bool:
    return model.startswith("claude")


class GoogleTokens:
    """Access tokens of one set of google-auth credentials, refreshed off the event loop.

    ``token()`` answers at once while the token is fresh. Once it is due for refresh
    (``REFRESH_BEFORE``) it still answers at once with the current token and starts a refresh in a
    worker thread (``asyncio.to_thread``); only when the token is about to expire
    (``EXPIRY_MARGIN``), or there is none yet, does a caller wait for the refresh. One refresh runs
    at a time: every caller waiting shares it. A failed refresh is logged; while the old token is
    still valid it goes on being used (and a new refresh is tried after ``RETRY_AFTER_FAILURE``),
    after that ``token()`` raises a ``Failure`` (``bad_gateway``) naming the upstream and the cause.

    ``load`` makes the credentials; it runs in the worker thread on the first refresh, since
    application default credentials ask the metadata server where they come from.
    """

    def __init__(self, name: str, load: Callable[[], Any], *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.refreshes = 0
        """Refreshes that succeeded."""
        self._load = load
        self._clock = clock
        self._credentials: Any = None
        self._request: Any = None
        self._token: str | None = None
        self._refresh_at = 0.0
        self._usable_until = 0.0
        self._failed_at: float | None = None
        self._error = ""
        self._task: asyncio.Task[None] | None = None

    async def token(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._usable_until:
            if now >= self._refresh_at and not self._backing_off(now):
                self._refresh()
            return self._token
        if self._task is None and self._backing_off(now, wait=1.0):
            raise self._failure()
        await asyncio.shield(self._refresh())
        if self._token is None or self._clock() >= self._usable_until:
            raise self._failure()
        return self._token

    def _backing_off(self, now: float, wait: float = RETRY_AFTER_FAILURE) -> bool:
        return self._failed_at is not None and now - self._failed_at < wait

    def _failure(self) -> Failure:
        return Failure(
            "bad_gateway",
            f"upstream {self.name} (vertex): could not get a Google access token: {self._error}",
        )

    def _refresh(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    async def _run(self) -> None:
        try:
            token, expiry = await asyncio.to_thread(self._fetch)
        except Exception as e:
            self._failed_at = self._clock()
            self._error = _describe(e)
            log.warning("could not refresh the Google access token", upstream=self.name, reason=self._error)
            return
        finally:
            self._task = None
        now = self._clock()
        lifetime = max(expiry - now, 0.0)
        self._token = token
        self._refresh_at = expiry - min(REFRESH_BEFORE, lifetime / 2)
        self._usable_until = expiry - min(EXPIRY_MARGIN, lifetime / 10)
        self._failed_at = None
        self.refreshes += 1

    def _fetch(self) -> tuple[str, float]:
        """In a worker thread (one at a time): refresh the credentials, return the token and expiry."""
        if self._credentials is None:
            self._credentials = self._load()
        if self._request is None:
            from google.auth.transport.requests import Request

            self._request = Request()
        self._credentials.refresh(self._request)
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise RuntimeError("the credentials gave no access token")
        expiry = self._credentials.expiry  # naive UTC, as google-auth keeps it
        return token, (expiry.replace(tzinfo=UTC).timestamp() if expiry is not None else self._clock() + 3600)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text[:500]}" if text else type(error).__name__


def _application_default() -> Any:
    import google.auth

    credentials, _ = google.auth.default(scopes=[SCOPE])
    return credentials


class VertexProvider(Provider):
    kind: ClassVar[str] = "vertex"
    semconv_name: ClassVar[str] = "gcp.vertex_ai"
    default_native: ClassVar[frozenset[API]] = frozenset({MESSAGES})
    translate_to: ClassVar[API] = MESSAGES
    counts_tokens: ClassVar[bool] = True

    def __init__(self, config: Upstream, environ: Mapping[str, str] | None = None) -> None:
        for field in ("project", "location"):
            if not getattr(config, field):
                raise ProviderError(
                    f"upstreams[{config.name}].{field}: provider vertex needs the Google Cloud {field} "
                    f"(e.g. {'my-project' if field == 'project' else 'us-east5 or global'})"
                )
        super().__init__(config, environ)
        assert config.project is not None and config.location is not None
        self.project = config.project
        self.location = config.location
        load = self._service_account() if self._key is not None else _application_default
        self.tokens = GoogleTokens(self.name, load)

    def _service_account(self) -> Callable[[], Any]:
        from google.oauth2 import service_account

        variable = self.config.api_key_env
        where = f"upstreams[{self.name}].apiKeyEnv: {variable}"
        try:
            info = orjson.loads(self._key or "")
        except orjson.JSONDecodeError:
            info = None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ProviderError(
                f"{where} does not hold a Google service-account key (the JSON key file, with "
                '"type": "service_account"); put the key file in the credentialsRef Secret, or omit '
                "credentialsRef to use the pod's workload identity"
            )
        try:
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=[SCOPE]
            )
        except (ValueError, KeyError) as e:
            missing = f" ({type(e).__name__} on field {e})" if isinstance(e, KeyError) else ""
            raise ProviderError(
                f"{where} holds a service-account key google-auth cannot use{missing}: it needs "
                "client_email, token_uri and a PEM private_key"
            ) from None
        return lambda: credentials

    @property
    def root(self) -> str:
        return base_url(self.config.endpoint, host(self.config.location or ""))

    def url(self, api: API, model: str, *, stream: bool = False, count_tokens: bool = False) -> str:
        """Where a request in ``api`` for ``model`` goes (no credential in it)."""
        project, location = quote(self.project, safe=""), quote(self.location, safe="")
        prefix = f"{self.root}/v1/projects/{project}/locations/{location}/publishers"
        name = quote(model, safe="@")
        if count_tokens:
            return f"{prefix}/anthropic/models/count-tokens:rawPredict"
        if api == MESSAGES:
            return f"{prefix}/anthropic/models/{name}:{'streamRawPredict' if stream else 'rawPredict'}"
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{prefix}/google/models/{name}:{method}"

    def api_for(self, client_api: API, model: str) -> API | None:
        if client_api == EMBEDDINGS:
            return None
        return MESSAGES if is_claude(model) else GEMINI

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
        headers = self._json_headers()
        if api == MESSAGES:
            body = _messages_body(body, keep_model=count_tokens)
            beta = client_headers.get("anthropic-beta")
            if beta:
                headers["anthropic-beta"] = beta
        elif api != GEMINI or count_tokens:
            raise ProviderError(f"upstream {self.name} (vertex) does not serve {api}")
        token = await self.tokens.token()
        headers["Authorization"] = f"Bearer {token}"
        return Outgoing(
            self.url(api, model, stream=stream, count_tokens=count_tokens), headers, body, self.egress
        )

    def error_envelope(
        self, api: API, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[API, bytes]:
        try:
            parsed: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and len(parsed) == 1:
            parsed = parsed[0]
        if (
            isinstance(parsed, dict)
            and parsed.get("type") == "error"
            and isinstance(parsed.get("error"), dict)
        ):
            return MESSAGES, body
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            kind = error_kind(error.get("status"), status)
            message = error.get("message")
            text = message if isinstance(message, str) and message else f"Vertex AI answered HTTP {status}"
        else:
            kind = kind_for(status)
            text = body.decode("utf-8", "replace").strip()[:_MAX_TEXT] or f"Vertex AI answered HTTP {status}"
        envelope = {"type": "error", "error": {"type": KINDS[kind].anthropic_type, "message": text}}
        return MESSAGES, orjson.dumps(envelope)


def _messages_body(body: bytes, *, keep_model: bool) -> bytes:
    """A Messages body as Vertex takes it: ``anthropic_version`` in, ``model`` out (kept for counts)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Failure("invalid_request", f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise Failure("invalid_request", "the request body must be a JSON object")
    if not keep_model:
        data.pop("model", None)
    data.setdefault("anthropic_version", ANTHROPIC_VERSION)
    return orjson.dumps(data)
