"""OpenAI Chat Completions (``POST /v1/chat/completions``) <-> the internal form.

Reading a client's request (``parse_request``), the fields are handled as follows; every other
top-level field is refused with ``TranslationError`` naming it (what the translator does not know, it
cannot promise to keep):

- ``messages``: ``system``/``developer`` messages before the first other message become the system
  prompt (the two roles are not told apart); later ones stay in place. ``tool`` messages become tool
  results of a user turn. A message's ``name`` is dropped. ``function`` messages, an assistant's
  ``function_call`` and ``audio``, and ``input_audio`` parts are refused. An assistant's
  ``reasoning_content``/``reasoning`` (the extension this module writes) is dropped: it carries no
  provider signature, so no upstream could verify it.
- Image parts: ``data:`` URLs become inline base64, other URLs stay URLs (never fetched); ``detail``
  is kept for OpenAI upstreams and dropped for Anthropic. ``file`` parts with inline ``file_data``
  become documents; by ``file_id`` they are refused (a file stored at OpenAI).
- ``tools`` of type ``function`` (``custom`` tools are refused); ``tool_choice`` ``none``/``auto``/
  ``required``/a named function (``allowed_tools`` and custom choices are refused);
  ``parallel_tool_calls``.
- ``max_completion_tokens`` (or the older ``max_tokens``), ``temperature``, ``top_p``, ``stop``,
  ``stream``, ``stream_options.include_usage``, ``reasoning_effort``, ``response_format``
  (``json_schema``; ``json_object`` is refused: the other APIs need a schema), ``verbosity``.
- ``n``: 1 (or absent) only; more choices are refused (neither other API has them).
- Refused unless at their no-op value: ``logprobs``, ``top_logprobs``, ``frequency_penalty``,
  ``presence_penalty``, ``logit_bias``, ``modalities`` other than text, ``audio``, ``functions``,
  ``function_call``, ``web_search_options``, ``moderation``.
- Kept for the Responses API, dropped for Messages (bookkeeping only): ``metadata``, ``store``,
  ``service_tier``, ``prompt_cache_key``, ``prompt_cache_retention``, ``safety_identifier``;
  ``user`` becomes Anthropic's ``metadata.user_id``.
- Dropped everywhere: ``seed`` (no other API has it), ``prediction`` (a latency hint),
  ``prompt_cache_options``, ``stream_options.include_obfuscation``.

Writing an upstream request (``build_request``): the system prompt is one leading ``system`` message;
tool results become ``tool`` messages, and an image or document inside a tool result (which a
``tool`` message cannot carry) moves to a ``user`` message right after them, introduced by a line
naming the call; tool results' ``is_error`` is dropped (the content carries the error text); thinking
blocks of earlier turns are dropped (Chat Completions has no field for them); ``max_tokens`` is sent
as ``max_completion_tokens``; a stream always asks for ``include_usage``.

Responses and streams written for a client: thinking text is sent as the ``reasoning_content``
extension of the message and of each delta (the field vLLM and DeepSeek use; the ``openai`` SDK keeps
unknown fields), its signature dropped. Stop reasons: ``stop_sequence`` and ``pause`` -> ``stop``,
``context_window`` -> ``length``, ``refusal`` -> ``content_filter``. Several text blocks of one
answer are joined into one ``content`` string, in order, with nothing between them; tool calls follow
in ``tool_calls`` whatever their place between the texts was. Usage: ``prompt_tokens`` counts every
input token, with ``prompt_tokens_details.cached_tokens`` (cache reads) and ``cache_write_tokens``.

Reading an upstream stream: deltas of several tool calls interleaved (each call's deltas not in one
run, which no known server sends) end the stream with an error rather than being reordered.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

import orjson

from agentkube.dataplane.llm.apis import API, CHAT, stream_error
from agentkube.dataplane.llm.translate import fields as f
from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.blocks import Blocks
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError
from agentkube.dataplane.llm.translate.media import (
    data_url,
    openai_document,
    openai_image,
    refuse_openai_file,
)
from agentkube.dataplane.llm.translate.sse import DONE, event_object, frame

__all__ = [
    "Decoder",
    "Encoder",
    "build_request",
    "build_response",
    "parse_request",
    "parse_response",
    "parse_usage",
    "usage_dict",
]

OPENAI_SHARED: Final = (
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
)

_HANDLED: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "reasoning_effort",
        "response_format",
        "verbosity",
        "n",
        "seed",
        "prediction",
        "prompt_cache_options",
        *OPENAI_SHARED,
    }
)
# Fields refused unless they hold the value that asks for nothing.
_NOOP: Final[dict[str, tuple[object, ...]]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "functions": (None, []),
    "function_call": (None,),
    "web_search_options": (None,),
    "moderation": (None,),
}
_KNOWN: Final = _HANDLED | frozenset(_NOOP)

_FINISH_IN: Final[dict[str, ir.StopReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_FINISH_OUT: Final[dict[ir.StopReason, str]] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "pause": "stop",
    "length": "length",
    "context_window": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}


# --- requests -------------------------------------------------------------------------------------


def parse_request(body: dict[str, Any], dst: API) -> ir.Request:
    """A client's Chat Completions request as the internal form (``dst`` only names the target in errors)."""
    for key, noop in _NOOP.items():
        if key in body and body[key] not in noop:
            raise TranslationError(key, f"is not supported when translating to {dst}; remove it")
    f.check_known(body, _KNOWN, "", dst)
    n = f.integer(body, "n")
    if n not in (None, 1):
        raise TranslationError("n", f"only 1 choice is supported by {dst}; send {n} requests instead")

    req = ir.Request(model=f.string(body, "model") or "", messages=[])
    _parse_messages(body, req)
    for path, tool in f.objects(body, "tools"):
        req.tools.append(_parse_tool(tool, path))
    req.tool_choice = _parse_tool_choice(body.get("tool_choice"))
    req.parallel_tool_calls = f.boolean(body, "parallel_tool_calls")
    req.max_tokens = f.integer(body, "max_completion_tokens", minimum=0)
    if req.max_tokens is None:
        req.max_tokens = f.integer(body, "max_tokens", minimum=0)
    req.temperature = f.number(body, "temperature")
    req.top_p = f.number(body, "top_p")
    req.stop = f.strings(body, "stop")
    req.stream = bool(f.boolean(body, "stream"))
    options = f.optional_obj(body, "stream_options")
    if options is not None:
        req.include_usage = bool(f.boolean(options, "include_usage", "stream_options"))
    req.user = f.string(body, "user")
    effort = f.string(body, "reasoning_effort")
    if effort is not None:
        req.reasoning = ir.Reasoning(effort=effort)
    req.output_format = _parse_response_format(f.optional_obj(body, "response_format"))
    req.verbosity = f.string(body, "verbosity")
    for key in OPENAI_SHARED:
        if body.get(key) is not None:
            req.openai[key] = body[key]
    return req


