"""Model-provider stand-ins on loopback, for the LLM gateway's end-to-end tests.

``StandIn(kind, name=..., key=...)`` runs an aiohttp server in a thread of its own (so the tests may
call it with the providers' blocking SDKs) until ``stop()`` or the end of its ``with`` block. Kinds:

- ``openai``: ``POST /v1/chat/completions``, ``/v1/responses``, ``/v1/embeddings`` with
  ``Authorization: Bearer <key>``;
- ``azure``: the same under ``/openai/deployments/<deployment>/...?api-version=...`` (Responses at
  ``/openai/responses``) and under ``/openai/v1/...``, with ``api-key: <key>``;
- ``anthropic``: ``POST /v1/messages`` and ``/v1/messages/count_tokens`` with ``x-api-key: <key>``
  and a required ``anthropic-version``;
- ``compatible`` (Ollama, vLLM): the OpenAI paths plus ``/v1/messages``; with ``messages=False``
  ``/v1/messages`` answers a plain-text 404 as a release without it does.

Every body received is checked against the provider SDK's own request types (pydantic
``TypeAdapter`` over ``openai``'s ``CompletionCreateParams*``, ``ResponseCreateParams*``,
``EmbeddingCreateParams`` and ``anthropic``'s ``MessageCreateParams*``, ``MessageCountTokensParams``,
lazily validated iterables consumed, and no top-level field the type does not declare). A body that
fails is answered 400 and its errors kept in ``invalid``; every request is kept in ``requests``
(path, query, headers, raw and parsed body) so a test can prove which credential went upstream.

Answers have the recorded shape of each API, non-stream and stream: text (``"<name> says hello"``),
a tool call (when the request offers tools and its last turn is not a tool result: a call of the
first tool with ``{"city": "Paris"}``), the tool result echoed back in the next turn, and usage. A
test makes the next requests fail with ``fail(status)``, ``hang()`` (answer after ``hang_seconds``),
or ``break_stream()`` (two events, then the connection is cut); ``refusing_url()`` is an address
nobody listens on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import struct
import threading
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from test.e2e.peers import free_port

__all__ = ["Received", "StandIn", "refusing_url"]

Kind = Literal["openai", "azure", "anthropic", "compatible"]


def refusing_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


# ------------------------------------------------------------------------------------- validation


def _types(api: str) -> tuple[Any, Any]:
    """The SDK's (non-stream, stream) request types of ``api``."""
    from anthropic.types import MessageCountTokensParams, message_create_params
    from openai.types import EmbeddingCreateParams
    from openai.types.chat import completion_create_params as chat
    from openai.types.responses import response_create_params as responses

    return {
        "chat": (chat.CompletionCreateParamsNonStreaming, chat.CompletionCreateParamsStreaming),
        "responses": (responses.ResponseCreateParamsNonStreaming, responses.ResponseCreateParamsStreaming),
        "embeddings": (EmbeddingCreateParams, EmbeddingCreateParams),
        "messages": (
            message_create_params.MessageCreateParamsNonStreaming,
            message_create_params.MessageCreateParamsStreaming,
        ),
        "count_tokens": (MessageCountTokensParams, MessageCountTokensParams),
    }[api]


_ADAPTERS: dict[str, tuple[Any, Any, frozenset[str]]] = {}
_ADAPTERS_LOCK = threading.Lock()


def _adapters(api: str) -> tuple[Any, Any, frozenset[str]]:
    """Per API, built on first use (building them all costs seconds): the TypeAdapters and the
    top-level fields the types declare."""
    with _ADAPTERS_LOCK:
        if api not in _ADAPTERS:
            plain, streaming = _types(api)
            keys = frozenset(typing.get_type_hints(plain)) | frozenset(typing.get_type_hints(streaming))
            _ADAPTERS[api] = (TypeAdapter(plain), TypeAdapter(streaming), keys)
        return _ADAPTERS[api]


def _consume(value: Any) -> None:
    """Walk a validated value, running the validators pydantic defers for ``Iterable`` fields."""
    if isinstance(value, dict):
        for v in value.values():
            _consume(v)
    elif isinstance(value, list | tuple) or (
        not isinstance(value, str | bytes | int | float | bool | type(None)) and hasattr(value, "__iter__")
    ):
        for v in value:
            _consume(v)


