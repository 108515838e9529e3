"""The gateway's HTTP surface and the path of one request through it.

Routes: ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings``, ``/v1/messages``,
``/v1/messages/count_tokens``; ``GET /v1/models`` and ``/v1/models/{id}`` (OpenAI's shape, or
Anthropic's when the request carries ``anthropic-version`` or ``x-api-key``). Anything else under
``/v1`` is a 404 (405 for a known path with another method) in the client's shape.

One request, step by step, each of which may answer early in the envelope of the client's API
(``apis.error_body``): client auth (401) -> body read within ``limits.maxRequestBytes`` (413) ->
JSON parsed and the fields the gateway reads type-checked (400) -> model resolved, or
``routing.defaultModel`` (404 for a model nobody serves) -> rate limit (429 with ``Retry-After`` and
``x-ratelimit-*``) -> guardrails (400 naming the guardrail; redaction rewrites the body) -> cache ->
the candidates in order (``routing``) -> the provider -> the answer streamed back.

What a caller may rely on:

- Same API on both sides: the client's bytes go upstream unchanged but for ``model`` (rewritten in
  place when an alias or the default model applies; re-serialized only when guardrails redacted
  text), and the upstream's bytes come back unchanged: its answers, its streams chunk by chunk as
  they arrive, and its errors with their status (clients that match on error text keep working).
- Different APIs: the request, the answer, every stream event and the upstream's error envelope go
  through ``translate`` (see its module for every lossy mapping). Embeddings are never translated.
- Failover: a connection error, a timeout (``upstreams[].timeouts``), 429 or 5xx moves on to the next
  candidate, but only while nothing has reached the client: a stream's first bytes are held until
  they arrive, and a failure after them ends the stream with an error event in the client's shape
  and is not retried. Other 4xx go back to the client. Each failover is counted
  (``agentkube_llm_failovers_total``) and logged with the upstream's name. When every candidate
  failed, the last upstream's own answer goes back (translated when its API differs), or a 502/504
  naming it when it never answered.
- The client's credential is never forwarded; providers put their own. Only ``anthropic-version``
  and ``anthropic-beta`` of the client's headers reach a provider (one speaking Messages), plus the
  trace context when tracing is on.
- Logs: one line per request (API, model, upstream, client, status, seconds, tokens, failovers),
  never a credential and never prompt or answer text; with ``--log-level debug`` the request body is
  logged too (the operator's choice, for troubleshooting).
- An exception in a handler is logged and answered with a 500 in the client's shape; the worker
  goes on.
- ``/v1/messages/count_tokens`` goes to an upstream that counts tokens itself (anthropic); for the
  others the gateway answers an estimate (about four bytes of text per token, marked with
  ``x-agentkube-token-count: estimate``).

The policies are their own modules (``translate``, ``guardrails``, ``ratelimit``, ``cache``),
handed in as ``Policies``; each is optional. Without ``translate``, a request whose model only an
upstream of another API serves is answered 501 naming the upstream.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final, TypeVar

import orjson
import structlog
from prometheus_client.metrics import MetricWrapperBase
from yarl import URL

from agentkube.dataplane.http1 import ClientError, Pool
from agentkube.dataplane.http1 import Response as UpstreamResponse
from agentkube.dataplane.http1server import Request, Response, Routes, StreamResponse
from agentkube.dataplane.llm.apis import (
    API,
    CHAT,
    COUNT_TOKENS_PATH,
    EMBEDDINGS,
    MESSAGES,
    PATHS,
    RESPONSES,
    STREAMING_APIS,
    Failure,
    error_body,
    stream_error,
)
from agentkube.dataplane.llm.auth import Clients, Unauthorized
from agentkube.dataplane.llm.cache import Cache, Entry, StreamRecording, cache_key, cacheable, may_serve
from agentkube.dataplane.llm.config import LLMGatewayConfig
from agentkube.dataplane.llm.guardrails import Blocked, Guardrails
from agentkube.dataplane.llm.metrics import GatewayMetrics, StreamUsage, Usage, from_ir, usage_of
from agentkube.dataplane.llm.providers import Outgoing, Provider
from agentkube.dataplane.llm.providers.sse import EventTooLarge
from agentkube.dataplane.llm.ratelimit import Limiter, scope_key
from agentkube.dataplane.llm.routing import Candidate, Router, UnknownModel, retryable
from agentkube.dataplane.server import log_info

__all__ = ["Gateway", "Policies", "rewrite_model"]

M = TypeVar("M", bound=MetricWrapperBase)

log = structlog.get_logger("agentkube.llm.gateway")

MAX_ERROR_BYTES: Final = 1024 * 1024
"""Most of an upstream's error body read (and passed on); the rest is cut."""
# Headers of an upstream's answer the client gets too: ids support asks for, and retry hints.
PASSED_HEADERS: Final = ("request-id", "x-request-id", "retry-after", "retry-after-ms")
SSE_HEADERS: Final = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
JSON: Final = "application/json"
EPOCH: Final = "1970-01-01T00:00:00Z"