def _parse_messages(body: dict[str, Any], req: ir.Request) -> None:
    if "messages" not in body:
        raise TranslationError("messages", "is required")
    leading = True
    for path, message in f.objects(body, "messages"):
        role = f.text(message, "role", path)
        content = message.get("content")
        if role in ("system", "developer"):
            texts = f.texts(content, f.at(path, "content"), "part")
            if leading:
                req.system.extend(texts)
            else:
                req.messages.append(ir.Message("system", list(texts)))
            continue
        leading = False
        if role == "user":
            req.messages.append(ir.Message("user", _user_parts(content, f.at(path, "content"))))
        elif role == "assistant":
            req.messages.append(ir.Message("assistant", _assistant_parts(message, path)))
        elif role == "tool":
            call_id = f.text(message, "tool_call_id", path)
            texts = f.texts(content, f.at(path, "content"), "part")
            result = ir.ToolResult(call_id, list(texts))
            last = req.messages[-1] if req.messages else None
            if (
                last is not None
                and last.role == "user"
                and all(isinstance(p, ir.ToolResult) for p in last.parts)
            ):
                last.parts.append(result)
            else:
                req.messages.append(ir.Message("user", [result]))
        else:
            raise TranslationError(
                f.at(path, "role"),
                f"{role!r} is not supported (use system, developer, user, assistant or tool)",
            )