def validate(api: str, body: Any) -> list[str]:
    """The reasons ``body`` is not a request of ``api`` by the SDK's own types (empty: it is)."""
    plain, streaming, keys = _adapters(api)
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    problems = [f"unknown field {k!r}" for k in body if k not in keys]
    adapter = streaming if body.get("stream") is True else plain
    try:
        _consume(adapter.validate_python(body))
    except ValidationError as e:
        problems += [f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in e.errors()]
    return problems


# --------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased names."""
    raw: bytes
    body: Any


def received(request: web.Request, raw: bytes, path: str | None = None) -> Received:
    """What a stand-in records of one request: ``path`` (default ``request.path``), query, headers
    by lower-cased name, the raw body and its JSON (None when it is not JSON)."""
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Received(request.path if path is None else path, dict(request.query), headers, raw, body)


@dataclass
class _Plan:
    mode: Literal["fail", "hang", "break"]
    times: int
    status: int = 500
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- answers


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            _text_of(p.get("text") or p.get("content") or p.get("output") or "")
            for p in content
            if isinstance(p, dict)
        )
    return ""


def _first_tool(tools: Any) -> str | None:
    if not isinstance(tools, list) or not tools:
        return None
    tool = tools[0]
    if not isinstance(tool, dict):
        return None
    if isinstance(tool.get("function"), dict):  # chat completions
        return str(tool["function"].get("name"))
    return str(tool.get("name")) if tool.get("name") else None


TOOL_ARGUMENTS = {"city": "Paris"}