def rewrite_model(raw: bytes, old: str | None, new: str) -> bytes | None:
    """``raw`` (a JSON object) with its top-level ``model`` set to ``new``, touching nothing else.

    ``old`` is the model the body names (None: it names none, and ``model`` is added first). None
    when the body cannot be rewritten in place with certainty (the old name written with escapes,
    or found more than once): the caller re-serializes then.
    """
    if old is None:
        start = raw.find(b"{")
        if start < 0 or raw[:start].strip():
            return None
        rest = raw[start + 1 :]
        member = b'"model":' + orjson.dumps(new)
        return raw[: start + 1] + member + (b"," + rest if rest.strip() != b"}" else rest)
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(orjson.dumps(old)))
    matches = pattern.findall(raw, 0)
    if len(matches) != 1:
        return None
    return pattern.sub(lambda _: b'"model":' + orjson.dumps(new), raw, count=1)


@dataclass(frozen=True)
class Policies:
    """The policy steps this gateway applies; each None when off."""

    translate: ModuleType | None = None
    """The ``translate`` package (``request``, ``response``, ``stream``, ``error``); None: every
    model is served only in its upstream's own API."""
    guardrails: Guardrails | None = None
    limiter: Limiter | None = None
    cache: Cache | None = None


@dataclass
class _Call:
    """What the pipeline knows of one request so far."""

    api: API
    request: Request
    started: float
    count_tokens: bool = False
    client: str = "unauthenticated"
    model: str | None = None
    model_label: str = "unknown"
    upstream: str = "none"
    stream: bool = False
    raw: bytes = b""
    body: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    status: int = 0
    failovers: int = 0
    usage: Usage | None = None
    first_byte: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Headers every answer to this request carries (the rate limit's)."""
    cache_key: str | None = None
    hidden_usage: bool = False
    """The gateway asked a Chat stream for the usage chunk the client did not ask for (and drops it)."""
    span: Any = None
    prepared: StreamResponse | None = None
    """The stream response once its headers went out: from then on, no other answer can be given."""


@dataclass
class _Failed:
    """An attempt on one upstream that counts as failed (the next candidate may be tried)."""

    upstream: str
    reason: str  # connection, timeout, 429, 5xx, credentials
    detail: str
    api: API
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON


class _Retranslate(Exception):
    """The upstream has no endpoint for the API tried: send it again, translated."""


class Gateway:
    """The client APIs of one LLM gateway, served by ``http1server`` (``routes`` adds them)."""

    def __init__(
        self,
        config: LLMGatewayConfig,
        providers: Mapping[str, Provider],
        clients: Clients,
        router: Router,
        metrics: GatewayMetrics,
        *,
        policies: Policies | None = None,
        tracer: Any = None,
        debug: bool = False,
    ) -> None:
        """providers: by upstream name; tracer: an OpenTelemetry tracer or None; debug: log request
        bodies."""
        self.config = config
        self.providers = dict(providers)
        self.clients = clients
        self.router = router
        self.metrics = metrics
        self.policies = policies or Policies()
        self.translate = self.policies.translate
        self.tracer = tracer
        self.debug = debug
        self.http: Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owners = self._model_owners()
        # Per request, labels() costs a lock and a validation of every value; the children of the
        # few hot metrics are kept here instead (label values come from bounded sets, see metrics).
        self._children: dict[tuple[Any, ...], Any] = {}
        for name in self.providers:
            metrics.cooling.labels(name).set_function(_cooling(router, name))
        # Requests in flight are counted here and read at scrape time: no metric lock per request.
        self._in_flight: dict[API, int] = {}
        for api in (CHAT, RESPONSES, EMBEDDINGS, MESSAGES):
            self._in_flight[api] = 0
            metrics.in_flight.labels(api).set_function(_reader(self._in_flight, api))

    def _child(self, metric: M, *values: str) -> M:
        """``metric.labels(*values)``, made once per label set."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def routes(self, routes: Routes) -> None:
        routes.add_post(PATHS[CHAT], self._chat)
        routes.add_post(PATHS[RESPONSES], self._responses)
        routes.add_post(PATHS[EMBEDDINGS], self._embeddings)
        routes.add_post(PATHS[MESSAGES], self._messages)
        routes.add_post(COUNT_TOKENS_PATH, self._count_tokens)
        routes.add_get("/v1/models", self._models)
        routes.add_get("/v1/models/{model:.+}", self._model)
        routes.add_route("*", "/v1/{tail:.*}", self._unknown)

    # ------------------------------------------------------------------------------------ routes

    async def _chat(self, request: Request) -> StreamResponse:
        return await self._serve(request, CHAT)

    async def _responses(self, request: Request) -> StreamResponse:
        return await self._serve(request, RESPONSES)

    async def _embeddings(self, request: Request) -> StreamResponse:
        return await self._serve(request, EMBEDDINGS)

    async def _messages(self, request: Request) -> StreamResponse:
        return await self._serve(request, MESSAGES)

    async def _count_tokens(self, request: Request) -> StreamResponse:
        return await self._serve(request, MESSAGES, count_tokens=True)

    async def _unknown(self, request: Request) -> Response:
        api = _api_of_request(request)
        known = {*PATHS.values(), COUNT_TOKENS_PATH, "/v1/models"}
        if request.path in known:
            failure = Failure(
                "invalid_request", f"{request.method} is not allowed on {request.path}", status=405
            )
        else:
            failure = Failure(
                "not_found", f"no such endpoint: {request.method} {request.path}", code="not_found"
            )
        return _error_response(api, failure)

    def _model_owners(self) -> dict[str, str]:
        owners: dict[str, str] = {}
        for model in self.router.models:
            upstream = self.router.resolve(model)[0].upstream
            provider = next(u.provider for u in self.config.upstreams if u.name == upstream)
            owners[model] = provider
        return owners

    def _models_api(self, request: Request) -> tuple[API, Response | None]:
        """The API a models request speaks (Anthropic's or OpenAI's), and the 401 in its shape when
        the client is not let in."""
        api: API = MESSAGES if _speaks_anthropic(request) else CHAT
        try:
            self.clients.identify(request.headers)
        except Unauthorized as e:
            return api, _error_response(api, Failure("authentication", str(e)))
        return api, None

    async def _models(self, request: Request) -> Response:
        api, refused = self._models_api(request)
        if refused is not None:
            return refused
        models = self.router.models
        if api != MESSAGES:
            data = [_openai_model(m, self._owners[m]) for m in models]
            return _json_response({"object": "list", "data": data})
        query = request.query
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return _error_response(api, Failure("invalid_request", "limit: an integer from 1 to 1000"))
        chosen = list(models)
        if "after_id" in query and query["after_id"] in chosen:
            chosen = chosen[chosen.index(query["after_id"]) + 1 :]
        if "before_id" in query and query["before_id"] in chosen:
            chosen = chosen[: chosen.index(query["before_id"])]
            page = chosen[-limit:]
        else:
            page = chosen[:limit]
        has_more = len(chosen) > limit
        return _json_response(
            {
                "data": [_anthropic_model(m) for m in page],
                "has_more": has_more,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    async def _model(self, request: Request) -> Response:
        api, refused = self._models_api(request)
        if refused is not None:
            return refused
        model = request.match_info["model"]
        if model not in self._owners:
            return _error_response(api, _unknown_model(model))
        if api == MESSAGES:
            return _json_response(_anthropic_model(model))
        return _json_response(_openai_model(model, self._owners[model]))

    # ---------------------------------------------------------------------------------- pipeline

    async def _serve(self, request: Request, api: API, *, count_tokens: bool = False) -> StreamResponse:
        call = _Call(api, request, time.perf_counter(), count_tokens=count_tokens)
        self._in_flight[api] += 1
        span = self._server_span(call)
        response: StreamResponse
        try:
            response = await self._pipeline(call)
        except asyncio.CancelledError:
            call.status = 499  # the client went away; nobody reads an answer
            raise
        except ConnectionResetError:
            call.status = 499
            response = call.prepared or Response(status=499)
        except Exception as e:
            if not isinstance(e, Failure):
                log.exception(
                    "request failed in the gateway", api=api, model=call.model_label, client=call.client
                )
            if call.prepared is not None:  # too late for an answer of its own: end the stream
                call.status = 502
                response = call.prepared
            else:
                failure = (
                    e if isinstance(e, Failure) else Failure("api_error", "the gateway failed to answer")
                )
                response = self._failure(call, failure)
        finally:
            self._in_flight[api] -= 1
            # The request's metrics, log line and span end once its answer is on its way: the
            # server writes a returned answer before the loop turns, and this runs on the next turn, before
            # any I/O that turn brings (so a scrape after the answer still counts it).
            loop = self._loop
            if loop is None:  # asyncio.get_running_loop() is a getpid() syscall on Python 3.11: once
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._finish, call, span)
        return response

    def _failure(self, call: _Call, failure: Failure) -> Response:
        call.status = failure.status
        return _error_response(call.api, failure, {**call.headers, **failure.headers})

    async def _pipeline(self, call: _Call) -> StreamResponse:
        request, api = call.request, call.api
        try:
            call.client = self.clients.identify(request.headers)
        except Unauthorized as e:
            raise Failure("authentication", str(e)) from None
        call.raw = await self._read(request)
        call.body = _parse(call.raw)
        _check(api, call.body, count_tokens=call.count_tokens)
        if self.debug:
            log.debug(
                "request body", api=api, client=call.client, body=call.raw[:65536].decode("utf-8", "replace")
            )
        requested = call.body.get("model")
        model = requested if isinstance(requested, str) and requested else self.router.default_model
        if model is None:
            raise Failure(
                "invalid_request", "model: required (this gateway has no default model)", param="model"
            )
        call.model = model
        call.model_label = self.metrics.model(model)
        try:
            candidates = self.router.resolve(model)
        except UnknownModel:
            raise _unknown_model(model) from None
        call.stream = api in STREAMING_APIS and not call.count_tokens and call.body.get("stream") is True
        if call.span is not None:
            _set_request_attributes(call.span, call.body, model)
        if not call.count_tokens:
            await self._limit(call)
            self._guard(call)
            cached = await self._cached(call)
            if cached is not None:
                return cached
        return await self._forward(call, candidates)

    async def _read(self, request: Request) -> bytes:
        limit = self.config.limits.max_request_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(limit)
        if length is not None:  # one read instead of a loop of chunks (the common case)
            try:
                return await request.content.readexactly(length)
            except asyncio.IncompleteReadError as e:  # the client stopped early: what came is parsed
                return e.partial
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
        return bytes(body)

    # ---------------------------------------------------------------------------------- policies

    async def _limit(self, call: _Call) -> None:
        limiter = self.policies.limiter
        if limiter is None or self.config.rate_limit is None:
            return
        assert call.model is not None
        scope = self.config.rate_limit.scope
        decision = await limiter.acquire(scope_key(scope, client=call.client, model=call.model))
        headers = decision.headers()
        if not decision.allowed:
            self.metrics.rate_limited.labels(call.client, call.model_label).inc()
            raise Failure(
                "rate_limit",
                f"rate limit of {decision.limit} requests per minute ({scope}) reached; retry in "
                f"{headers.get('Retry-After', '1')} s",
                headers=headers,
            )
        call.headers.update(headers)

    def _guard(self, call: _Call) -> None:
        guardrails = self.policies.guardrails
        if guardrails is None:
            return
        try:
            outcome = guardrails.apply(call.api, call.body)
        except Blocked as e:
            self.metrics.guardrail_blocks.labels(e.guardrail, call.client).inc()
            raise Failure(
                "invalid_request", f"blocked by guardrail {e.guardrail}: {e.reason}", code="guardrail_blocked"
            ) from None
        if outcome.redactions:
            self.metrics.redactions.labels(call.client).inc(outcome.redactions)
        if outcome.changed:
            call.changed = True  # redacted in place: serialized again before it is sent

    async def _cached(self, call: _Call) -> StreamResponse | None:
        """A stored answer for this request, or None (after noting where to store the fresh one)."""
        cache = self.policies.cache
        headers = call.request.headers
        if cache is None or not cacheable(headers):
            return None
        assert call.model is not None
        vary = {name: headers[name] for name in ("anthropic-version", "anthropic-beta") if name in headers}
        key = cache_key(call.api, call.model, call.body, vary=vary)
        call.cache_key = key
        if not may_serve(headers):
            return None
        entry = await cache.get(key)
        if entry is None:
            self.metrics.cache.labels(call.model_label, "miss").inc()
            return None
        self.metrics.cache.labels(call.model_label, "hit").inc()
        call.cache_key = None
        call.status = entry.status
        call.upstream = "cache"
        extra = {**call.headers, "x-agentkube-cache": "hit"}
        if entry.events is None:
            return Response(
                status=entry.status, body=entry.body, headers={"Content-Type": entry.content_type, **extra}
            )
        response = StreamResponse(
            status=entry.status, headers={**SSE_HEADERS, "Content-Type": entry.content_type, **extra}
        )
        await response.prepare(call.request)
        call.prepared = response
        call.first_byte = time.perf_counter()
        for frame in entry.events:
            await response.write(frame)
        await response.write_eof()
        return response

    async def _store(self, call: _Call, entry: Entry | None) -> None:
        cache = self.policies.cache
        if call.cache_key is None or cache is None or entry is None:
            return
        try:
            await cache.put(call.cache_key, entry)
        except Exception:
            log.exception("could not store a response in the cache", model=call.model_label)

    # ---------------------------------------------------------------------------------- upstream

    @property
    def _translator(self) -> ModuleType:
        # Only asked for on a cross-API path, which _upstream_api opens only with translate present.
        assert self.translate is not None
        return self.translate

    def _upstream_api(self, provider: Provider, api: API, model: str) -> API | None:
        chosen = provider.api_for(api, model)
        if chosen is not None and chosen != api and self.translate is None:
            return None
        return chosen

    async def _forward(self, call: _Call, candidates: tuple[Candidate, ...]) -> StreamResponse:
        skipped: list[str] = []
        last: _Failed | None = None
        if call.count_tokens:
            counting = [
                c
                for c in candidates
                if (p := self.providers[c.upstream]).counts_tokens
                and self._upstream_api(p, MESSAGES, c.model) == MESSAGES
            ]
            if not counting:
                return self._estimate_tokens(call)
            candidates = tuple(counting)
        for candidate in self.router.order(candidates):
            provider = self.providers[candidate.upstream]
            for _ in range(2):  # a second round only after refuse(): the same upstream, translated
                up_api = self._upstream_api(provider, call.api, candidate.model)
                if up_api is None:
                    skipped.append(self._why_not(provider, call.api))
                    break
                if last is not None:
                    call.failovers += 1
                    self.metrics.failovers.labels(last.upstream, last.reason).inc()
                    log.warning(
                        "failing over",
                        failed=last.upstream,
                        reason=last.reason,
                        detail=last.detail,
                        to=candidate.upstream,
                        model=call.model_label,
                    )
                    last = None
                try:
                    outcome = await self._attempt(call, provider, candidate, up_api)
                except _Retranslate:
                    continue
                if isinstance(outcome, _Failed):
                    last = outcome
                    if self.router.failed(provider.name):
                        log.warning(
                            "upstream cooling down after repeated failures",
                            upstream=provider.name,
                            seconds=self.config.routing.cooldown_seconds,
                        )
                    break
                return outcome
        if last is not None:
            return self._exhausted(call, last)
        raise Failure(
            "invalid_request",
            f"model {call.model!r} cannot be served: " + "; ".join(skipped),
            param="model",
            status=501 if call.api != EMBEDDINGS else 400,
        )

    def _why_not(self, provider: Provider, api: API) -> str:
        if api == EMBEDDINGS:
            return f"upstream {provider.name} ({provider.kind}) has no embeddings API"
        return (
            f"upstream {provider.name} ({provider.kind}) speaks {provider.translate_to}, and this build "
            f"cannot translate {api} into it"
        )

    def _payload(self, call: _Call, provider: Provider, candidate: Candidate, up_api: API) -> bytes:
        if up_api == call.api:
            named = call.body.get("model")
            call.hidden_usage = (
                call.stream and up_api == CHAT and provider.stream_usage and not _asks_usage(call.body)
            )
            if call.hidden_usage:
                # Tokens of a stream are counted only if the upstream reports them: ask for the
                # usage chunk, and keep it from a client that did not ask (see _relay).
                options = call.body.get("stream_options")
                asked = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                return orjson.dumps({**call.body, "model": candidate.model, "stream_options": asked})
            if not call.changed:
                if named == candidate.model:
                    return call.raw
                rewritten = rewrite_model(
                    call.raw, named if isinstance(named, str) else None, candidate.model
                )
                if rewritten is not None:
                    return rewritten
            return orjson.dumps({**call.body, "model": candidate.model})
        try:
            translated = self._translator.request(call.body, call.api, up_api, candidate.model)
        except (ValueError, TypeError, KeyError) as e:
            raise Failure(
                "invalid_request", f"this request cannot be translated from {call.api} to {up_api}: {e}"
            ) from None
        return orjson.dumps(translated)

    async def _attempt(
        self, call: _Call, provider: Provider, candidate: Candidate, up_api: API
    ) -> StreamResponse | _Failed:
        payload = self._payload(call, provider, candidate, up_api)
        try:
            outgoing = await provider.prepare(
                up_api,
                candidate.model,
                payload,
                call.request.headers,
                count_tokens=call.count_tokens,
                stream=call.stream,
            )
        except Failure as failure:
            if failure.status < 500:
                raise  # the request itself cannot be sent this way
            # No credential could be had (a token endpoint down, expired workload identity): this
            # upstream is failing, the next one may serve.
            self.metrics.upstream_responses.labels(provider.name, "credentials").inc()
            return _Failed(provider.name, "credentials", failure.message, up_api)
        timeouts = provider.config.timeouts
        assert self.http is not None, "the gateway's client session is made when it starts"
        span = self._client_span(call, provider, candidate, outgoing)
        try:
            try:
                # The first-byte timeout covers the answer's head and, unless it streams, its body.
                upstream = await self.http.request(
                    "POST",
                    outgoing.url,
                    outgoing.headers,
                    outgoing.body,
                    connect_seconds=timeouts.connect_seconds,
                    answer_seconds=timeouts.first_byte_seconds,
                    **outgoing.extra,
                )
                try:
                    streaming = (
                        call.stream
                        and upstream.status < 300
                        and upstream.content_type in provider.stream_types
                    )
                    if streaming:
                        first = await upstream.readany()
                        body = b""
                        upstream.idle_timeout(timeouts.stream_idle_seconds)
                    else:
                        first = b""
                        body = await upstream.read(None if upstream.status < 300 else MAX_ERROR_BYTES)
                except BaseException:
                    upstream.release()
                    raise
            except TimeoutError:
                self.metrics.upstream_responses.labels(provider.name, "timeout").inc()
                _end_span(span, error="timeout")
                return _Failed(
                    provider.name, "timeout", f"no answer within {timeouts.first_byte_seconds:g} s", up_api
                )
            except ClientError as e:
                self.metrics.upstream_responses.labels(provider.name, "error").inc()
                _end_span(span, error=type(e).__name__)
                return _Failed(provider.name, "connection", _describe(e), up_api)
            self._child(self.metrics.upstream_responses, provider.name, str(upstream.status)).inc()
            if span is not None:
                span.set_attribute("http.response.status_code", upstream.status)
            status = upstream.status
            if status >= 300:
                upstream.release()
                _end_span(span, error=str(status) if status >= 400 else None)
                passed = _passed_headers(upstream)
                if (
                    status in (404, 405)
                    and up_api in provider.native
                    and up_api != provider.translate_to
                    and _route_missing(body)
                    and self.translate is not None
                ):
                    log.warning(
                        "upstream has no endpoint for this API; translating from now on",
                        upstream=provider.name,
                        api=up_api,
                        to=provider.translate_to,
                    )
                    provider.refuse(up_api)
                    raise _Retranslate
                content_type = upstream.headers.get("Content-Type", JSON)
                err_api, rewritten = provider.error_envelope(up_api, status, body, upstream.headers)
                if rewritten is not body:
                    body, content_type = rewritten, JSON
                if retryable(status):
                    reason = "429" if status == 429 else "5xx"
                    return _Failed(
                        provider.name,
                        reason,
                        f"answered {status}",
                        err_api,
                        status,
                        body,
                        passed,
                        content_type,
                    )
                self.router.succeeded(provider.name)
                call.upstream = provider.name
                return self._upstream_error(call, err_api, status, body, content_type, passed)
            call.upstream = provider.name
            if span is not None:
                span.set_attribute("gen_ai.response.model", candidate.model)
            if not streaming:
                _end_span(span)
                return await self._answer(call, provider, candidate, up_api, upstream, body)
            if not first:
                upstream.release()
                _end_span(span, error="empty stream")
                return _Failed(provider.name, "connection", "the stream ended before its first byte", up_api)
            try:
                return await self._relay(call, provider, candidate, up_api, upstream, first)
            finally:
                # A stream read to its end goes back to the pool; one cut short is closed.
                if upstream.at_eof():
                    upstream.release()
                else:
                    upstream.close()
                _end_span(span)
        except BaseException:
            _end_span(span, error="cancelled")
            raise

    async def _answer(
        self,
        call: _Call,
        provider: Provider,
        candidate: Candidate,
        up_api: API,
        upstream: UpstreamResponse,
        body: bytes,
    ) -> Response:
        self.router.succeeded(provider.name)
        call.status = upstream.status
        headers = {**_passed_headers(upstream), **call.headers}
        content_type = upstream.headers.get("Content-Type", JSON)
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if not call.count_tokens:
            call.usage = usage_of(up_api, parsed)
        if up_api != call.api:
            if not isinstance(parsed, dict):
                call.status = 502
                return _error_response(
                    call.api,
                    Failure("bad_gateway", f"upstream {provider.name} answered with no JSON object"),
                    headers,
                )
            try:
                body = orjson.dumps(self._translator.response(parsed, up_api, call.api, model=call.model))
            except Failure as failure:  # the upstream's answer says it failed, or cannot be read
                call.status = failure.status
                return _error_response(call.api, failure, headers)
            except (ValueError, TypeError, KeyError) as e:
                call.status = 502
                return _error_response(
                    call.api,
                    Failure(
                        "bad_gateway", f"the answer of upstream {provider.name} could not be translated: {e}"
                    ),
                    headers,
                )
            content_type = JSON
        if call.cache_key is not None and 200 <= upstream.status < 300:
            await self._store(call, Entry(upstream.status, content_type, body=body))
        return Response(status=upstream.status, body=body, headers={"Content-Type": content_type, **headers})

    def _upstream_error(
        self, call: _Call, up_api: API, status: int, body: bytes, content_type: str, headers: dict[str, str]
    ) -> Response:
        """An upstream's own error: unchanged for the same API, else in the client's envelope."""
        call.status = status
        headers = {**headers, **call.headers}
        if up_api == call.api:
            return Response(
                status=status, body=body, headers={"Content-Type": content_type or JSON, **headers}
            )
        try:
            translated = self._translator.error(body, status, up_api, call.api)
        except Exception:
            log.exception("could not translate an upstream error", upstream=call.upstream)
            translated = error_body(
                call.api, Failure("bad_gateway", f"upstream {call.upstream} answered {status}")
            )
        return Response(status=status, body=translated, headers={"Content-Type": JSON, **headers})

    def _exhausted(self, call: _Call, last: _Failed) -> Response:
        tried = (
            f" (after {call.failovers} failover{'s' if call.failovers != 1 else ''})"
            if call.failovers
            else ""
        )
        log.warning(
            "every upstream failed",
            model=call.model_label,
            last=last.upstream,
            reason=last.reason,
            detail=last.detail,
            failovers=call.failovers,
        )
        if last.status is not None:
            call.upstream = last.upstream
            return self._upstream_error(
                call, last.api, last.status, last.body, last.content_type, last.headers
            )
        if last.reason == "timeout":
            failure = Failure(
                "timeout", f"upstream {last.upstream} did not answer in time{tried}: {last.detail}"
            )
        else:
            failure = Failure(
                "bad_gateway", f"upstream {last.upstream} could not be reached{tried}: {last.detail}"
            )
        return self._failure(call, failure)

    async def _relay(
        self,
        call: _Call,
        provider: Provider,
        candidate: Candidate,
        up_api: API,
        upstream: UpstreamResponse,
        first: bytes,
    ) -> StreamResponse:
        """Send the stream on as it arrives (translated when the APIs differ); never retried."""
        self.router.succeeded(provider.name)
        same = up_api == call.api and not provider.reframes and not call.hidden_usage
        translator = None
        if not same:
            include_usage = _asks_usage(call.body)
            translator = self._translator.stream(
                up_api, call.api, model=call.model, include_usage=include_usage
            )
        splitter = provider.stream_events()
        usage = StreamUsage(up_api)
        recording = StreamRecording() if call.cache_key is not None else None
        response = StreamResponse(
            status=upstream.status, headers={**SSE_HEADERS, **_passed_headers(upstream), **call.headers}
        )
        await response.prepare(call.request)
        call.prepared = response
        call.status = upstream.status
        call.first_byte = time.perf_counter()
        idle = provider.config.timeouts.stream_idle_seconds
        sent = 0
        chunk = first
        try:
            while True:
                events = splitter.feed(chunk) if chunk else splitter.finish()
                for event in events:
                    usage.feed(event.event, event.data)
                if same:
                    out = chunk
                else:
                    assert translator is not None
                    out = b"".join(f for e in events for f in translator.feed(e.event, e.data))
                    if not chunk:
                        out += b"".join(translator.finish())
                if out:
                    await response.write(out)
                    sent += len(events)
                    if recording is not None:
                        recording.add(out)
                if not chunk:
                    break
                chunk = await upstream.readany()  # at most ``idle`` s of silence (set in _attempt)
        except (
            TimeoutError,
            ClientError,
            EventTooLarge,
            Failure,
            ValueError,
            TypeError,
            KeyError,
        ) as e:
            recording = None  # a broken stream is never cached
            reason = (
                "timeout"
                if isinstance(e, TimeoutError)
                else e.message
                if isinstance(e, Failure)
                else _describe(e)
            )
            log.warning(
                "upstream stream failed after its first bytes reached the client; not retried",
                upstream=provider.name,
                model=call.model_label,
                reason=reason,
            )
            call.status = 502
            if isinstance(e, TimeoutError):
                failure = Failure(
                    "timeout", f"upstream {provider.name} went silent mid-stream for {idle:g} s"
                )
            elif isinstance(e, Failure):
                failure = e  # the upstream's own error event, in the client's shape
            else:
                failure = Failure("bad_gateway", f"upstream {provider.name} failed mid-stream: {reason}")
            await response.write(stream_error(call.api, failure, sequence_number=sent))
        call.usage = usage.usage
        if call.usage is None and translator is not None and translator.usage is not None:
            call.usage = from_ir(translator.usage)
        await response.write_eof()
        if recording is not None and call.status < 300:
            await self._store(call, recording.entry(call.status, SSE_HEADERS["Content-Type"]))
        return response

    def _estimate_tokens(self, call: _Call) -> Response:
        call.status = 200
        call.upstream = "estimate"
        texts = (
            _texts(call.body.get("system"))
            + _texts(call.body.get("messages"))
            + _texts(call.body.get("tools"))
        )
        tokens = max(1, math.ceil(texts / 4))
        return _json_response(
            {"input_tokens": tokens}, headers={"x-agentkube-token-count": "estimate", **call.headers}
        )

    # ----------------------------------------------------------------------------- observability

    def _server_span(self, call: _Call) -> Any:
        if self.tracer is None:
            return None
        from opentelemetry import propagate, trace

        carrier = {
            k.lower(): v
            for k, v in call.request.headers.items()
            if k.lower() in ("traceparent", "tracestate")
        }
        operation = _operation(call)
        span = self.tracer.start_span(
            operation,
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"gen_ai.operation.name": operation, "agentkube.llm.api": call.api},
        )
        call.span = span
        return span

    def _client_span(self, call: _Call, provider: Provider, candidate: Candidate, outgoing: Outgoing) -> Any:
        if self.tracer is None:
            return None
        from opentelemetry import propagate, trace

        operation = _operation(call)
        span = self.tracer.start_span(
            f"{operation} {candidate.model}",
            context=trace.set_span_in_context(call.span) if call.span is not None else None,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider.semconv_name,
                "gen_ai.request.model": candidate.model,
                "agentkube.llm.upstream": provider.name,
                "server.address": URL(outgoing.url).host or "",
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        outgoing.headers.update(carrier)
        return span

    def _finish(self, call: _Call, span: Any) -> None:
        elapsed = time.perf_counter() - call.started
        code = str(call.status or 500)
        labels = (call.api, call.model_label, call.upstream)
        self._child(self.metrics.requests, *labels, call.client, code).inc()
        self._child(self.metrics.request_seconds, *labels).observe(elapsed)
        if call.first_byte is not None:
            self._child(self.metrics.first_token_seconds, *labels).observe(call.first_byte - call.started)
        usage = call.usage
        if usage is not None:
            self.metrics.count_usage(usage, call.model_label, call.upstream, call.client)
        log_info(
            "request",
            {
                "api": call.api if not call.count_tokens else "anthropic-count-tokens",
                "model": call.model_label,
                "upstream": call.upstream,
                "client": call.client,
                "status": call.status,
                "stream": call.stream,
                "seconds": round(elapsed, 4),
                "failovers": call.failovers,
                "input_tokens": usage.input if usage else None,
                "output_tokens": usage.output if usage else None,
            },
        )
        if span is not None:
            from opentelemetry import trace

            span.set_attribute("http.response.status_code", call.status)
            span.set_attribute("agentkube.llm.client", call.client)
            span.set_attribute("agentkube.llm.upstream", call.upstream)
            span.set_attribute("agentkube.llm.failovers", call.failovers)
            if call.model is not None:
                span.update_name(f"{_operation(call)} {call.model}")
            if usage is not None:
                span.set_attribute(
                    "gen_ai.usage.input_tokens", usage.input + usage.cache_read + usage.cache_write
                )
                span.set_attribute("gen_ai.usage.output_tokens", usage.output)
            if call.status >= 400:
                span.set_attribute("error.type", str(call.status))
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()


# -------------------------------------------------------------------------------------- helpers


def _cooling(router: Router, name: str) -> Callable[[], float]:
    return lambda: 1.0 if router.cooling(name) else 0.0


def _reader(counts: dict[API, int], api: API) -> Callable[[], float]:
    return lambda: float(counts[api])


def _speaks_anthropic(request: Request) -> bool:
    headers = request.headers
    return "anthropic-version" in headers or "x-api-key" in headers


def _api_of_request(request: Request) -> API:
    return MESSAGES if request.path.startswith("/v1/messages") or _speaks_anthropic(request) else CHAT


def _json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status=status, body=orjson.dumps(data), headers={"Content-Type": JSON, **(headers or {})})


def _error_response(api: API, failure: Failure, headers: Mapping[str, str] | None = None) -> Response:
    all_headers = {**(headers or {}), **failure.headers, "Content-Type": JSON}
    return Response(status=failure.status, body=error_body(api, failure), headers=all_headers)


def _too_large(limit: int) -> Failure:
    return Failure("request_too_large", f"request body exceeds {limit} bytes")


def _unknown_model(model: str) -> Failure:
    return Failure(
        "not_found",
        f"model {model!r} is not served by this gateway; GET /v1/models lists the models it serves",
        param="model",
    )


def _openai_model(model: str, owner: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


def _anthropic_model(model: str) -> dict[str, Any]:
    return {"type": "model", "id": model, "display_name": model, "created_at": EPOCH, "lifecycle": "active"}


def _parse(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise Failure("invalid_request", "the request has no body; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Failure("invalid_request", f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise Failure("invalid_request", "the request body must be a JSON object")
    return body


def _check(api: API, body: dict[str, Any], *, count_tokens: bool) -> None:
    """The fields the gateway itself reads have the types it needs (the provider checks the rest)."""
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise Failure("invalid_request", "model: must be a non-empty string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise Failure("invalid_request", "stream: must be true or false", param="stream")
    if api in (CHAT, MESSAGES):
        if not isinstance(body.get("messages"), list):
            raise Failure("invalid_request", "messages: required, a list of messages", param="messages")
    elif api in (RESPONSES, EMBEDDINGS):
        value = body.get("input")
        if not isinstance(value, str | list) and not (api == RESPONSES and value is None):
            raise Failure("invalid_request", "input: required, a string or a list", param="input")
    if api == MESSAGES and not count_tokens:
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)):
            raise Failure("invalid_request", "max_tokens: must be an integer", param="max_tokens")


def _asks_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _passed_headers(response: UpstreamResponse) -> dict[str, str]:
    headers = response.headers  # lowercase names (http1.Headers); PASSED_HEADERS are lowercase too
    return {name: value for name in PASSED_HEADERS if (value := dict.get(headers, name)) is not None}


def _route_missing(body: bytes) -> bool:
    """Whether a 404/405 says the path does not exist (a server's default page), not that a model
    or object is missing (a JSON error of the API)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return not isinstance(parsed, dict) or parsed.get("detail") in ("Not Found", "Method Not Allowed")


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _texts(value: Any) -> int:
    """Bytes of text in a Messages request part (strings anywhere inside it), for the estimate."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_texts(v) for v in value)
    if isinstance(value, dict):
        return sum(_texts(v) for k, v in value.items() if k not in ("type", "id", "role", "cache_control"))
    return 0


def _operation(call: _Call) -> str:
    if call.count_tokens:
        return "count_tokens"
    return "embeddings" if call.api == EMBEDDINGS else "chat"


def _set_request_attributes(span: Any, body: dict[str, Any], model: str) -> None:
    span.set_attribute("gen_ai.request.model", model)
    for key, attribute in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("max_output_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ):
        value = body.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            span.set_attribute(attribute, value)


def _end_span(span: Any, error: str | None = None) -> None:
    if span is None or not span.is_recording():
        return
    if error is not None:
        from opentelemetry import trace

        span.set_attribute("error.type", error)
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()