def _user_parts(content: Any, path: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)]
    parts: list[ir.Part] = []
    for where, part in f.elements(content, path, "a string or an array of content parts"):
        kind = part.get("type")
        if kind == "text":
            parts.append(ir.Text(f.text(part, "text", where)))
        elif kind == "image_url":
            image = f.obj(part, "image_url", where)
            parts.append(
                openai_image(f.text(image, "url", f.at(where, "image_url")), f.string(image, "detail"))
            )
        elif kind == "file":
            parts.append(_parse_file(f.obj(part, "file", where), f.at(where, "file")))
        else:
            raise TranslationError(
                f.at(where, "type"), f"{kind!r} parts are not supported (use text, image_url, file)"
            )
    return parts


def _parse_file(file: dict[str, Any], path: str) -> ir.Document:
    refuse_openai_file(file, path)
    data = f.string(file, "file_data", path)
    if data is None:
        raise TranslationError(f.at(path, "file_data"), "is required")
    return openai_document(data, f.string(file, "filename", path))


def _assistant_parts(message: dict[str, Any], path: str) -> list[ir.Part]:
    for key in ("function_call", "audio"):
        if message.get(key) is not None:
            raise TranslationError(f.at(path, key), "is not supported (use tool_calls)")
    parts: list[ir.Part] = []
    content = message.get("content")
    where = f.at(path, "content")
    if isinstance(content, str):
        if content:
            parts.append(ir.Text(content))
    elif content is not None:
        for at, part in f.elements(content, where, "a string, an array of parts or null"):
            if part.get("type") == "text":
                parts.append(ir.Text(f.text(part, "text", at)))
            elif part.get("type") == "refusal":
                parts.append(ir.Refusal(f.text(part, "refusal", at)))
            else:
                raise TranslationError(f.at(at, "type"), "assistant content parts must be text or refusal")
    refusal = f.string(message, "refusal", path)
    if refusal:
        parts.append(ir.Refusal(refusal))
    for call_path, call in f.objects(message, "tool_calls", path):
        if call.get("type", "function") != "function":
            raise TranslationError(f.at(call_path, "type"), "only function tool calls are supported")
        function = f.obj(call, "function", call_path)
        fpath = f.at(call_path, "function")
        parts.append(
            ir.ToolCall(
                id=f.text(call, "id", call_path),
                name=f.text(function, "name", fpath),
                arguments=f.string(function, "arguments", fpath) or "",
            )
        )
    return parts


def _parse_tool(tool: dict[str, Any], path: str) -> ir.Tool:
    if tool.get("type") != "function":
        raise TranslationError(f.at(path, "type"), "only function tools are supported")
    function = f.obj(tool, "function", path)
    fpath = f.at(path, "function")
    return ir.Tool(
        name=f.text(function, "name", fpath),
        description=f.string(function, "description", fpath),
        parameters=f.optional_obj(function, "parameters", fpath) or {"type": "object", "properties": {}},
        strict=f.boolean(function, "strict", fpath),
    )


def _parse_tool_choice(choice: Any) -> ir.ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return choice  # type: ignore[no-any-return]
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = f.obj(choice, "function", "tool_choice")
        return ir.NamedTool(f.text(function, "name", "tool_choice.function"))
    raise TranslationError("tool_choice", "must be none, auto, required or a named function")


def _parse_response_format(fmt: dict[str, Any] | None) -> ir.OutputFormat | None:
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        spec = f.obj(fmt, "json_schema", "response_format")
        where = "response_format.json_schema"
        return ir.OutputFormat(
            schema=f.optional_obj(spec, "schema", where) or {"type": "object"},
            name=f.string(spec, "name", where) or "output",
            strict=f.boolean(spec, "strict", where),
            description=f.string(spec, "description", where),
        )
    raise TranslationError(
        "response_format.type", f"{fmt.get('type')!r} cannot be translated; use json_schema with a schema"
    )


def build_request(req: ir.Request, model: str) -> dict[str, Any]:
    """The internal form as a Chat Completions request for ``model``."""
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": _text_content(req.system)})
    for message in req.messages:
        _build_message(message, messages)
    body: dict[str, Any] = {"model": model, "messages": messages}
    if req.tools:
        body["tools"] = [_build_tool(tool) for tool in req.tools]
        if req.tool_choice is not None:
            body["tool_choice"] = _build_tool_choice(req.tool_choice)
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_completion_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = req.stop
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.user is not None:
        body["user"] = req.user
    effort = reasoning_effort(req.reasoning)
    if effort is not None:
        body["reasoning_effort"] = effort
    if req.output_format is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": _json_schema(req.output_format)}
    if req.verbosity is not None:
        body["verbosity"] = req.verbosity
    body.update(req.openai)
    return body


