"""OpenAI Responses (``POST /v1/responses``) <-> the internal form.

Reading a client's request (``parse_request``); every other top-level field is refused with
``TranslationError`` naming it:

- ``input``: a string (one user message) or items. Messages of role ``system``/``developer`` before
  any other item, and ``instructions`` ahead of them, are the system prompt; later ones stay in
  place. Content parts ``input_text``, ``input_image`` (by URL or ``data:`` URL; by ``file_id`` it is
  refused), ``input_file`` (inline ``file_data`` or ``file_url``; ``file_id`` refused), and for
  assistant messages ``output_text`` and ``refusal``. ``function_call`` and ``function_call_output``
  items are the tool-call round trip. ``reasoning`` items carrying ``encrypted_content`` become
  thinking blocks with that signature (this module writes Anthropic's signature there, so a
  Responses client can send thinking back); without it they are dropped: OpenAI's own reasoning
  cannot be read by another provider. Every other item type (``item_reference``, hosted-tool calls,
  ...) is refused.
- ``tools`` of type ``function`` (hosted tools such as ``web_search`` or ``file_search`` are
  refused: only OpenAI runs them); ``tool_choice`` ``none``/``auto``/``required``/a named function;
  ``parallel_tool_calls``.
- ``max_output_tokens``, ``temperature``, ``top_p``, ``stream``, ``reasoning`` (``effort``;
  ``summary``), ``text.format`` (``json_schema``; ``json_object`` refused), ``text.verbosity``.
- Refused: ``previous_response_id`` and ``conversation`` (state kept at OpenAI that the gateway does
  not have), ``prompt`` (stored prompt templates), ``background``, ``max_tool_calls``,
  ``top_logprobs``, ``context_management``, ``moderation``.
- Kept for Chat Completions, dropped for Messages: ``metadata``, ``store``, ``service_tier``,
  ``prompt_cache_key``, ``prompt_cache_retention``, ``safety_identifier``; ``user`` as for Chat.
- Dropped: ``include`` (asks for extras this translation does not produce), ``truncation`` (the
  other APIs answer an over-long input with an error instead), ``stream_options``,
  ``prompt_cache_options``.

Writing an upstream request (``build_request``): the system prompt goes in ``instructions``, its
blocks joined by a blank line; a ``stop`` is refused (the Responses API has no stop sequences); tool
results become ``function_call_output`` items (images and documents included, ``is_error``
dropped); thinking blocks of earlier turns are dropped (a reasoning item OpenAI accepts needs ids and
encrypted content only OpenAI issues); each assistant text block becomes its own assistant message;
``store`` is ``false`` unless the client's Chat request asked to store (the gateway keeps no state,
and nothing it sends relies on stored items).

Responses written for a client: each text block is one ``message`` item holding one ``output_text``;
stop reasons ``length``/``context_window`` -> ``status: incomplete`` with reason
``max_output_tokens``, ``content_filter``/``refusal`` -> ``incomplete`` with ``content_filter``,
everything else ``completed``; thinking becomes a ``reasoning`` item whose summary is the thinking
text and whose ``encrypted_content`` is the provider's signature (redacted thinking: the data behind
a ``redacted:`` prefix, no summary). The response echoes no request fields (``tools: []``,
``tool_choice: auto``, ``parallel_tool_calls: true``, ``instructions: null``): translation sees only
the upstream's answer. Usage keeps input, output, cached, cache-write and reasoning tokens.

Reading an upstream stream: summary parts and reasoning text of one reasoning item are one thinking
block, parts joined by a blank line.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

from agentkube.dataplane.llm.apis import API, RESPONSES, stream_error
from agentkube.dataplane.llm.translate import fields as f
from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.blocks import Blocks
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError, kind_for
from agentkube.dataplane.llm.translate.media import (
    data_url,
    openai_document,
    openai_image,
    refuse_openai_file,
)
from agentkube.dataplane.llm.translate.openai_chat import OPENAI_SHARED, reasoning_effort
from agentkube.dataplane.llm.translate.sse import event_object, frame

__all__ = [
    "REDACTED_PREFIX",
    "Decoder",
    "Encoder",
    "build_request",
    "build_response",
    "parse_request",
    "parse_response",
]

REDACTED_PREFIX: Final = "redacted:"

_HANDLED: Final = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "text",
        "user",
        "include",
        "truncation",
        "stream_options",
        "prompt_cache_options",
        *OPENAI_SHARED,
    }
)
_NOOP: Final[dict[str, tuple[object, ...]]] = {
    "previous_response_id": (None,),
    "conversation": (None,),
    "prompt": (None,),
    "background": (None, False),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "context_management": (None, []),
    "moderation": (None,),
}
_KNOWN: Final = _HANDLED | frozenset(_NOOP)


# --- requests -------------------------------------------------------------------------------------


def parse_request(body: dict[str, Any], dst: API) -> ir.Request:
    """A client's Responses request as the internal form (``dst`` only names the target in errors)."""
    for key, noop in _NOOP.items():
        if key in body and body[key] not in noop:
            raise TranslationError(key, f"is not supported when translating to {dst}; remove it")
    f.check_known(body, _KNOWN, "", dst)
    req = ir.Request(model=f.string(body, "model") or "", messages=[])
    instructions = f.string(body, "instructions")
    if instructions:
        req.system.append(ir.Text(instructions))
    _parse_input(body.get("input"), req)
    for path, tool in f.objects(body, "tools"):
        if tool.get("type") != "function":
            raise TranslationError(
                f.at(path, "type"), f"{tool.get('type')!r} is a hosted tool only OpenAI runs"
            )
        req.tools.append(
            ir.Tool(
                name=f.text(tool, "name", path),
                description=f.string(tool, "description", path),
                parameters=f.optional_obj(tool, "parameters", path) or {"type": "object", "properties": {}},
                strict=f.boolean(tool, "strict", path),
            )
        )
    choice = body.get("tool_choice")
    if choice in ("auto", "none", "required"):
        req.tool_choice = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        req.tool_choice = ir.NamedTool(f.text(choice, "name", "tool_choice"))
    elif choice is not None:
        raise TranslationError("tool_choice", "must be none, auto, required or a named function")
    req.parallel_tool_calls = f.boolean(body, "parallel_tool_calls")
    req.max_tokens = f.integer(body, "max_output_tokens", minimum=0)
    req.temperature = f.number(body, "temperature")
    req.top_p = f.number(body, "top_p")
    req.stream = bool(f.boolean(body, "stream"))
    req.include_usage = True
    req.user = f.string(body, "user")
    reasoning = f.optional_obj(body, "reasoning")
    if reasoning is not None:
        summary = f.string(reasoning, "summary", "reasoning") or f.string(
            reasoning, "generate_summary", "reasoning"
        )
        req.reasoning = ir.Reasoning(effort=f.string(reasoning, "effort", "reasoning"), summary=summary)
    text = f.optional_obj(body, "text")
    if text is not None:
        req.verbosity = f.string(text, "verbosity", "text")
        fmt = f.optional_obj(text, "format", "text")
        if fmt is not None and fmt.get("type") == "json_schema":
            req.output_format = ir.OutputFormat(
                schema=f.optional_obj(fmt, "schema", "text.format") or {"type": "object"},
                name=f.string(fmt, "name", "text.format") or "output",
                strict=f.boolean(fmt, "strict", "text.format"),
                description=f.string(fmt, "description", "text.format"),
            )
        elif fmt is not None and fmt.get("type") != "text":
            raise TranslationError(
                "text.format.type", f"{fmt.get('type')!r} cannot be translated; use json_schema with a schema"
            )
    for key in OPENAI_SHARED:
        if body.get(key) is not None:
            req.openai[key] = body[key]
    return req


