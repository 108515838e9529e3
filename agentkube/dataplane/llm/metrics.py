"""The LLM gateway's Prometheus metrics (``agentkube_llm_*``), and the token usage they count.

Every label value comes from a bounded set: the API names, model names the config serves (anything
else counts as ``unknown``), upstream names from the config (``none`` when no upstream was reached),
client ids from the config (``anonymous`` without auth, ``unauthenticated`` for a refused key),
status codes, and the fixed reasons below. A client can never mint a series, and no label carries a
key, a prompt or a response.

``usage_of(api, body)`` reads a whole response's token counts in the shape of ``api``;
``StreamUsage`` does the same for a stream, one event at a time, looking inside only the events
that carry usage (Chat Completions' last chunk with ``stream_options.include_usage``, Responses'
``response.completed``, Messages' ``message_start`` and ``message_delta``, Converse's ``metadata``,
Gemini's ``usageMetadata`` of each chunk, the last one counting). ``from_ir`` takes a translator's
usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentkube.dataplane.llm.apis import API, CHAT, CONVERSE, EMBEDDINGS, GEMINI, MESSAGES, RESPONSES
from agentkube.dataplane.llm.translate import ir

__all__ = ["GatewayMetrics", "StreamUsage", "Usage", "from_ir", "usage_of"]

# Model calls run from tens of milliseconds to many minutes.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


@dataclass(slots=True)
class Usage:
    """Tokens of one response: input (not cached), output, read from and written to the prompt cache."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def add(self, other: Usage) -> None:
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _openai_usage(usage: dict[str, Any], input_key: str, output_key: str, details_key: str) -> Usage:
    details = usage.get(details_key)
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    # OpenAI counts cached tokens inside the input; here input is what was not served from the cache.
    return Usage(
        input=max(0, _int(usage.get(input_key)) - cached),
        output=_int(usage.get(output_key)),
        cache_read=cached,
    )


def _anthropic_usage(usage: dict[str, Any]) -> Usage:
    return Usage(
        input=_int(usage.get("input_tokens")),
        output=_int(usage.get("output_tokens")),
        cache_read=_int(usage.get("cache_read_input_tokens")),
        cache_write=_int(usage.get("cache_creation_input_tokens")),
    )


def from_ir(usage: ir.Usage) -> Usage:
    """A translator's usage (input counted with the cached tokens) as the gateway counts it."""
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    return Usage(
        input=max(0, usage.input_tokens - cached),
        output=usage.output_tokens,
        cache_read=usage.cache_read_tokens,
        cache_write=usage.cache_write_tokens,
    )


def _gemini_usage(usage: dict[str, Any]) -> Usage:
    cached = _int(usage.get("cachedContentTokenCount"))
    # Gemini counts cached tokens inside the prompt, and thinking apart from the candidates.
    return Usage(
        input=max(0, _int(usage.get("promptTokenCount")) - cached),
        output=_int(usage.get("candidatesTokenCount")) + _int(usage.get("thoughtsTokenCount")),
        cache_read=cached,
    )


def usage_of(api: API, body: Any) -> Usage | None:
    """The usage a whole (non-stream) response of ``api`` reports, or None when it has none."""
    if not isinstance(body, dict):
        return None
    if api == GEMINI:
        metadata = body.get("usageMetadata")
        return _gemini_usage(metadata) if isinstance(metadata, dict) else None
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    if api in (CHAT, EMBEDDINGS):
        return _openai_usage(usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details")
    if api == RESPONSES:
        return _openai_usage(usage, "input_tokens", "output_tokens", "input_tokens_details")
    if api == CONVERSE:
        return Usage(
            input=_int(usage.get("inputTokens")),
            output=_int(usage.get("outputTokens")),
            cache_read=_int(usage.get("cacheReadInputTokens")),
            cache_write=_int(usage.get("cacheWriteInputTokens")),
        )
    return _anthropic_usage(usage)


class StreamUsage:
    """Usage gathered from a stream of ``api`` as its events pass; ``usage`` is None until one told."""

    def __init__(self, api: API) -> None:
        self.api = api
        self.usage: Usage | None = None

    def feed(self, event: str | None, data: bytes) -> None:
        if b'"usage' not in data:
            return
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict):
            return
        if self.api in (CHAT, CONVERSE, GEMINI):
            # Chat's last chunk, Converse's metadata event, every Gemini chunk (cumulative counts).
            self.usage = usage_of(self.api, body) or self.usage
        elif self.api == RESPONSES:
            response = body.get("response")
            if body.get("type") in ("response.completed", "response.incomplete", "response.failed"):
                self.usage = usage_of(RESPONSES, response) or self.usage
        elif self.api == MESSAGES:
            kind = body.get("type")
            if kind == "message_start":
                self.usage = usage_of(MESSAGES, body.get("message")) or self.usage
            elif kind == "message_delta":
                delta = usage_of(MESSAGES, body)
                if delta is not None:
                    # message_delta's counts are cumulative: they replace, never add.
                    current = self.usage or Usage()
                    current.output = delta.output or current.output
                    current.input = delta.input or current.input
                    current.cache_read = delta.cache_read or current.cache_read
                    current.cache_write = delta.cache_write or current.cache_write
                    self.usage = current