def reasoning_effort(reasoning: ir.Reasoning | None) -> str | None:
    """OpenAI's effort for what the client asked: its own effort, or one from Anthropic's budget.

    ``thinking.type: adaptive`` without an effort and ``thinking.type: disabled`` send none (a model
    that does not reason rejects the field); a budget maps to low (< 4,096 tokens), medium
    (< 16,384) or high.
    """
    if reasoning is None:
        return None
    if reasoning.effort is not None:
        return reasoning.effort
    if reasoning.mode == "enabled" and reasoning.budget_tokens is not None:
        if reasoning.budget_tokens < 4096:
            return "low"
        return "medium" if reasoning.budget_tokens < 16384 else "high"
    return None


def _json_schema(fmt: ir.OutputFormat) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    if fmt.description is not None:
        spec["description"] = fmt.description
    return spec


def _text_content(texts: list[ir.Text]) -> str | list[dict[str, Any]]:
    if len(texts) == 1:
        return texts[0].text
    return [{"type": "text", "text": t.text} for t in texts]


def _build_part(part: ir.Content) -> dict[str, Any]:
    if isinstance(part, ir.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.Image):
        url = part.url if part.url is not None else data_url(part.media_type or "image/png", part.data or "")
        image: dict[str, Any] = {"url": url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if part.data is None:
        raise TranslationError(
            "messages", "a document by URL cannot be sent to openai-chat; send its data inline"
        )
    file: dict[str, Any] = {"file_data": data_url(part.media_type, part.data)}
    file["filename"] = part.filename or "document.pdf"
    return {"type": "file", "file": file}


def _build_message(message: ir.Message, out: list[dict[str, Any]]) -> None:
    if message.role == "system":
        system = [p for p in message.parts if isinstance(p, ir.Text)]
        out.append({"role": "system", "content": _text_content(system) if system else ""})
        return
    if message.role == "assistant":
        texts = [p.text for p in message.parts if isinstance(p, ir.Text)]
        refusals = [p.text for p in message.parts if isinstance(p, ir.Refusal)]
        calls = [p for p in message.parts if isinstance(p, ir.ToolCall)]
        if not (texts or refusals or calls):
            return  # only thinking, which Chat Completions cannot carry
        content: Any = None
        if len(texts) == 1:
            content = texts[0]
        elif texts:
            content = [{"type": "text", "text": t} for t in texts]
        assistant: dict[str, Any] = {"role": "assistant", "content": content}
        if refusals:
            assistant["refusal"] = "".join(refusals)
        if calls:
            assistant["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
                for c in calls
            ]
        out.append(assistant)
        return
    moved: list[dict[str, Any]] = []  # media from tool results, which tool messages cannot carry
    for part in message.parts:
        if isinstance(part, ir.ToolResult):
            output = "\n\n".join(c.text for c in part.content if isinstance(c, ir.Text))
            out.append({"role": "tool", "tool_call_id": part.call_id, "content": output})
            media = [c for c in part.content if not isinstance(c, ir.Text)]
            if media:
                moved.append({"type": "text", "text": f"The output of tool call {part.call_id} includes:"})
                moved.extend(_build_part(m) for m in media)
    rest = [p for p in message.parts if not isinstance(p, ir.ToolResult)]
    user: list[dict[str, Any]] = moved
    for part in rest:
        if isinstance(part, ir.Text | ir.Image | ir.Document):
            user.append(_build_part(part))
        elif isinstance(part, ir.Refusal):
            user.append({"type": "text", "text": part.text})
    if not user:
        return
    if len(user) == 1 and user[0]["type"] == "text":
        out.append({"role": "user", "content": user[0]["text"]})
    else:
        out.append({"role": "user", "content": user})


def _build_tool(tool: ir.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _build_tool_choice(choice: ir.ToolChoice) -> Any:
    if isinstance(choice, ir.NamedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


# --- responses ------------------------------------------------------------------------------------


def parse_usage(usage: Any) -> ir.Usage | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return ir.Usage(
        input_tokens=f.count(usage.get("prompt_tokens")),
        output_tokens=f.count(usage.get("completion_tokens")),
        cache_read_tokens=f.count(prompt.get("cached_tokens")) if isinstance(prompt, dict) else 0,
        cache_write_tokens=f.count(prompt.get("cache_write_tokens")) if isinstance(prompt, dict) else 0,
        reasoning_tokens=(
            completion.get("reasoning_tokens")
            if isinstance(completion, dict) and isinstance(completion.get("reasoning_tokens"), int)
            else None
        ),
    )


def usage_dict(usage: ir.Usage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }
    if usage.cache_write_tokens:
        out["prompt_tokens_details"]["cache_write_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def usage_only(data: bytes) -> bool:
    """Whether a stream chunk is the usage chunk ``include_usage`` adds (no choices, usage set)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and isinstance(chunk.get("usage"), dict)


def parse_response(body: dict[str, Any]) -> ir.Response:
    """An upstream's chat completion as the internal form (its first choice)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("bad_gateway", "the upstream's chat completion has no choices")
    choice = choices[0]
    message = f.as_obj(choice.get("message"))
    parts: list[ir.Part] = []
    thinking = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(thinking, str) and thinking:
        parts.append(ir.Thinking(thinking))
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(ir.Text(content))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(ir.Refusal(refusal))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            parts.append(
                ir.ToolCall(
                    id=str(call.get("id") or _call_id()),
                    name=str(function.get("name") or ""),
                    arguments=str(function.get("arguments") or ""),
                )
            )
    stop = _FINISH_IN.get(str(choice.get("finish_reason")), "stop")
    return ir.Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=parts,
        stop=stop,
        usage=parse_usage(body.get("usage")) or ir.Usage(),
        created=body.get("created") if isinstance(body.get("created"), int) else None,
    )


def completion_id(upstream_id: str) -> str:
    if upstream_id.startswith("chatcmpl-"):
        return upstream_id
    return "chatcmpl-" + (upstream_id or uuid.uuid4().hex)


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def build_response(resp: ir.Response, model: str) -> dict[str, Any]:
    """The internal form as the chat completion a Chat Completions client expects."""
    texts = [p.text for p in resp.parts if isinstance(p, ir.Text)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    refusals = [p.text for p in resp.parts if isinstance(p, ir.Refusal)]
    message["refusal"] = "".join(refusals) if refusals else None
    calls = [p for p in resp.parts if isinstance(p, ir.ToolCall)]
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    thinking = [p.text for p in resp.parts if isinstance(p, ir.Thinking) and p.text]
    if thinking:
        message["reasoning_content"] = "\n\n".join(thinking)
    return {
        "id": completion_id(resp.id),
        "object": "chat.completion",
        "created": resp.created if resp.created is not None else int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _FINISH_OUT[resp.stop], "logprobs": None}
        ],
        "usage": usage_dict(resp.usage),
    }


# --- streams --------------------------------------------------------------------------------------


class Decoder:
    """An upstream's Chat Completions stream (``data:`` chunks, then ``[DONE]``) as internal events.

    The finish is held back until the usage chunk that ``include_usage`` adds after it (or until
    ``[DONE]``/the end), so ``Finish`` carries the usage.
    """

    def __init__(self) -> None:
        self._started = False
        self._blocks = Blocks()
        self._tools: dict[int, tuple[str, str]] = {}  # chat tool index -> (id, name)
        self._stop: ir.StopReason | None = None
        self._usage: ir.Usage | None = None
        self._done = False

    def feed(self, event: str | None, data: bytes) -> list[ir.Event]:
        if self._done:
            return []
        out: list[ir.Event] = []
        if data.strip() == b"[DONE]":
            self._end(out)
            return out
        chunk = event_object(data, "chunk")
        if isinstance(chunk, str):
            return self._fail(out, chunk)
        if chunk.get("error") is not None:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            self._done = True
            out.append(
                ir.Error(
                    "api_error",
                    str(error.get("message") or "upstream stream error"),
                    code=_opt(error, "code"),
                )
            )
            return out
        if not self._started:
            self._started = True
            out.append(ir.Start(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or "")))
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            self._usage = usage
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and not self._delta(delta, out):
                return self._fail(out, "the upstream interleaved the deltas of several tool calls")
            finish = choice.get("finish_reason")
            if finish is not None:
                self._blocks.close(out)
                self._stop = _FINISH_IN.get(str(finish), "stop")
        if self._stop is not None and self._usage is not None:
            self._end(out)
        return out

    def _delta(self, delta: dict[str, Any], out: list[ir.Event]) -> bool:
        thinking = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thinking, str) and thinking:
            out.append(ir.ThinkingDelta(self._text_block("thinking", out), thinking))
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(ir.TextDelta(self._text_block("text", out), content))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            out.append(ir.RefusalDelta(self._text_block("refusal", out), refusal))
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            position = call.get("index", 0)
            function = f.as_obj(call.get("function"))
            if position not in self._tools:
                self._tools[position] = (str(call.get("id") or _call_id()), str(function.get("name") or ""))
            entered = self._blocks.enter(("tool", position), out)
            if entered is None:
                return False
            index, new = entered
            if new:
                call_id, name = self._tools[position]
                out.append(ir.ToolCallStart(index, call_id, name))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                out.append(ir.ToolArgsDelta(index, arguments))
        return True

    def _text_block(self, kind: str, out: list[ir.Event]) -> int:
        """The open block if it is of ``kind``, else a new one (text never interleaves with itself)."""
        key = self._blocks.open_key
        if isinstance(key, tuple) and key[0] == kind:
            return self._blocks.index
        entered = self._blocks.enter((kind, object()), out)
        assert entered is not None
        return entered[0]

    def _end(self, out: list[ir.Event]) -> None:
        if self._done:
            return
        self._blocks.close(out)
        if self._stop is None:
            self._fail(out, "the upstream's stream ended before the answer finished")
            return
        self._done = True
        out.append(ir.Finish(self._stop, self._usage))

    def _fail(self, out: list[ir.Event], message: str) -> list[ir.Event]:
        self._blocks.close(out)
        self._done = True
        out.append(ir.Error("bad_gateway", message))
        return out

    def finish(self) -> list[ir.Event]:
        out: list[ir.Event] = []
        self._end(out)
        return out