class StandIn:
    """One provider stand-in; see the module docstring."""

    def __init__(
        self,
        kind: Kind,
        *,
        name: str | None = None,
        key: str | None = None,
        messages: bool = True,
        hang_seconds: float = 30.0,
        chunk_delay: float = 0.0,
        input_tokens: int = 11,
    ) -> None:
        self.kind = kind
        self.name = name or kind
        self.key = key
        self.messages = messages
        self.hang_seconds = hang_seconds
        self.chunk_delay = chunk_delay
        self.input_tokens = input_tokens
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Received] = []
        self.invalid: list[str] = []
        self._plans: list[_Plan] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------------------- lifecycle

    def start(self) -> StandIn:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as e:  # reported to start()
                failure.append(e)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"standin-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"stand-in {self.name} did not start: {failure}")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------- test controls

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.invalid.clear()
            self._plans.clear()

    def fail(
        self, status: int = 500, *, times: int = 1, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``body``, else an error of this
        provider's shape)."""
        raw = body if isinstance(body, bytes) else (orjson.dumps(body) if body is not None else None)
        with self._lock:
            self._plans.append(_Plan("fail", times, status, raw, dict(headers or {})))

    def hang(self, *, times: int = 1) -> None:
        """Hold the next ``times`` requests for ``hang_seconds`` before answering them."""
        with self._lock:
            self._plans.append(_Plan("hang", times))

    def break_stream(self, *, times: int = 1) -> None:
        """Cut the connection of the next ``times`` streams after their first two events."""
        with self._lock:
            self._plans.append(_Plan("break", times))

    def _next_plan(self) -> _Plan | None:
        with self._lock:
            if not self._plans:
                return None
            plan = self._plans[0]
            plan.times -= 1
            if plan.times <= 0:
                self._plans.pop(0)
            return plan

    def received(self, path_suffix: str = "") -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    # ----------------------------------------------------------------------------------- routing

    def _route(self, path: str) -> tuple[str, str | None] | None:
        """The API a path serves on this kind of provider, and the Azure deployment it names."""
        if self.kind == "azure":
            parts = path.split("/")
            if path.startswith("/openai/v1/"):
                api = {"chat/completions": "chat", "responses": "responses", "embeddings": "embeddings"}
                tail = path.removeprefix("/openai/v1/")
                return (api[tail], None) if tail in api else None
            if path == "/openai/responses":
                return "responses", None
            if len(parts) >= 5 and parts[1] == "openai" and parts[2] == "deployments":
                tail = "/".join(parts[4:])
                api = {"chat/completions": "chat", "embeddings": "embeddings"}
                return (api[tail], parts[3]) if tail in api else None
            return None
        openai_paths = {
            "/v1/chat/completions": "chat",
            "/v1/responses": "responses",
            "/v1/embeddings": "embeddings",
        }
        anthropic_paths = {"/v1/messages": "messages", "/v1/messages/count_tokens": "count_tokens"}
        if self.kind == "openai":
            found = openai_paths.get(path)
        elif self.kind == "anthropic":
            found = anthropic_paths.get(path)
        else:
            found = openai_paths.get(path) or (
                "messages" if path == "/v1/messages" and self.messages else None
            )
        return (found, None) if found else None

    def _authorized(self, request: web.Request) -> bool:
        if self.key is None:
            return True
        headers = request.headers
        if self.kind == "azure":
            return headers.get("api-key") == self.key
        if self.kind == "anthropic":
            return headers.get("x-api-key") == self.key
        return headers.get("Authorization") == f"Bearer {self.key}"

    def _error(
        self, api: str, status: int, message: str, kind: str = "invalid_request_error"
    ) -> web.Response:
        if api in ("messages", "count_tokens"):
            body = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = self._route(request.path)
        raw = await request.read()
        got = received(request, raw)
        body = got.body
        with self._lock:
            self.requests.append(got)
        if route is None:
            return web.Response(status=404, text="404 page not found")
        api, deployment = route
        if request.method != "POST":
            return self._error(api, 405, "method not allowed")
        if not self._authorized(request):
            kind = "authentication_error" if api in ("messages", "count_tokens") else "invalid_request_error"
            return self._error(api, 401, "stand-in: wrong or missing provider key", kind)
        if api in ("messages", "count_tokens") and not request.headers.get("anthropic-version"):
            return self._error(api, 400, "anthropic-version: header is required")
        if self.kind == "azure" and deployment is not None and "api-version" not in request.query:
            return self._error(api, 404, "Resource not found")
        problems = validate(api, body)
        if problems:
            with self._lock:
                self.invalid.append(f"{request.path}: {'; '.join(problems)}")
            return self._error(api, 400, "stand-in: request failed validation: " + "; ".join(problems))
        assert isinstance(body, dict)
        plan = self._next_plan()
        if plan is not None and plan.mode == "fail":
            if plan.body is not None:
                return web.Response(
                    status=plan.status, body=plan.body, content_type="application/json", headers=plan.headers
                )
            kind = (
                "api_error"
                if plan.status >= 500
                else "rate_limit_error"
                if plan.status == 429
                else "invalid_request_error"
            )
            response = self._error(api, plan.status, f"stand-in {self.name} failed on purpose", kind)
            response.headers.update(plan.headers)
            return response
        if plan is not None and plan.mode == "hang":
            await asyncio.sleep(self.hang_seconds)
        model = deployment or str(body.get("model"))
        stream = body.get("stream") is True
        broken = plan is not None and plan.mode == "break"
        if api == "count_tokens":
            return web.json_response({"input_tokens": self.counted(body)})
        if api == "embeddings":
            return self._embeddings(body, model)
        answer = self._answer(api, body)
        if not stream:
            return web.Response(
                body=orjson.dumps(self._whole(api, model, answer)), content_type="application/json"
            )
        return await self._stream(request, api, model, answer, body, broken)

    # ----------------------------------------------------------------------------------- content

    def counted(self, body: dict[str, Any]) -> int:
        """What ``count_tokens`` answers for ``body``: 7 per message, plus 3."""
        messages = body.get("messages")
        return 7 * (len(messages) if isinstance(messages, list) else 0) + 3

    def _answer(self, api: str, body: dict[str, Any]) -> tuple[str, str | None]:
        """(text, tool name): a call of the first tool unless the last turn is a tool result."""
        last_result = self._tool_result(api, body)
        if last_result is not None:
            return f"{self.name} got the tool result: {last_result}", None
        tool = _first_tool(body.get("tools"))
        if tool is not None:
            return "", tool
        return f"{self.name} says hello", None

    def _tool_result(self, api: str, body: dict[str, Any]) -> str | None:
        if api == "responses":
            items = body.get("input")
            last = items[-1] if isinstance(items, list) and items else None
            if isinstance(last, dict) and last.get("type") == "function_call_output":
                output = last.get("output")
                return output if isinstance(output, str) else _text_of(output)
            return None
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
            return None
        last = messages[-1]
        if api == "chat":
            return _text_of(last.get("content")) if last.get("role") == "tool" else None
        content = last.get("content")
        if last.get("role") == "user" and isinstance(content, list):
            results = [p for p in content if isinstance(p, dict) and p.get("type") == "tool_result"]
            if results:
                return _text_of(results[-1].get("content"))
        return None

    def _usage(self, api: str, output: int) -> dict[str, Any]:
        n = self.input_tokens
        if api == "chat":
            return {
                "prompt_tokens": n,
                "completion_tokens": output,
                "total_tokens": n + output,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            }
        if api == "responses":
            return {
                "input_tokens": n,
                "output_tokens": output,
                "total_tokens": n + output,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            }
        return {
            "input_tokens": n,
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def _id(self, prefix: str) -> str:
        return f"{prefix}{self.name}-{next(self._ids)}"

    def _embeddings(self, body: dict[str, Any], model: str) -> web.Response:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, _ in enumerate(inputs):
            vector = [0.25 * (i + 1), -0.5, 0.125]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        usage = {"prompt_tokens": self.input_tokens, "total_tokens": self.input_tokens}
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    def _whole(self, api: str, model: str, answer: tuple[str, str | None]) -> dict[str, Any]:
        text, tool = answer
        arguments = orjson.dumps(TOOL_ARGUMENTS).decode()
        output = max(1, len(text.split())) if text else 5
        if api == "chat":
            message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
            if tool:
                message["tool_calls"] = [
                    {
                        "id": self._id("call_"),
                        "type": "function",
                        "function": {"name": tool, "arguments": arguments},
                    }
                ]
            return {
                "id": self._id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if tool else "stop",
                    }
                ],
                "usage": self._usage(api, output),
                "system_fingerprint": None,
            }
        if api == "responses":
            return self._response_object(
                model, [self._response_item(text, tool, arguments)], "completed", output
            )
        content: list[dict[str, Any]] = (
            [{"type": "tool_use", "id": self._id("toolu_"), "name": tool, "input": TOOL_ARGUMENTS}]
            if tool
            else [{"type": "text", "text": text}]
        )
        return {
            "id": self._id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": self._usage(api, output),
        }

    def _response_item(
        self, text: str, tool: str | None, arguments: str, *, done: bool = True
    ) -> dict[str, Any]:
        status = "completed" if done else "in_progress"
        if tool:
            return {
                "type": "function_call",
                "id": self._id("fc_"),
                "call_id": self._id("call_"),
                "name": tool,
                "arguments": arguments if done else "",
                "status": status,
            }
        return {
            "type": "message",
            "id": self._id("msg_"),
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            if done
            else [],
        }

    def _response_object(
        self, model: str, output: list[dict[str, Any]], status: str, tokens: int | None
    ) -> dict[str, Any]:
        return {
            "id": "resp_" + self.name,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "usage": self._usage("responses", tokens) if tokens is not None else None,
        }

    # ------------------------------------------------------------------------------------ streams

    def _chat_frames(self, model: str, answer: tuple[str, str | None], body: dict[str, Any]) -> list[bytes]:
        text, tool = answer
        chunk_id, created = self._id("chatcmpl-"), int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + orjson.dumps(data) + b"\n\n"

        frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if tool:
            frames.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": self._id("call_"),
                                "type": "function",
                                "function": {"name": tool, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            arguments = orjson.dumps(TOOL_ARGUMENTS).decode()
            for piece in (arguments[:5], arguments[5:]):
                frames.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            frames.append(chunk({}, "tool_calls"))
        else:
            frames += [chunk({"content": w}) for w in _words(text)]
            frames.append(chunk({}, "stop"))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            usage = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": self._usage("chat", max(1, len(text.split())) if text else 5),
            }
            frames.append(b"data: " + orjson.dumps(usage) + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        return frames

    def _responses_frames(self, model: str, answer: tuple[str, str | None]) -> list[bytes]:
        text, tool = answer
        sequence = itertools.count()
        frames: list[bytes] = []

        def event(kind: str, **data: Any) -> None:
            payload = {"type": kind, "sequence_number": next(sequence), **data}
            frames.append(f"event: {kind}\n".encode() + b"data: " + orjson.dumps(payload) + b"\n\n")

        arguments = orjson.dumps(TOOL_ARGUMENTS).decode()
        started = self._response_item(text, tool, arguments, done=False)
        finished = {**started, "status": "completed"}
        if tool:
            finished["arguments"] = arguments
        else:
            finished["content"] = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        event("response.created", response=self._response_object(model, [], "in_progress", None))
        event("response.in_progress", response=self._response_object(model, [], "in_progress", None))
        event("response.output_item.added", output_index=0, item=started)
        if tool:
            for piece in (arguments[:5], arguments[5:]):
                event(
                    "response.function_call_arguments.delta",
                    item_id=started["id"],
                    output_index=0,
                    delta=piece,
                )
            event(
                "response.function_call_arguments.done",
                item_id=started["id"],
                output_index=0,
                arguments=arguments,
                name=tool,
            )
        else:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            event(
                "response.content_part.added",
                item_id=started["id"],
                output_index=0,
                content_index=0,
                part=part,
            )
            for word in _words(text):
                event(
                    "response.output_text.delta",
                    item_id=started["id"],
                    output_index=0,
                    content_index=0,
                    delta=word,
                    logprobs=[],
                )
            event(
                "response.output_text.done",
                item_id=started["id"],
                output_index=0,
                content_index=0,
                text=text,
                logprobs=[],
            )
            event(
                "response.content_part.done",
                item_id=started["id"],
                output_index=0,
                content_index=0,
                part={**part, "text": text},
            )
        event("response.output_item.done", output_index=0, item=finished)
        tokens = max(1, len(text.split())) if text else 5
        event("response.completed", response=self._response_object(model, [finished], "completed", tokens))
        return frames

    def _messages_frames(self, model: str, answer: tuple[str, str | None]) -> list[bytes]:
        text, tool = answer
        frames: list[bytes] = []

        def event(kind: str, **data: Any) -> None:
            frames.append(
                f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **data}) + b"\n\n"
            )

        message = {
            "id": self._id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**self._usage("messages", 1)},
        }
        event("message_start", message=message)
        if tool:
            block = {"type": "tool_use", "id": self._id("toolu_"), "name": tool, "input": {}}
            event("content_block_start", index=0, content_block=block)
            arguments = orjson.dumps(TOOL_ARGUMENTS).decode()
            for piece in (arguments[:5], arguments[5:]):
                event(
                    "content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": piece}
                )
        else:
            event("content_block_start", index=0, content_block={"type": "text", "text": ""})
            event("ping")
            for word in _words(text):
                event("content_block_delta", index=0, delta={"type": "text_delta", "text": word})
        event("content_block_stop", index=0)
        tokens = max(1, len(text.split())) if text else 5
        event(
            "message_delta",
            delta={"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
            usage={"output_tokens": tokens},
        )
        event("message_stop")
        return frames

    async def _stream(
        self,
        request: web.Request,
        api: str,
        model: str,
        answer: tuple[str, str | None],
        body: dict[str, Any],
        broken: bool,
    ) -> web.StreamResponse:
        if api == "chat":
            frames = self._chat_frames(model, answer, body)
        elif api == "responses":
            frames = self._responses_frames(model, answer)
        else:
            frames = self._messages_frames(model, answer)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for i, frame in enumerate(frames):
            if broken and i == 2:
                await asyncio.sleep(0.2)  # the gateway has sent the first events on by now
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(frame)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            elif broken:
                await asyncio.sleep(0.05)
        await response.write_eof()
        return response


@contextlib.contextmanager
def running(*standins: StandIn) -> Iterator[tuple[StandIn, ...]]:
    """Start every stand-in; stop them all however the block ends."""
    started: list[StandIn] = []
    try:
        for s in standins:
            started.append(s.start())
        yield standins
    finally:
        for s in started:
            s.stop()
