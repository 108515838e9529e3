"""Translation between OpenAI Chat Completions, OpenAI Responses and Anthropic Messages (and into
the two upstream-only APIs, Bedrock's Converse and Google's Gemini).

The gateway calls this package only when the client's API and the upstream's differ (when they
match it forwards bytes); every function here also accepts ``src == dst`` and then changes nothing
but ``model``. Everything is pure: dicts in, dicts or whole SSE frames out, no I/O, no provider SDK.

    request(body, src, dst, model)        client request (API src) -> upstream request (API dst)
    response(body, src, dst, model=...)   upstream answer (API src) -> the answer the client (dst) expects
    stream(src, dst, model=...)           a StreamTranslator: upstream SSE events in, client SSE frames out
    error(body, status, src, dst)         upstream error body -> the client's error envelope

A request that cannot be translated without changing what it asks raises ``TranslationError``
(an ``apis.Failure`` of kind ``invalid_request`` whose ``param`` is the field), to answer as a 400 in
the client's envelope (``apis.error_body``). An upstream answer too malformed to read raises
``UpstreamError`` of kind ``bad_gateway``; a ``failed`` Responses answer raises its own error.
Embeddings (``openai-embeddings``) are never translated: asking raises ``TranslationError``.
Converse (``bedrock_converse``) and Gemini (``gemini``) are only ever an upstream's API: a request is
built in them and their answers and streams are read from them, never the other way.

Every translation goes through one internal form (``ir``), so what is lossy is decided once per API
and documented in that API's module (``openai_chat``, ``openai_responses``, ``anthropic_messages``).
The lossy mappings, in short (``LOSSY_MAPPINGS`` holds the same list for tooling and docs):

- System prompts: Chat's leading ``system``/``developer`` messages, Responses' ``instructions`` and
  leading system messages, Anthropic's ``system`` are one prompt; the developer/system distinction
  is lost; towards Responses the blocks are joined by a blank line. Later system messages stay in
  place (Anthropic: ``role: system`` messages).
- Tool arguments: OpenAI's JSON text <-> Anthropic's ``input`` object; text that is not a JSON object
  becomes ``{"_raw_arguments": text}``; key order and spacing are Anthropic's or orjson's.
  Tool-call ids keep their value, with characters Anthropic refuses replaced by ``_``.
- Tool results: ``is_error`` is dropped towards OpenAI; images in a tool result towards Chat move to
  a user message after the tool messages.
- Stop reasons: each API's reasons map to the nearest (tables in each module); OpenAI cannot tell a
  stop sequence from a natural stop, Anthropic's ``refusal`` is OpenAI's ``content_filter``.
- Thinking: Anthropic thinking -> Chat ``reasoning_content`` (signature lost) or a Responses
  reasoning item (summary text + signature in ``encrypted_content``); OpenAI reasoning -> Anthropic
  thinking with OpenAI's encrypted content as signature. Thinking in request history is dropped
  towards OpenAI, and unsigned thinking is dropped towards Anthropic. ``reasoning_effort`` <->
  ``thinking``/``output_config.effort``; a thinking budget maps to low/medium/high.
- ``n`` > 1 is refused towards Anthropic and Responses.
- Temperature: clamped to Anthropic's 0..1 (not scaled); ``top_k`` is refused towards OpenAI.
- Images: URLs pass as URLs (the gateway never fetches them); inline data converts between ``data:``
  URLs and base64 sources; ``detail`` is lost towards Anthropic; image types Anthropic does not take
  are refused. Files stored at a provider (``file_id``) are refused.
- Fields one API has and the other cannot express are refused when they change the answer
  (``logprobs``, penalties, ``stop`` towards Responses, ``previous_response_id``, server/hosted
  tools, ``json_object``...) and dropped when they are bookkeeping (``metadata``, ``store``,
  ``service_tier``, ``cache_control``, ``seed``...); unknown fields are refused.
- ``max_tokens``: Anthropic requires it; 4,096 is sent when the client gave none.
- Prefill: an Anthropic request ending with assistant text is refused towards OpenAI (which cannot
  continue a turn); an OpenAI conversation ending with an assistant turn reaches Anthropic as one.
- Responses answers echo no request fields; from a Chat upstream only choice 0 is read.
- Converse and Gemini (upstream only): each module's docstring lists what it keeps and loses; in
  short, later system messages join the system prompt, Gemini's call ids are the gateway's own,
  guardrail and safety stops are ``content_filter``/``refusal``.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from agentkube.dataplane.llm.apis import API, CHAT, CONVERSE, EMBEDDINGS, GEMINI, MESSAGES, RESPONSES
from agentkube.dataplane.llm.translate import (
    anthropic_messages,
    bedrock_converse,
    gemini,
    ir,
    openai_chat,
    openai_responses,
)
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError, translate_error

__all__ = [
    "LOSSY_MAPPINGS",
    "StreamTranslator",
    "TranslationError",
    "UpstreamError",
    "error",
    "ir",
    "request",
    "response",
    "stream",
]

LOSSY_MAPPINGS: Final[tuple[str, ...]] = (
    "system prompts: developer and system roles merge; towards Responses blocks join with a blank line",
    "tool arguments: JSON text <-> input object; non-object text becomes {'_raw_arguments': text}",
    "tool-call ids: characters outside [A-Za-z0-9_-] become '_' towards Anthropic",
    "tool results: is_error dropped towards OpenAI; media in Chat tool results move to a next user message",
    "stop reasons: nearest equivalent; OpenAI reports stop sequences as a plain stop",
    "thinking: signature lost towards Chat; history thinking dropped towards OpenAI; unsigned thinking "
    "dropped towards Anthropic; effort <-> thinking budget approximated",
    "n > 1: refused towards Anthropic and Responses",
    "temperature: clamped to 0..1 towards Anthropic; top_k refused towards OpenAI",
    "images: URLs passed through unfetched; detail dropped towards Anthropic; unsupported types refused",
    "unsupported fields: refused when they change the answer, dropped when bookkeeping, unknown ones refused",
    "max_tokens: 4096 sent to Anthropic when the client gave none",
    "prefill: refused towards OpenAI; an OpenAI conversation ending on an assistant turn is one to Anthropic",
    "Responses answers echo no request fields (tools, instructions, temperature)",
    "citations and cache_control breakpoints are dropped",
    "towards Converse and Gemini: a later system message joins the system prompt (its place is lost)",
    "towards Converse: tool ids fit [A-Za-z0-9_.:-] and 64 characters; image URLs other than s3:// refused; "
    "tool_choice none sends no tools unless the history holds tool blocks",
    "towards Gemini: call ids are made by the gateway (Gemini has none) and carry the thought signature; "
    "results are matched by name through the history; topK and candidateCount never sent",
    "from Converse: guardrail_intervened and content_filtered -> content_filter (OpenAI) / refusal "
    "(Anthropic); answers carry no id, the gateway makes one",
    "from Gemini: SAFETY and its kin -> content_filter / refusal; thoughts come out unsigned",
)


class StreamTranslator(Protocol):
    """One upstream stream's translator: feed each upstream SSE event, write what comes out as it comes.

    ``feed(event, data)`` takes one upstream event (its ``event:`` name or ``None``, and its ``data``
    bytes; Chat's ``[DONE]`` included) and returns whole SSE frames for the client, possibly none.
    ``finish()`` is called once when the upstream stream ends and returns the frames due then (Chat's
    ``data: [DONE]``; an error event when the upstream stopped before finishing its answer).
    ``usage`` is the upstream's usage once it has been reported (for metrics), else ``None``.
    """

    @property
    def usage(self) -> ir.Usage | None: ...

    def feed(self, event: str | None, data: bytes) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


_CHAT_APIS: Final = (CHAT, RESPONSES, MESSAGES)
_UPSTREAM_ONLY: Final = (CONVERSE, GEMINI)


def _check(src: API, dst: API, *, client: API | None = None) -> None:
    if client in _UPSTREAM_ONLY:
        raise TranslationError("model", f"{client} is an upstream's API, never a client's")
    for api in (src, dst):
        if api in _UPSTREAM_ONLY:
            continue
        if api == EMBEDDINGS and src != dst:
            raise TranslationError(
                "model", "embeddings are not translated; use a model whose upstream serves embeddings"
            )
        if api not in (*_CHAT_APIS, EMBEDDINGS):
            raise TranslationError("model", f"unknown API {api!r}")


def parse_request(body: dict[str, Any], src: API, dst: API) -> ir.Request:
    """A client request of API ``src`` in the internal form (for a translation to ``dst``)."""
    if src == CHAT:
        return openai_chat.parse_request(body, dst)
    if src == RESPONSES:
        return openai_responses.parse_request(body, dst)
    return anthropic_messages.parse_request(body, dst)


def build_request(
    req: ir.Request, dst: API, model: str, *, default_max_tokens: int | None = None
) -> dict[str, Any]:
    """The internal form as an upstream request of API ``dst`` for ``model``."""
    if dst == CHAT:
        return openai_chat.build_request(req, model)
    if dst == RESPONSES:
        return openai_responses.build_request(req, model)
    if dst == CONVERSE:
        return bedrock_converse.build_request(req, model)
    if dst == GEMINI:
        return gemini.build_request(req, model)
    if default_max_tokens is not None:
        return anthropic_messages.build_request(req, model, default_max_tokens=default_max_tokens)
    return anthropic_messages.build_request(req, model)


def request(
    body: dict[str, Any], src: API, dst: API, model: str, *, default_max_tokens: int | None = None
) -> dict[str, Any]:
    """A client's request body of API ``src`` as an upstream request body of API ``dst`` for ``model``.

    ``default_max_tokens`` is what Anthropic gets when the client set no limit (default 4,096).
    Raises ``TranslationError`` (a 400 for the client) for what cannot be translated.
    """
    if not isinstance(body, dict):
        raise TranslationError("body", "must be a JSON object")
    _check(src, dst, client=src)
    if src == dst:
        return {**body, "model": model}
    return build_request(parse_request(body, src, dst), dst, model, default_max_tokens=default_max_tokens)


def parse_response(body: dict[str, Any], src: API) -> ir.Response:
    """An upstream's non-stream answer of API ``src`` in the internal form."""
    if not isinstance(body, dict):
        raise UpstreamError("bad_gateway", "the upstream's answer is not a JSON object")
    if src == CHAT:
        return openai_chat.parse_response(body)
    if src == RESPONSES:
        return openai_responses.parse_response(body)
    if src == CONVERSE:
        return bedrock_converse.parse_response(body)
    if src == GEMINI:
        return gemini.parse_response(body)
    return anthropic_messages.parse_response(body)


def build_response(resp: ir.Response, dst: API, model: str) -> dict[str, Any]:
    """The internal form as the non-stream answer a client of API ``dst`` expects."""
    if dst == CHAT:
        return openai_chat.build_response(resp, model)
    if dst == RESPONSES:
        return openai_responses.build_response(resp, model)
    return anthropic_messages.build_response(resp, model)


def response(body: dict[str, Any], src: API, dst: API, *, model: str) -> dict[str, Any]:
    """An upstream's non-stream answer of API ``src`` as the body a client of API ``dst`` expects.

    ``model`` is the model name the client sees (its alias). Same API: only ``model`` is rewritten.
    """
    _check(src, dst, client=dst)
    if src == dst:
        return {**body, "model": model} if isinstance(body, dict) and "model" in body else body
    return build_response(parse_response(body, src), dst, model)


class _Decoder(Protocol):
    def feed(self, event: str | None, data: bytes) -> list[ir.Event]: ...

    def finish(self) -> list[ir.Event]: ...


class _Encoder(Protocol):
    def encode(self, event: ir.Event) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...


class _Translator:
    __slots__ = ("_decoder", "_encoder", "usage")

    def __init__(self, decoder: _Decoder, encoder: _Encoder) -> None:
        self._decoder = decoder
        self._encoder = encoder
        self.usage: ir.Usage | None = None

    def _encode(self, events: list[ir.Event]) -> list[bytes]:
        frames: list[bytes] = []
        for event in events:
            if isinstance(event, ir.Start | ir.Finish) and event.usage is not None:
                self.usage = event.usage
            frames.extend(self._encoder.encode(event))
        return frames

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        return self._encode(self._decoder.feed(event, data))

    def finish(self) -> list[bytes]:
        return self._encode(self._decoder.finish()) + self._encoder.finish()


class _PassThrough:
    """Same API on both sides: each upstream event re-framed unchanged (usage read for metrics).

    ``drop_usage``: Chat's usage-only chunk (``choices: []``, ``usage`` set) is not passed on, for a
    client that did not ask for it.
    """

    __slots__ = ("_api", "_decoder", "_drop_usage", "usage")

    def __init__(self, api: API, *, drop_usage: bool = False) -> None:
        self._api = api
        self._decoder = _decoder(api)
        self._drop_usage = drop_usage
        self.usage: ir.Usage | None = None

    def feed(self, event: str | None, data: bytes) -> list[bytes]:
        for item in self._decoder.feed(event, data):
            if isinstance(item, ir.Start | ir.Finish) and item.usage is not None:
                self.usage = item.usage
        if self._drop_usage and b'"usage"' in data and openai_chat.usage_only(data):
            return []
        if event is None:
            return [b"data: " + data + b"\n\n"]
        return [b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"]

    def finish(self) -> list[bytes]:
        return []


def _decoder(src: API) -> _Decoder:
    if src == CHAT:
        return openai_chat.Decoder()
    if src == RESPONSES:
        return openai_responses.Decoder()
    if src == CONVERSE:
        return bedrock_converse.Decoder()
    if src == GEMINI:
        return gemini.Decoder()
    return anthropic_messages.Decoder()


def stream(src: API, dst: API, *, model: str, include_usage: bool = False) -> StreamTranslator:
    """A translator of one upstream stream of API ``src`` into the stream a client of API ``dst`` expects.

    ``model`` is the model name the client sees. ``include_usage`` is the Chat client's
    ``stream_options.include_usage`` (other clients always get usage). Same API: events pass unchanged.
    """
    _check(src, dst, client=dst)
    if src == EMBEDDINGS:
        raise TranslationError("stream", "embeddings do not stream")
    if src == dst:
        return _PassThrough(src, drop_usage=src == CHAT and not include_usage)
    encoder: _Encoder
    if dst == CHAT:
        encoder = openai_chat.Encoder(model, include_usage=include_usage)
    elif dst == RESPONSES:
        encoder = openai_responses.Encoder(model)
    else:
        encoder = anthropic_messages.Encoder(model)
    return _Translator(_decoder(src), encoder)


def error(body: bytes, status: int, src: API, dst: API) -> bytes:
    """An upstream (API ``src``) error body with HTTP ``status`` as the client's (API ``dst``) envelope.

    Same API: the body unchanged. The status is the caller's to keep (the upstream's).
    """
    return translate_error(body, status, src, dst)