def _append(req: ir.Request, role: ir.Role, part: ir.Part) -> None:
    """Add ``part`` to the last message if of ``role`` (user text starts a new one), else to a new one."""
    last = req.messages[-1] if req.messages else None
    joinable = last is not None and last.role == role
    if joinable and role == "user":
        # Tool results join tool results; user content starts its own turn.
        joinable = isinstance(part, ir.ToolResult) and all(isinstance(p, ir.ToolResult) for p in last.parts)  # type: ignore[union-attr]
    if joinable:
        last.parts.append(part)  # type: ignore[union-attr]
    else:
        req.messages.append(ir.Message(role, [part]))


def _parse_input(value: Any, req: ir.Request) -> None:
    if value is None:
        raise TranslationError("input", "is required")
    if isinstance(value, str):
        req.messages.append(ir.Message("user", [ir.Text(value)]))
        return
    leading = True
    for path, item in f.elements(value, "input", "a string or an array of items"):
        kind = item.get("type", "message")
        if kind == "message":
            role = f.text(item, "role", path)
            content = item.get("content")
            where = f.at(path, "content")
            if role in ("system", "developer"):
                texts = [p for p in _content(content, where, role) if isinstance(p, ir.Text)]
                if leading:
                    req.system.extend(texts)
                else:
                    req.messages.append(ir.Message("system", list(texts)))
                continue
            leading = False
            if role == "user":
                req.messages.append(ir.Message("user", _content(content, where, role)))
            elif role == "assistant":
                for part in _content(content, where, role):
                    _append(req, "assistant", part)
            else:
                raise TranslationError(f.at(path, "role"), f"{role!r} is not supported")
            continue
        leading = False
        if kind == "function_call":
            call = ir.ToolCall(
                id=f.text(item, "call_id", path),
                name=f.text(item, "name", path),
                arguments=f.string(item, "arguments", path) or "",
            )
            _append(req, "assistant", call)
        elif kind == "function_call_output":
            call_id = f.text(item, "call_id", path)
            _append(req, "user", ir.ToolResult(call_id, _output(item.get("output"), f.at(path, "output"))))
        elif kind == "reasoning":
            thinking = _parse_reasoning_item(item, path)
            if thinking is not None:
                _append(req, "assistant", thinking)
        else:
            raise TranslationError(f.at(path, "type"), f"{kind!r} items cannot be translated to another API")