def _opt(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return str(value) if value is not None else None


class Encoder:
    """Internal stream events as the Chat Completions chunks a client expects, ``data: [DONE]`` last.

    With ``include_usage`` (the client's ``stream_options.include_usage``) every chunk carries
    ``"usage": null`` and a last chunk with no choices carries the usage, as OpenAI sends them.
    """

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = ""
        self._created = int(time.time())
        self._tools: dict[int, int] = {}  # internal block index -> chat tool-call index
        self._finished = False
        self._failed = False
        self._started = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return frame(chunk)

    def encode(self, event: ir.Event) -> list[bytes]:
        if self._finished or self._failed:
            return []
        if isinstance(event, ir.Start):
            self._started = True
            self._id = completion_id(event.id)
            return [self._chunk({"role": "assistant", "content": ""})]
        if not self._started and not isinstance(event, ir.Error):
            self._started = True
            self._id = completion_id("")
        if isinstance(event, ir.TextDelta):
            return [self._chunk({"content": event.text})]
        if isinstance(event, ir.RefusalDelta):
            return [self._chunk({"refusal": event.text})]
        if isinstance(event, ir.ThinkingDelta):
            return [self._chunk({"reasoning_content": event.text})]
        if isinstance(event, ir.ToolCallStart):
            position = self._tools[event.index] = len(self._tools)
            call = {
                "index": position,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if isinstance(event, ir.ToolArgsDelta):
            call = {"index": self._tools.get(event.index, 0), "function": {"arguments": event.delta}}
            return [self._chunk({"tool_calls": [call]})]
        if isinstance(event, ir.Finish):
            self._finished = True
            frames = [self._chunk({}, _FINISH_OUT[event.stop])]
            if self._include_usage:
                frames.append(
                    frame(
                        {
                            "id": self._id,
                            "object": "chat.completion.chunk",
                            "created": self._created,
                            "model": self._model,
                            "choices": [],
                            "usage": usage_dict(event.usage or ir.Usage()),
                        }
                    )
                )
            return frames
        if isinstance(event, ir.Error):
            self._failed = True
            return [
                stream_error(
                    CHAT, UpstreamError(event.kind, event.message, param=event.param, code=event.code)
                )
            ]
        return []  # signatures, redacted thinking and block ends have no Chat Completions form

    def finish(self) -> list[bytes]:
        if self._finished:
            return [DONE]
        if self._failed:
            return []
        self._failed = True
        return [
            stream_error(
                CHAT, UpstreamError("bad_gateway", "the upstream's stream ended before the answer finished")
            )
        ]