class GatewayMetrics:
    """Every series the gateway exports, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, models: list[str], upstreams: list[str]) -> None:
        self._models = frozenset(models)
        self.requests = Counter(
            "agentkube_llm_requests_total",
            "Requests answered, by client API, model requested, upstream that answered, client and "
            "status code.",
            ["api", "model", "upstream", "client", "code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "agentkube_llm_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (streams: the last byte).",
            ["api", "model", "upstream"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.first_token_seconds = Histogram(
            "agentkube_llm_time_to_first_token_seconds",
            "Time from a streaming request's arrival to its first bytes sent to the client.",
            ["api", "model", "upstream"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self._tokens: dict[tuple[str, str, str, str], Any] = {}
        self.tokens = Counter(
            "agentkube_llm_tokens_total",
            "Tokens the upstreams reported, by kind: input (not from the cache), output, cache_read "
            "and cache_write.",
            ["model", "upstream", "client", "kind"],
            registry=registry,
        )
        self.upstream_responses = Counter(
            "agentkube_llm_upstream_responses_total",
            "Answers from upstreams by status code; 'error' for a connection error, 'timeout', "
            "'credentials' when no credential for it could be had.",
            ["upstream", "code"],
            registry=registry,
        )
        self.failovers = Counter(
            "agentkube_llm_failovers_total",
            "Requests moved on from an upstream to the next, by the upstream left and why "
            "(connection, timeout, 429, 5xx, credentials).",
            ["upstream", "reason"],
            registry=registry,
        )
        self.cooling = Gauge(
            "agentkube_llm_upstream_cooling_down",
            "1 while an upstream is skipped after repeated failures, else 0.",
            ["upstream"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "agentkube_llm_rate_limited_total",
            "Requests refused with 429 by the gateway's own rate limit, by client and model.",
            ["client", "model"],
            registry=registry,
        )
        self.guardrail_blocks = Counter(
            "agentkube_llm_guardrail_blocks_total",
            "Requests rejected by an input guardrail, by guardrail and client.",
            ["guardrail", "client"],
            registry=registry,
        )
        self.redactions = Counter(
            "agentkube_llm_redactions_total",
            "Pieces of personal data replaced by placeholders before a provider saw them, by client.",
            ["client"],
            registry=registry,
        )
        self.cache = Counter(
            "agentkube_llm_cache_lookups_total",
            "Response cache lookups by model and result (hit, miss).",
            ["model", "result"],
            registry=registry,
        )
        self.store_down = Gauge(
            "agentkube_llm_store_down",
            "1 while the shared store does not answer and its user (ratelimit, cache) falls back.",
            ["user"],
            registry=registry,
        )
        self.store_errors = Gauge(
            "agentkube_llm_store_errors",
            "Calls to the shared store that failed since the start, by user (ratelimit, cache).",
            ["user"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "agentkube_llm_requests_in_flight",
            "Requests being answered now, by client API.",
            ["api"],
            registry=registry,
        )
        for upstream in upstreams:
            self.cooling.labels(upstream).set(0)

    def model(self, name: object) -> str:
        """The label value for a requested model: itself when the gateway serves it, else unknown."""
        return name if isinstance(name, str) and name in self._models else "unknown"

    def count_usage(self, usage: Usage, model: str, upstream: str, client: str) -> None:
        for kind, value in (
            ("input", usage.input),
            ("output", usage.output),
            ("cache_read", usage.cache_read),
            ("cache_write", usage.cache_write),
        ):
            if value:
                key = (model, upstream, client, kind)
                child = self._tokens.get(key)
                if child is None:  # labels() validates and locks; the bounded children are kept
                    child = self._tokens[key] = self.tokens.labels(*key)
                child.inc(value)