def _parse_reasoning_item(item: dict[str, Any], path: str) -> ir.Part | None:
    signature = f.string(item, "encrypted_content", path)
    if not signature:
        return None
    if signature.startswith(REDACTED_PREFIX):
        return ir.RedactedThinking(signature[len(REDACTED_PREFIX) :])
    texts = [
        str(part.get("text") or "")
        for part in (item.get("content") or item.get("summary") or [])
        if isinstance(part, dict)
    ]
    return ir.Thinking("\n\n".join(texts), signature)


def _content(content: Any, path: str, role: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)] if content or role == "user" else []
    parts: list[ir.Part] = []
    for where, part in f.elements(content, path, "a string or an array of content parts"):
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(ir.Text(f.text(part, "text", where)))
        elif kind == "refusal":
            parts.append(ir.Refusal(f.text(part, "refusal", where)))
        elif kind == "input_image":
            parts.append(_parse_image(part, where))
        elif kind == "input_file":
            parts.append(_parse_file(part, where))
        else:
            raise TranslationError(f.at(where, "type"), f"{kind!r} parts cannot be translated to another API")
    return parts


def _parse_image(part: dict[str, Any], path: str) -> ir.Image:
    refuse_openai_file(part, path)
    url = f.string(part, "image_url", path)
    if url is None:
        raise TranslationError(f.at(path, "image_url"), "is required")
    return openai_image(url, f.string(part, "detail", path))


def _parse_file(part: dict[str, Any], path: str) -> ir.Document:
    refuse_openai_file(part, path)
    filename = f.string(part, "filename", path)
    url = f.string(part, "file_url", path)
    if url is not None:
        return ir.Document(url=url, filename=filename)
    data = f.string(part, "file_data", path)
    if data is None:
        raise TranslationError(f.at(path, "file_data"), "is required (or file_url)")
    return openai_document(data, filename)


def _output(output: Any, path: str) -> list[ir.Content]:
    if isinstance(output, str):
        return [ir.Text(output)] if output else []
    if not isinstance(output, list):
        raise TranslationError(path, "must be a string or an array of content parts")
    parts: list[ir.Content] = []
    for part in _content(output, path, "user"):
        if isinstance(part, ir.Text | ir.Image | ir.Document):
            parts.append(part)
    return parts


def build_request(req: ir.Request, model: str) -> dict[str, Any]:
    """The internal form as a Responses request for ``model``."""
    if req.stop:
        raise TranslationError("stop", f"{RESPONSES} has no stop sequences; remove them")
    body: dict[str, Any] = {"model": model, "input": _build_input(req.messages)}
    if req.system:
        body["instructions"] = "\n\n".join(t.text for t in req.system)
    if req.tools:
        body["tools"] = [_build_tool(t) for t in req.tools]
        if req.tool_choice is not None:
            choice = req.tool_choice
            body["tool_choice"] = (
                {"type": "function", "name": choice.name} if isinstance(choice, ir.NamedTool) else choice
            )
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stream:
        body["stream"] = True
    if req.user is not None:
        body["user"] = req.user
    effort = reasoning_effort(req.reasoning)
    if effort is not None or (req.reasoning is not None and req.reasoning.summary is not None):
        reasoning: dict[str, Any] = {}
        if effort is not None:
            reasoning["effort"] = effort
        if req.reasoning is not None and req.reasoning.summary is not None:
            reasoning["summary"] = req.reasoning.summary
        body["reasoning"] = reasoning
    text: dict[str, Any] = {}
    if req.output_format is not None:
        fmt: dict[str, Any] = {
            "type": "json_schema",
            "name": req.output_format.name,
            "schema": req.output_format.schema,
        }
        if req.output_format.strict is not None:
            fmt["strict"] = req.output_format.strict
        if req.output_format.description is not None:
            fmt["description"] = req.output_format.description
        text["format"] = fmt
    if req.verbosity is not None:
        text["verbosity"] = req.verbosity
    if text:
        body["text"] = text
    body["store"] = False
    body.update(req.openai)
    return body


def _build_tool(tool: ir.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "function",
        "name": tool.name,
        "parameters": tool.parameters,
        "strict": tool.strict if tool.strict is not None else False,
    }
    if tool.description is not None:
        out["description"] = tool.description
    return out


def _input_part(part: ir.Content) -> dict[str, Any]:
    if isinstance(part, ir.Text):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ir.Image):
        url = part.url if part.url is not None else data_url(part.media_type or "image/png", part.data or "")
        return {"type": "input_image", "image_url": url, "detail": part.detail or "auto"}
    file: dict[str, Any] = {"type": "input_file", "filename": part.filename or "document.pdf"}
    if part.url is not None:
        file["file_url"] = part.url
    else:
        file["file_data"] = data_url(part.media_type, part.data or "")
    return file


def _build_input(messages: list[ir.Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            text = "\n\n".join(p.text for p in message.parts if isinstance(p, ir.Text))
            items.append({"type": "message", "role": "system", "content": text})
        elif message.role == "assistant":
            for part in message.parts:
                if isinstance(part, ir.Text | ir.Refusal) and part.text:
                    items.append({"type": "message", "role": "assistant", "content": part.text})
                elif isinstance(part, ir.ToolCall):
                    items.append(
                        {
                            "type": "function_call",
                            "call_id": part.id,
                            "name": part.name,
                            "arguments": part.arguments or "{}",
                        }
                    )
        else:
            content: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, ir.ToolResult):
                    output: Any
                    if all(isinstance(c, ir.Text) for c in part.content):
                        output = "\n\n".join(c.text for c in part.content if isinstance(c, ir.Text))
                    else:
                        output = [_input_part(c) for c in part.content]
                    items.append({"type": "function_call_output", "call_id": part.call_id, "output": output})
                elif isinstance(part, ir.Text | ir.Image | ir.Document):
                    content.append(_input_part(part))
                elif isinstance(part, ir.Refusal):
                    content.append({"type": "input_text", "text": part.text})
            if content:
                items.append({"type": "message", "role": "user", "content": content})
    return items


# --- responses ------------------------------------------------------------------------------------


def parse_usage(usage: Any) -> ir.Usage | None:
    if not isinstance(usage, dict):
        return None
    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    inputs = inputs if isinstance(inputs, dict) else {}
    outputs = outputs if isinstance(outputs, dict) else {}
    reasoning = outputs.get("reasoning_tokens")
    return ir.Usage(
        input_tokens=f.count(usage.get("input_tokens")),
        output_tokens=f.count(usage.get("output_tokens")),
        cache_read_tokens=f.count(inputs.get("cached_tokens")),
        cache_write_tokens=f.count(inputs.get("cache_write_tokens")),
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
    )


def usage_dict(usage: ir.Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
        "total_tokens": usage.total_tokens,
    }


def _item_parts(item: dict[str, Any]) -> list[ir.Part]:
    kind = item.get("type")
    if kind == "message":
        parts: list[ir.Part] = []
        for part in item.get("content") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text":
                parts.append(ir.Text(str(part.get("text") or "")))
            elif part.get("type") == "refusal":
                parts.append(ir.Refusal(str(part.get("refusal") or "")))
        return parts
    if kind == "function_call":
        return [
            ir.ToolCall(
                id=str(item.get("call_id") or item.get("id") or ""),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or ""),
            )
        ]
    if kind == "reasoning":
        text = _reasoning_text(item)
        signature = item.get("encrypted_content")
        if isinstance(signature, str) and signature.startswith(REDACTED_PREFIX):
            return [ir.RedactedThinking(signature[len(REDACTED_PREFIX) :])]
        if text:
            return [ir.Thinking(text, signature if isinstance(signature, str) and signature else None)]
    return []


def _reasoning_text(item: dict[str, Any]) -> str:
    parts = item.get("content") or item.get("summary") or []
    return "\n\n".join(str(p.get("text") or "") for p in parts if isinstance(p, dict))


def _stop(status: Any, reason: Any, has_calls: bool) -> ir.StopReason:
    if status == "incomplete":
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def parse_response(body: dict[str, Any]) -> ir.Response:
    """An upstream's response object as the internal form; a ``failed`` one raises its error."""
    if body.get("status") == "failed":
        raise _failure(body.get("error"))
    output = body.get("output")
    if not isinstance(output, list):
        raise UpstreamError("bad_gateway", "the upstream's response has no output")
    parts = [p for item in output if isinstance(item, dict) for p in _item_parts(item)]
    details = body.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    created = body.get("created_at")
    return ir.Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=parts,
        stop=_stop(body.get("status"), reason, any(isinstance(p, ir.ToolCall) for p in parts)),
        usage=parse_usage(body.get("usage")) or ir.Usage(),
        created=int(created) if isinstance(created, int | float) else None,
    )


def _failure(error: Any) -> UpstreamError:
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    code = code if isinstance(code, str) else None
    return UpstreamError(
        kind_for(500, code), str(error.get("message") or "the upstream's response failed"), code=code
    )


def response_id(upstream_id: str) -> str:
    if upstream_id.startswith("resp_"):
        return upstream_id
    return "resp_" + (upstream_id or uuid.uuid4().hex)


def _suffix(rid: str) -> str:
    return rid.removeprefix("resp_")


def _output_item(part: ir.Part, item_id: str, status: str = "completed") -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        content: dict[str, Any] = {
            "type": "output_text",
            "text": part.text,
            "annotations": [],
            "logprobs": [],
        }
    elif isinstance(part, ir.Refusal):
        content = {"type": "refusal", "refusal": part.text}
    elif isinstance(part, ir.ToolCall):
        return {
            "type": "function_call",
            "id": "fc_" + item_id,
            "call_id": part.id,
            "name": part.name,
            "arguments": part.arguments,
            "status": status,
        }
    elif isinstance(part, ir.Thinking):
        item: dict[str, Any] = {
            "type": "reasoning",
            "id": "rs_" + item_id,
            "summary": [{"type": "summary_text", "text": part.text}] if part.text else [],
        }
        if part.signature:
            item["encrypted_content"] = part.signature
        return item
    elif isinstance(part, ir.RedactedThinking):
        return {
            "type": "reasoning",
            "id": "rs_" + item_id,
            "summary": [],
            "encrypted_content": REDACTED_PREFIX + part.data,
        }
    else:
        return None
    return {
        "type": "message",
        "id": "msg_" + item_id,
        "role": "assistant",
        "status": status,
        "content": [content],
    }


def _status(stop: ir.StopReason) -> tuple[str, dict[str, Any] | None]:
    if stop in ("length", "context_window"):
        return "incomplete", {"reason": "max_output_tokens"}
    if stop in ("content_filter", "refusal"):
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response(rid: str, model: str, created: float, status: str) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created,
        "model": model,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "output": [],
        "parallel_tool_calls": True,
        "temperature": None,
        "top_p": None,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
    }


def build_response(resp: ir.Response, model: str) -> dict[str, Any]:
    """The internal form as the response object a Responses client expects."""
    rid = response_id(resp.id)
    status, details = _status(resp.stop)
    body = _response(rid, model, resp.created if resp.created is not None else int(time.time()), status)
    body["incomplete_details"] = details
    body["output"] = [
        item
        for i, part in enumerate(resp.parts)
        if (item := _output_item(part, f"{_suffix(rid)}_{i}")) is not None
    ]
    body["usage"] = usage_dict(resp.usage)
    return body


# --- streams --------------------------------------------------------------------------------------


class Decoder:
    """An upstream's Responses stream (typed events, ``response.completed`` last) as internal events."""

    def __init__(self) -> None:
        self._blocks = Blocks()
        self._calls: dict[int, bool] = {}  # output_index of function calls -> arguments streamed
        self._summary: dict[int, int] = {}  # output_index of reasoning -> last summary index seen
        self._has_calls = False
        self._done = False

    def feed(self, event: str | None, data: bytes) -> list[ir.Event]:
        if self._done:
            return []
        out: list[ir.Event] = []
        payload = event_object(data)
        if isinstance(payload, str):
            return self._fail(out, ir.Error("bad_gateway", payload))
        kind = payload.get("type") or event
        index = payload.get("output_index")
        if kind == "response.created":
            response = f.as_obj(payload.get("response"))
            out.append(ir.Start(str(response.get("id") or ""), str(response.get("model") or "")))
        elif kind == "response.output_item.added":
            self._item_added(index, payload.get("item"), out)
        elif kind == "response.output_text.delta":
            self._text(("text", index, payload.get("content_index")), payload.get("delta"), out, ir.TextDelta)
        elif kind == "response.refusal.delta":
            self._text(
                ("refusal", index, payload.get("content_index")), payload.get("delta"), out, ir.RefusalDelta
            )
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            self._thinking(index, payload, out)
        elif kind == "response.function_call_arguments.delta":
            entered = self._blocks.enter(("call", index), out)
            delta = payload.get("delta")
            if entered is not None and isinstance(delta, str) and delta:
                self._calls[index] = True  # type: ignore[index]
                out.append(ir.ToolArgsDelta(entered[0], delta))
        elif kind == "response.output_item.done":
            self._item_done(index, payload.get("item"), out)
        elif kind in ("response.completed", "response.incomplete"):
            response = f.as_obj(payload.get("response"))
            self._blocks.close(out)
            self._done = True
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            stop = _stop(response.get("status"), reason, self._has_calls)
            out.append(ir.Finish(stop, parse_usage(response.get("usage"))))
        elif kind == "response.failed":
            response = f.as_obj(payload.get("response"))
            failure = _failure(response.get("error"))
            return self._fail(out, ir.Error(failure.kind, failure.message, code=failure.code))
        elif kind == "error":
            code = payload.get("code")
            code = code if isinstance(code, str) else None
            message = str(payload.get("message") or "upstream stream error")
            return self._fail(out, ir.Error(kind_for(500, code), message, _str(payload.get("param")), code))
        return out

    def _item_added(self, index: Any, item: Any, out: list[ir.Event]) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "function_call":
            entered = self._blocks.enter(("call", index), out)
            if entered is None:
                return
            self._has_calls = True
            call_id = str(item.get("call_id") or item.get("id") or "")
            out.append(ir.ToolCallStart(entered[0], call_id, str(item.get("name") or "")))
            arguments = item.get("arguments")
            self._calls[index] = bool(arguments)
            if isinstance(arguments, str) and arguments:
                out.append(ir.ToolArgsDelta(entered[0], arguments))

    def _text(
        self,
        key: tuple[Any, ...],
        delta: Any,
        out: list[ir.Event],
        make: type[ir.TextDelta | ir.RefusalDelta],
    ) -> None:
        entered = self._blocks.enter(key, out)
        if entered is not None and isinstance(delta, str) and delta:
            out.append(make(entered[0], delta))

    def _thinking(self, index: Any, payload: dict[str, Any], out: list[ir.Event]) -> None:
        entered = self._blocks.enter(("reasoning", index), out)
        delta = payload.get("delta")
        if entered is None or not isinstance(delta, str):
            return
        part = payload.get("summary_index", payload.get("content_index", 0))
        seen = self._summary.get(index)
        if seen is not None and part != seen:
            out.append(ir.ThinkingDelta(entered[0], "\n\n"))
        self._summary[index] = part
        if delta:
            out.append(ir.ThinkingDelta(entered[0], delta))

    def _item_done(self, index: Any, item: Any, out: list[ir.Event]) -> None:
        if not isinstance(item, dict):
            return
        kind = item.get("type")
        if kind == "function_call" and not self._calls.get(index, True):
            entered = self._blocks.enter(("call", index), out)
            arguments = item.get("arguments")
            if entered is not None and isinstance(arguments, str) and arguments:
                out.append(ir.ToolArgsDelta(entered[0], arguments))
        elif kind == "reasoning":
            signature = item.get("encrypted_content")
            signature = signature if isinstance(signature, str) and signature else None
            if signature is not None and signature.startswith(REDACTED_PREFIX):
                entered = self._blocks.enter(("reasoning", index), out)
                if entered is not None:
                    out.append(ir.RedactedThinkingBlock(entered[0], signature[len(REDACTED_PREFIX) :]))
            else:
                if index not in self._summary and (text := _reasoning_text(item)):
                    # Reasoning sent whole, without deltas (some OpenAI-compatible servers).
                    entered = self._blocks.enter(("reasoning", index), out)
                    if entered is not None:
                        self._summary[index] = 0
                        out.append(ir.ThinkingDelta(entered[0], text))
                if signature is not None and self._blocks.open_key == ("reasoning", index):
                    out.append(ir.SignatureDelta(self._blocks.index, signature))
        key = self._blocks.open_key
        if isinstance(key, tuple) and len(key) > 1 and key[1] == index:
            self._blocks.close(out)

    def _fail(self, out: list[ir.Event], error: ir.Error) -> list[ir.Event]:
        self._blocks.close(out)
        self._done = True
        out.append(error)
        return out

    def finish(self) -> list[ir.Event]:
        if self._done:
            return []
        return self._fail(
            [], ir.Error("bad_gateway", "the upstream's stream ended before the answer finished")
        )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class Encoder:
    """Internal stream events as the typed Responses events a client expects, ``response.completed`` last.

    The final ``response.completed`` event carries the whole output (as OpenAI's does), so the
    encoder keeps the text of the answer until then; deltas are still written as they come.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._seq = 0
        self._id = ""
        self._created = int(time.time())
        self._output: list[dict[str, Any]] = []
        self._open: int | None = None  # internal index of the open block
        self._item: dict[str, Any] = {}
        self._text: list[str] = []
        self._started = False
        self._ended = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return frame(payload, kind)

    def _item_event(self, kind: str, position: int, **fields: Any) -> bytes:
        """An event about the open item (at ``position`` in the output): its id and index, then ``fields``."""
        return self._event(kind, item_id=self._item["id"], output_index=position, **fields)

    def _start(self, upstream_id: str) -> list[bytes]:
        self._started = True
        self._id = response_id(upstream_id)
        skeleton = _response(self._id, self._model, self._created, "in_progress")
        return [
            self._event("response.created", response=skeleton),
            self._event("response.in_progress", response=skeleton),
        ]

    def _item_id(self) -> str:
        return f"{_suffix(self._id)}_{len(self._output)}"

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        item, text, position = self._item, "".join(self._text), len(self._output)
        kind = item["type"]
        if kind == "message":
            part = item["content"][0]
            if part["type"] == "output_text":
                part["text"] = text
                out.append(
                    self._item_event(
                        "response.output_text.done", position, content_index=0, text=text, logprobs=[]
                    )
                )
            else:
                part["refusal"] = text
                out.append(self._item_event("response.refusal.done", position, content_index=0, refusal=text))
            out.append(self._item_event("response.content_part.done", position, content_index=0, part=part))
        elif kind == "function_call":
            item["arguments"] = text
            out.append(self._item_event("response.function_call_arguments.done", position, arguments=text))
        elif kind == "reasoning" and item.get("_summary"):
            item["summary"] = [{"type": "summary_text", "text": text}]
            out.append(
                self._item_event("response.reasoning_summary_text.done", position, summary_index=0, text=text)
            )
            out.append(
                self._item_event(
                    "response.reasoning_summary_part.done", position, summary_index=0, part=item["summary"][0]
                )
            )
        item.pop("_summary", None)
        if kind != "reasoning":
            item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=position, item=item))
        self._output.append(item)
        self._open, self._item, self._text = None, {}, []

    def _enter(self, index: int, item: dict[str, Any], out: list[bytes]) -> bool:
        """Open ``item`` for internal block ``index`` unless it is open; whether it was opened now."""
        if self._open == index:
            return False
        self._close(out)
        self._open, self._item, self._text = index, item, []
        out.append(
            self._event("response.output_item.added", output_index=len(self._output), item=_public(item))
        )
        return True

    def encode(self, event: ir.Event) -> list[bytes]:
        if self._ended:
            return []
        out: list[bytes] = []
        if isinstance(event, ir.Start):
            return self._start(event.id)
        if not self._started and not isinstance(event, ir.Error):
            out.extend(self._start(""))
        position = len(self._output)
        if isinstance(event, ir.TextDelta | ir.RefusalDelta):
            refusal = isinstance(event, ir.RefusalDelta)
            empty: dict[str, Any] = (
                {"type": "refusal", "refusal": ""}
                if refusal
                else {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            )
            item: dict[str, Any] = {
                "type": "message",
                "id": "msg_" + self._item_id(),
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            if self._enter(event.index, item, out):
                item["content"] = [dict(empty)]
                out.append(
                    self._item_event("response.content_part.added", position, content_index=0, part=empty)
                )
            self._text.append(event.text)
            if refusal:
                out.append(
                    self._item_event("response.refusal.delta", position, content_index=0, delta=event.text)
                )
            else:
                out.append(
                    self._item_event(
                        "response.output_text.delta", position, content_index=0, delta=event.text, logprobs=[]
                    )
                )
        elif isinstance(event, ir.ToolCallStart):
            item = {
                "type": "function_call",
                "id": "fc_" + self._item_id(),
                "call_id": event.id,
                "name": event.name,
                "arguments": "",
                "status": "in_progress",
            }
            self._enter(event.index, item, out)
        elif isinstance(event, ir.ToolArgsDelta):
            if self._open == event.index and self._item.get("type") == "function_call":
                self._text.append(event.delta)
                out.append(
                    self._item_event("response.function_call_arguments.delta", position, delta=event.delta)
                )
        elif isinstance(event, ir.ThinkingDelta | ir.SignatureDelta):
            item = {"type": "reasoning", "id": "rs_" + self._item_id(), "summary": []}
            self._enter(event.index, item, out)
            if isinstance(event, ir.SignatureDelta):
                self._item["encrypted_content"] = event.signature
            elif event.text:
                if not self._item.get("_summary"):
                    self._item["_summary"] = True
                    out.append(
                        self._item_event(
                            "response.reasoning_summary_part.added",
                            position,
                            summary_index=0,
                            part={"type": "summary_text", "text": ""},
                        )
                    )
                self._text.append(event.text)
                out.append(
                    self._item_event(
                        "response.reasoning_summary_text.delta", position, summary_index=0, delta=event.text
                    )
                )
        elif isinstance(event, ir.RedactedThinkingBlock):
            item = {
                "type": "reasoning",
                "id": "rs_" + self._item_id(),
                "summary": [],
                "encrypted_content": REDACTED_PREFIX + event.data,
            }
            self._enter(event.index, item, out)
        elif isinstance(event, ir.BlockStop):
            if self._open == event.index:
                self._close(out)
        elif isinstance(event, ir.Finish):
            self._close(out)
            self._ended = True
            status, details = _status(event.stop)
            response = _response(self._id, self._model, self._created, status)
            response["incomplete_details"] = details
            response["output"] = self._output
            response["usage"] = usage_dict(event.usage or ir.Usage())
            kind = "response.completed" if status == "completed" else "response.incomplete"
            out.append(self._event(kind, response=response))
        elif isinstance(event, ir.Error):
            self._ended = True
            failure = UpstreamError(event.kind, event.message, param=event.param, code=event.code)
            out.append(stream_error(RESPONSES, failure, sequence_number=self._seq))
            self._seq += 1
        return out

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        self._ended = True
        failure = UpstreamError("bad_gateway", "the upstream's stream ended before the answer finished")
        return [stream_error(RESPONSES, failure, sequence_number=self._seq)]


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}
