"""Anthropic Messages (``POST /v1/messages``) <-> the internal form.

Reading a client's request (``parse_request``); every other top-level field is refused with
``TranslationError`` naming it:

- ``system`` (a string or text blocks) is the system prompt; a ``system``-role message inside
  ``messages`` stays in place. Blocks' ``cache_control`` is dropped everywhere (OpenAI caches
  prompts on its own and has no breakpoints to set), and so are text blocks' ``citations``.
- Content blocks: ``text``; ``image`` by ``base64`` or ``url`` source (a ``file`` source, stored at
  Anthropic, is refused); ``document`` with a base64 PDF or a URL (a plain-text document becomes text,
  its ``title`` and ``context`` dropped; other sources are refused); ``tool_use``; ``tool_result``
  (``is_error`` is dropped towards OpenAI, which has no such flag: the content carries the error
  text); ``thinking`` and ``redacted_thinking``. Server-tool blocks, search results and container
  uploads are refused.
- ``tools``: custom tools (``type`` absent or ``custom``); server tools (``web_search_*``,
  ``bash_*``, ``text_editor_*``, ``computer_*``, ...) are refused: only Anthropic runs them.
  ``cache_control`` and ``eager_input_streaming`` are dropped; ``input_examples`` and
  ``defer_loading`` are refused.
- ``tool_choice`` ``auto``/``any``/``tool``/``none`` (``any`` is OpenAI's ``required``), and
  ``disable_parallel_tool_use`` (-> ``parallel_tool_calls: false``).
- ``max_tokens``, ``temperature``, ``top_p``, ``stop_sequences``, ``stream``, ``metadata.user_id``
  (-> OpenAI's ``user``), ``thinking``, ``output_config`` (``effort``; ``format`` -> structured output).
- ``top_k`` is refused (OpenAI has no such sampling control), and so are ``container`` and
  ``mcp_servers``, and a last assistant turn holding text (a prefill: OpenAI's APIs answer a new
  turn instead of continuing it).
- Dropped: ``cache_control``, ``context_management`` (server-side context editing: the upstream sees
  the whole history instead), ``diagnostics``, ``inference_geo``, ``service_tier``, ``speed``,
  ``user_profile_id``, ``workspace_id``.

Writing an upstream request (``build_request``):

- ``max_tokens`` is required by Anthropic: when the client gave none, ``DEFAULT_MAX_TOKENS`` (4,096)
  or the caller's ``default_max_tokens`` is sent, so a long answer may stop at ``max_tokens``.
- ``temperature`` is clamped to Anthropic's 0..1, not scaled: both APIs default to 1 and agree on
  0..1, so a client's 0.2 means 0.2 and only OpenAI's 1..2 (more random than Anthropic allows)
  becomes 1. ``top_p`` passes unchanged. Models that no longer take sampling parameters answer 400,
  which reaches the client in its own envelope.
- ``reasoning_effort`` ``none`` -> ``thinking: {type: disabled}``; any other effort ->
  ``thinking: {type: adaptive}`` with ``output_config.effort`` (``minimal`` -> ``low``). Models
  older than adaptive thinking answer 400 for it. When thinking is asked for but the last assistant
  turn holds tool calls without its thinking block (a client of another API cannot send that block
  back), thinking is sent ``disabled``: Anthropic refuses such a turn otherwise.
- Thinking blocks without a signature (from OpenAI's reasoning text) are dropped: Anthropic accepts
  only blocks it signed.
- System prompt blocks go out as one ``system`` string (one block) or text blocks (several).
- Consecutive messages of one role are merged into one turn (as Anthropic would), and tool results
  lead their user turn (as Anthropic requires). Empty text is dropped (Anthropic refuses it).
- Tool-call ids are kept, with any character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (the same
  rewrite on every request, so a call and its result still match). Tool-call arguments (JSON text)
  become the ``input`` object; text that is not a JSON object becomes
  ``{"_raw_arguments": "<the text>"}`` rather than being lost.
- Images: inline data of a media type Anthropic does not take (other than JPEG, PNG, GIF, WebP) and
  URLs other than ``http(s)://`` are refused; ``detail`` is dropped. URLs are passed on as URLs.
- A conversation that ends with an assistant turn is sent as it is, which Anthropic reads as a
  prefill to continue (OpenAI would answer with a new turn); models without prefill answer 400.
- ``verbosity`` other than ``medium`` is refused; ``stop`` passes as ``stop_sequences``; the OpenAI
  bookkeeping fields are dropped.

Responses and streams written for a client: stop reasons ``stop`` -> ``end_turn``, ``length`` ->
``max_tokens``, ``context_window`` -> ``model_context_window_exceeded``, ``tool_calls`` ->
``tool_use``, ``content_filter`` -> ``refusal``, ``pause`` -> ``pause_turn``; an OpenAI refusal
becomes a text block. A stop sequence from OpenAI is reported as ``end_turn`` (OpenAI says ``stop``
for both). Usage: ``input_tokens`` excludes cache reads and writes, reported separately, as Anthropic
counts them. OpenAI reasoning becomes a ``thinking`` block whose ``signature`` is OpenAI's encrypted
reasoning (or empty); sent back later, it is dropped on the way to OpenAI. Streams from OpenAI carry
input usage in ``message_delta`` (``message_start`` says 0: OpenAI reports it only at the end). Tool
arguments are streamed as the upstream produced them, so an upstream's malformed JSON reaches the
client's accumulator as such.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any, Final

import orjson

from agentkube.dataplane.llm.apis import API, MESSAGES, Kind, stream_error
from agentkube.dataplane.llm.translate import fields as f
from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.blocks import Blocks
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError, kind_for
from agentkube.dataplane.llm.translate.media import ANTHROPIC_IMAGE_TYPES, is_remote
from agentkube.dataplane.llm.translate.sse import event_object, frame

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "RAW_ARGUMENTS",
    "Decoder",
    "Encoder",
    "build_request",
    "build_response",
    "parse_request",
    "parse_response",
    "tool_id",
    "tool_input",
]

DEFAULT_MAX_TOKENS: Final = 4096
RAW_ARGUMENTS: Final = "_raw_arguments"

_HANDLED: Final = frozenset(
    {
        "model",
        "messages",
        "system",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "output_config",
        # dropped (see the module docstring)
        "cache_control",
        "context_management",
        "diagnostics",
        "inference_geo",
        "service_tier",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
_STOP_IN: Final[dict[str, ir.StopReason]] = {
    "end_turn": "stop",
    "max_tokens": "length",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_calls",
    "pause_turn": "pause",
    "refusal": "refusal",
    "model_context_window_exceeded": "context_window",
}
_STOP_OUT: Final[dict[ir.StopReason, str]] = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "context_window": "model_context_window_exceeded",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "refusal": "refusal",
    "pause": "pause_turn",
}
_EFFORTS: Final = frozenset({"low", "medium", "high", "xhigh", "max"})
_TOOL_ID = re.compile(r"[^A-Za-z0-9_-]")


# --- requests -------------------------------------------------------------------------------------


def parse_request(body: dict[str, Any], dst: API) -> ir.Request:
    """A client's Messages request as the internal form (``dst`` only names the target in errors)."""
    for key in ("top_k", "container", "mcp_servers"):
        if body.get(key) is not None:
            raise TranslationError(key, f"is not supported when translating to {dst}; remove it")
    f.check_known(body, _HANDLED, "", dst)
    req = ir.Request(model=f.string(body, "model") or "", messages=[])
    system = body.get("system")
    if system is not None:
        req.system = f.texts(system, "system", "block")
    if "messages" not in body:
        raise TranslationError("messages", "is required")
    for path, message in f.objects(body, "messages"):
        role = f.text(message, "role", path)
        content = message.get("content")
        where = f.at(path, "content")
        if role == "system":
            texts = f.texts(content, where, "block")
            if not req.messages and system is None:
                req.system.extend(texts)
            else:
                req.messages.append(ir.Message("system", list(texts)))
        elif role in ("user", "assistant"):
            req.messages.append(ir.Message(role, _parts(content, where, role)))  # type: ignore[arg-type]
        else:
            raise TranslationError(f.at(path, "role"), f"{role!r} is not supported (use user or assistant)")
    last = req.messages[-1] if req.messages else None
    if last is not None and last.role == "assistant" and any(isinstance(p, ir.Text) for p in last.parts):
        raise TranslationError(
            "messages",
            f"ends with an assistant turn to continue (a prefill), which {dst} cannot do; remove it",
        )
    for path, tool in f.objects(body, "tools"):
        req.tools.append(_parse_tool(tool, path))
    choice = f.optional_obj(body, "tool_choice")
    if choice is not None:
        kind = f.text(choice, "type", "tool_choice")
        if kind == "auto":
            req.tool_choice = "auto"
        elif kind == "any":
            req.tool_choice = "required"
        elif kind == "none":
            req.tool_choice = "none"
        elif kind == "tool":
            req.tool_choice = ir.NamedTool(f.text(choice, "name", "tool_choice"))
        else:
            raise TranslationError(
                "tool_choice.type", f"{kind!r} is not supported (use auto, any, tool or none)"
            )
        if f.boolean(choice, "disable_parallel_tool_use", "tool_choice"):
            req.parallel_tool_calls = False
    req.max_tokens = f.integer(body, "max_tokens", minimum=0)
    req.temperature = f.number(body, "temperature")
    req.top_p = f.number(body, "top_p")
    req.stop = f.strings(body, "stop_sequences")
    req.stream = bool(f.boolean(body, "stream"))
    req.include_usage = True
    metadata = f.optional_obj(body, "metadata")
    if metadata is not None:
        req.user = f.string(metadata, "user_id", "metadata")
    req.reasoning = _parse_reasoning(body)
    config = f.optional_obj(body, "output_config")
    if config is not None:
        fmt = f.optional_obj(config, "format", "output_config")
        if fmt is not None:
            if fmt.get("type") != "json_schema":
                raise TranslationError("output_config.format.type", "only json_schema is supported")
            req.output_format = ir.OutputFormat(
                schema=f.obj(fmt, "schema", "output_config.format"), strict=True
            )
    return req


def _parse_reasoning(body: dict[str, Any]) -> ir.Reasoning | None:
    thinking = f.optional_obj(body, "thinking")
    config = f.optional_obj(body, "output_config")
    effort = f.string(config, "effort", "output_config") if config is not None else None
    if thinking is None and effort is None:
        return None
    reasoning = ir.Reasoning(effort=effort)
    if thinking is not None:
        mode = f.text(thinking, "type", "thinking")
        if mode not in ("enabled", "adaptive", "disabled"):
            raise TranslationError(
                "thinking.type", f"{mode!r} is not supported (use enabled, adaptive or disabled)"
            )
        reasoning.mode = mode  # type: ignore[assignment]
        reasoning.budget_tokens = f.integer(thinking, "budget_tokens", "thinking")
        reasoning.display = f.string(thinking, "display", "thinking")
    return reasoning


def _parts(content: Any, path: str, role: str) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)]
    parts: list[ir.Part] = []
    for where, block in f.elements(content, path, "a string or an array of content blocks"):
        kind = block.get("type")
        media = _parse_content(kind, block, where)
        if media is not None:
            parts.append(media)
        elif kind == "tool_use" and role == "assistant":
            tool_input_value = block.get("input")
            if not isinstance(tool_input_value, dict):
                raise TranslationError(f.at(where, "input"), "must be an object")
            parts.append(
                ir.ToolCall(
                    id=f.text(block, "id", where),
                    name=f.text(block, "name", where),
                    arguments=orjson.dumps(tool_input_value).decode(),
                )
            )
        elif kind == "tool_result" and role == "user":
            parts.append(_parse_tool_result(block, where))
        elif kind == "thinking" and role == "assistant":
            parts.append(ir.Thinking(f.text(block, "thinking", where), f.string(block, "signature", where)))
        elif kind == "redacted_thinking" and role == "assistant":
            parts.append(ir.RedactedThinking(f.text(block, "data", where)))
        else:
            raise TranslationError(
                f.at(where, "type"),
                f"{kind!r} blocks in a {role} message cannot be translated to another API",
            )
    return parts


def _parse_content(kind: Any, block: dict[str, Any], path: str) -> ir.Content | None:
    """A text, image or document block (what a message and a tool result both carry); else None."""
    if kind == "text":
        return ir.Text(f.text(block, "text", path))
    if kind == "image":
        return _parse_image(f.obj(block, "source", path), f.at(path, "source"))
    if kind == "document":
        return _parse_document(block, path)
    return None


def _parse_image(source: dict[str, Any], path: str) -> ir.Image:
    kind = source.get("type")
    if kind == "base64":
        return ir.Image(data=f.text(source, "data", path), media_type=f.text(source, "media_type", path))
    if kind == "url":
        return ir.Image(url=f.text(source, "url", path))
    raise TranslationError(f.at(path, "type"), f"{kind!r} image sources cannot be sent to another provider")


def _parse_document(block: dict[str, Any], path: str) -> ir.Text | ir.Document:
    source = f.obj(block, "source", path)
    where = f.at(path, "source")
    kind = source.get("type")
    if kind == "base64":
        return ir.Document(
            data=f.text(source, "data", where),
            media_type=f.string(source, "media_type", where) or "application/pdf",
            filename=f.string(block, "title", path),
        )
    if kind == "url":
        return ir.Document(url=f.text(source, "url", where), filename=f.string(block, "title", path))
    if kind == "text":
        return ir.Text(f.text(source, "data", where))
    raise TranslationError(
        f.at(where, "type"), f"{kind!r} document sources cannot be sent to another provider"
    )


def _parse_tool_result(block: dict[str, Any], path: str) -> ir.ToolResult:
    content = block.get("content")
    parts: list[ir.Content] = []
    where = f.at(path, "content")
    if isinstance(content, str):
        if content:
            parts.append(ir.Text(content))
    elif content is not None:
        for at, item in f.elements(content, where, "a string or an array of blocks"):
            kind = item.get("type")
            media = _parse_content(kind, item, at)
            if media is None:
                raise TranslationError(
                    f.at(at, "type"), f"{kind!r} blocks in a tool result cannot be translated"
                )
            parts.append(media)
    return ir.ToolResult(f.text(block, "tool_use_id", path), parts, bool(f.boolean(block, "is_error", path)))


def _parse_tool(tool: dict[str, Any], path: str) -> ir.Tool:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise TranslationError(f.at(path, "type"), f"{kind!r} is a server tool only Anthropic can run")
    for key in ("input_examples", "defer_loading"):
        if tool.get(key):
            raise TranslationError(f.at(path, key), "cannot be translated to another API; remove it")
    callers = tool.get("allowed_callers")
    if callers is not None and callers != ["direct"]:
        raise TranslationError(f.at(path, "allowed_callers"), "only direct calls can be translated")
    return ir.Tool(
        name=f.text(tool, "name", path),
        description=f.string(tool, "description", path),
        parameters=f.obj(tool, "input_schema", path),
        strict=f.boolean(tool, "strict", path),
    )


def tool_id(call_id: str) -> str:
    """A tool-call id as Anthropic accepts it (``[A-Za-z0-9_-]+``), the same for the same input."""
    return _TOOL_ID.sub("_", call_id) or "toolu_" + uuid.uuid4().hex[:24]


def tool_input(arguments: str) -> dict[str, Any]:
    """Tool-call arguments (JSON text) as Anthropic's ``input`` object (see the module docstring)."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {RAW_ARGUMENTS: arguments}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: arguments}


def build_request(
    req: ir.Request, model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """The internal form as a Messages request for ``model``."""
    if req.verbosity not in (None, "medium"):
        raise TranslationError("verbosity", f"is not supported by {MESSAGES}; remove it")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": req.max_tokens if req.max_tokens is not None else default_max_tokens,
        "messages": _build_messages(req.messages),
    }
    system = [t.text for t in req.system if t.text]
    if len(system) == 1:
        body["system"] = system[0]
    elif system:
        body["system"] = [{"type": "text", "text": t} for t in system]
    if req.stop:
        body["stop_sequences"] = req.stop
    if req.stream:
        body["stream"] = True
    if req.temperature is not None:
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.tools:
        body["tools"] = [_build_tool(t) for t in req.tools]
        choice = _build_tool_choice(req.tool_choice, req.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    if req.user:
        body["metadata"] = {"user_id": req.user}
    elif isinstance(req.openai.get("safety_identifier"), str):
        body["metadata"] = {"user_id": req.openai["safety_identifier"]}
    thinking, effort = _build_reasoning(req)
    if thinking is not None:
        body["thinking"] = thinking
    output_config: dict[str, Any] = {}
    if effort is not None:
        output_config["effort"] = effort
    if req.output_format is not None:
        output_config["format"] = {"type": "json_schema", "schema": req.output_format.schema}
    if output_config:
        body["output_config"] = output_config
    return body


def _build_reasoning(req: ir.Request) -> tuple[dict[str, Any] | None, str | None]:
    reasoning = req.reasoning
    if reasoning is None:
        return None, None
    effort = reasoning.effort
    if effort == "minimal":
        effort = "low"
    if effort not in _EFFORTS:
        effort = None
    thinking: dict[str, Any]
    if reasoning.mode == "enabled":
        thinking = {"type": "enabled", "budget_tokens": reasoning.budget_tokens or 1024}
    elif reasoning.mode is not None:
        thinking = {"type": reasoning.mode}
    elif reasoning.effort == "none":
        thinking = {"type": "disabled"}
    elif effort is not None:
        thinking = {"type": "adaptive"}
    else:
        return None, None
    if reasoning.display is not None and thinking["type"] != "disabled":
        thinking["display"] = reasoning.display
    if thinking["type"] != "disabled" and _last_tool_turn_lacks_thinking(req.messages):
        thinking = {"type": "disabled"}
    return thinking, effort


def _last_tool_turn_lacks_thinking(messages: list[ir.Message]) -> bool:
    for message in reversed(messages):
        if message.role == "assistant":
            has_calls = any(isinstance(p, ir.ToolCall) for p in message.parts)
            signed = any(
                (isinstance(p, ir.Thinking) and p.signature) or isinstance(p, ir.RedactedThinking)
                for p in message.parts
            )
            return has_calls and not signed
    return False


def _build_tool(tool: ir.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _build_tool_choice(choice: ir.ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    out: dict[str, Any]
    if choice is None:
        if parallel is not False:
            return None
        out = {"type": "auto"}
    elif isinstance(choice, ir.NamedTool):
        out = {"type": "tool", "name": choice.name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    else:
        out = {"type": "auto"}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _build_messages(messages: list[ir.Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            texts = [p.text for p in message.parts if isinstance(p, ir.Text) and p.text]
            if texts:
                out.append({"role": "system", "content": "\n\n".join(texts)})
            continue
        blocks = [b for p in message.parts if (b := _build_block(p)) is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role, "content": blocks})
    for turn in out:
        if turn["role"] == "user":
            content = turn["content"]
            turn["content"] = [b for b in content if b["type"] == "tool_result"] + [
                b for b in content if b["type"] != "tool_result"
            ]
    return out


def _build_block(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text | ir.Refusal):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ir.Image):
        return {"type": "image", "source": _image_source(part)}
    if isinstance(part, ir.Document):
        return _document(part)
    if isinstance(part, ir.ToolCall):
        return _tool_use(part)
    if isinstance(part, ir.ToolResult):
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(part.call_id)}
        content = [b for c in part.content if (b := _build_block(c)) is not None]
        if content:
            result["content"] = content
        if part.is_error:
            result["is_error"] = True
        return result
    if isinstance(part, ir.Thinking):
        if not part.signature:
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return {"type": "redacted_thinking", "data": part.data}


def _tool_use(call: ir.ToolCall) -> dict[str, Any]:
    """A tool call as a ``tool_use`` block (in a request's history and in an answer alike)."""
    return {
        "type": "tool_use",
        "id": tool_id(call.id),
        "name": call.name,
        "input": tool_input(call.arguments),
    }


def _image_source(image: ir.Image) -> dict[str, Any]:
    if image.url is not None:
        if not is_remote(image.url):
            raise TranslationError(
                "messages", f"image URL scheme of {image.url[:16]!r}... is not supported; use https"
            )
        return {"type": "url", "url": image.url}
    media_type = image.media_type or ""
    if media_type not in ANTHROPIC_IMAGE_TYPES:
        raise TranslationError(
            "messages",
            f"image media type {media_type!r} is not supported by {MESSAGES} (use JPEG, PNG, GIF or WebP)",
        )
    return {"type": "base64", "media_type": media_type, "data": image.data or ""}


def _document(doc: ir.Document) -> dict[str, Any]:
    block: dict[str, Any]
    if doc.url is not None:
        block = {"type": "document", "source": {"type": "url", "url": doc.url}}
    elif doc.media_type == "application/pdf":
        block = {
            "type": "document",
            "source": {"type": "base64", "media_type": doc.media_type, "data": doc.data},
        }
    else:
        raise TranslationError(
            "messages", f"document media type {doc.media_type!r} is not supported (use PDF)"
        )
    if doc.filename:
        block["title"] = doc.filename
    return block


# --- responses ------------------------------------------------------------------------------------


def parse_usage(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    read = f.count(usage.get("cache_read_input_tokens"))
    write = f.count(usage.get("cache_creation_input_tokens"))
    return ir.Usage(
        input_tokens=f.count(usage.get("input_tokens")) + read + write,
        output_tokens=f.count(usage.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def usage_dict(usage: ir.Usage) -> dict[str, Any]:
    return {
        "input_tokens": max(usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens, 0),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def _block_part(block: dict[str, Any]) -> ir.Part | None:
    kind = block.get("type")
    if kind == "text":
        return ir.Text(str(block.get("text") or ""))
    if kind == "tool_use":
        value = block.get("input")
        return ir.ToolCall(
            id=str(block.get("id") or ""),
            name=str(block.get("name") or ""),
            arguments=orjson.dumps(value if isinstance(value, dict) else {}).decode(),
        )
    if kind == "thinking":
        return ir.Thinking(str(block.get("thinking") or ""), str(block.get("signature") or "") or None)
    if kind == "redacted_thinking":
        return ir.RedactedThinking(str(block.get("data") or ""))
    return None  # server-tool blocks: only with server tools, which are never sent across


def parse_response(body: dict[str, Any]) -> ir.Response:
    """An upstream's message as the internal form."""
    content = body.get("content")
    if not isinstance(content, list):
        raise UpstreamError("bad_gateway", "the upstream's message has no content")
    parts = [p for block in content if isinstance(block, dict) and (p := _block_part(block)) is not None]
    stop_sequence = body.get("stop_sequence")
    return ir.Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=parts,
        stop=_STOP_IN.get(str(body.get("stop_reason")), "stop"),
        usage=parse_usage(body.get("usage")),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
    )


def message_id(upstream_id: str) -> str:
    if upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + (tool_id(upstream_id) if upstream_id else uuid.uuid4().hex)


def _response_block(part: ir.Part) -> dict[str, Any] | None:
    if isinstance(part, ir.Text | ir.Refusal):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.ToolCall):
        return _tool_use(part)
    if isinstance(part, ir.Thinking):
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    if isinstance(part, ir.RedactedThinking):
        return {"type": "redacted_thinking", "data": part.data}
    return None


def build_response(resp: ir.Response, model: str) -> dict[str, Any]:
    """The internal form as the message a Messages client expects."""
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [b for p in resp.parts if (b := _response_block(p)) is not None],
        "stop_reason": _STOP_OUT[resp.stop],
        "stop_sequence": resp.stop_sequence if resp.stop == "stop_sequence" else None,
        "usage": usage_dict(resp.usage),
    }


# --- streams --------------------------------------------------------------------------------------


class Decoder:
    """An upstream's Messages stream (``message_start`` ... ``message_stop``) as internal events."""

    def __init__(self) -> None:
        self._blocks = Blocks()
        self._kinds: dict[int, str] = {}  # Anthropic index -> block type
        self._usage = ir.Usage()
        self._stop: ir.StopReason = "stop"
        self._stop_sequence: str | None = None
        self._started = False
        self._done = False

    def feed(self, event: str | None, data: bytes) -> list[ir.Event]:
        if self._done:
            return []
        out: list[ir.Event] = []
        payload = event_object(data)
        if isinstance(payload, str):
            return self._fail(out, "bad_gateway", payload)
        kind = payload.get("type") or event
        if kind == "message_start":
            message = f.as_obj(payload.get("message"))
            self._usage = parse_usage(message.get("usage"))
            self._started = True
            out.append(
                ir.Start(
                    str(message.get("id") or ""),
                    str(message.get("model") or ""),
                    dataclasses.replace(self._usage),
                )
            )
        elif kind == "content_block_start":
            self._block_start(payload, out)
        elif kind == "content_block_delta":
            self._block_delta(payload, out)
        elif kind == "content_block_stop":
            if payload.get("index") == self._blocks.open_key:
                self._blocks.close(out)
        elif kind == "message_delta":
            self._message_delta(payload)
        elif kind == "message_stop":
            self._blocks.close(out)
            self._done = True
            out.append(ir.Finish(self._stop, self._usage, self._stop_sequence))
        elif kind == "error":
            error = f.as_obj(payload.get("error"))
            error_type = error.get("type")
            return self._fail(
                out,
                kind_for(500, error_type if isinstance(error_type, str) else None),
                str(error.get("message") or "upstream stream error"),
            )
        return out  # ping and any event type added later

    def _block_start(self, payload: dict[str, Any], out: list[ir.Event]) -> None:
        index = payload.get("index")
        block = payload.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            return
        kind = str(block.get("type"))
        if kind not in ("text", "tool_use", "thinking", "redacted_thinking"):
            return  # server-tool blocks and the like: never asked for across APIs
        self._kinds[index] = kind
        entered = self._blocks.enter(index, out)
        if entered is None:
            return
        ours = entered[0]
        if kind == "text" and block.get("text"):
            out.append(ir.TextDelta(ours, str(block["text"])))
        elif kind == "tool_use":
            out.append(ir.ToolCallStart(ours, str(block.get("id") or ""), str(block.get("name") or "")))
            value = block.get("input")
            if isinstance(value, dict) and value:
                out.append(ir.ToolArgsDelta(ours, orjson.dumps(value).decode()))
        elif kind == "thinking":
            if block.get("thinking"):
                out.append(ir.ThinkingDelta(ours, str(block["thinking"])))
            if block.get("signature"):
                out.append(ir.SignatureDelta(ours, str(block["signature"])))
        elif kind == "redacted_thinking":
            out.append(ir.RedactedThinkingBlock(ours, str(block.get("data") or "")))

    def _block_delta(self, payload: dict[str, Any], out: list[ir.Event]) -> None:
        index = payload.get("index")
        delta = payload.get("delta")
        if not isinstance(delta, dict) or index != self._blocks.open_key:
            return
        ours = self._blocks.index
        kind = delta.get("type")
        if kind == "text_delta":
            out.append(ir.TextDelta(ours, str(delta.get("text") or "")))
        elif kind == "input_json_delta":
            if delta.get("partial_json"):
                out.append(ir.ToolArgsDelta(ours, str(delta["partial_json"])))
        elif kind == "thinking_delta":
            out.append(ir.ThinkingDelta(ours, str(delta.get("thinking") or "")))
        elif kind == "signature_delta":
            out.append(ir.SignatureDelta(ours, str(delta.get("signature") or "")))
        # citations_delta: citations are not translated

    def _message_delta(self, payload: dict[str, Any]) -> None:
        delta = f.as_obj(payload.get("delta"))
        if delta.get("stop_reason") is not None:
            self._stop = _STOP_IN.get(str(delta["stop_reason"]), "stop")
        if isinstance(delta.get("stop_sequence"), str):
            self._stop_sequence = delta["stop_sequence"]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            # Counts here are cumulative; absent ones keep their message_start value.
            if isinstance(usage.get("output_tokens"), int):
                self._usage.output_tokens = usage["output_tokens"]
            read, write = self._usage.cache_read_tokens, self._usage.cache_write_tokens
            uncached = self._usage.input_tokens - read - write
            if isinstance(usage.get("input_tokens"), int):
                uncached = usage["input_tokens"]
            if isinstance(usage.get("cache_read_input_tokens"), int):
                read = usage["cache_read_input_tokens"]
            if isinstance(usage.get("cache_creation_input_tokens"), int):
                write = usage["cache_creation_input_tokens"]
            self._usage.input_tokens = uncached + read + write
            self._usage.cache_read_tokens = read
            self._usage.cache_write_tokens = write

    def _fail(self, out: list[ir.Event], kind: Kind, message: str) -> list[ir.Event]:
        self._blocks.close(out)
        self._done = True
        out.append(ir.Error(kind, message))
        return out

    def finish(self) -> list[ir.Event]:
        if self._done:
            return []
        return self._fail([], "bad_gateway", "the upstream's stream ended before the answer finished")


class Encoder:
    """Internal stream events as the Messages events a client expects, ``message_stop`` last."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._ended = False
        self._open: int | None = None  # internal index of the open block
        self._open_kind = ""
        self._count = 0

    def _start(self, event: ir.Start | None) -> list[bytes]:
        self._started = True
        usage = (
            usage_dict(event.usage)
            if event is not None and event.usage is not None
            else usage_dict(ir.Usage())
        )
        message: dict[str, Any] = {
            "id": message_id(event.id if event is not None else ""),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [frame({"type": "message_start", "message": message}, "message_start")]

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(frame({"type": "content_block_stop", "index": self._count - 1}, "content_block_stop"))
            self._open = None

    def _enter(self, index: int, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        """Anthropic's index for internal block ``index``, opening it (as ``block``) when new."""
        if self._open == index:
            return self._count - 1
        self._close(out)
        self._open, self._open_kind = index, kind
        self._count += 1
        out.append(
            frame(
                {"type": "content_block_start", "index": self._count - 1, "content_block": block},
                "content_block_start",
            )
        )
        return self._count - 1

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return frame({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")

    def encode(self, event: ir.Event) -> list[bytes]:
        if self._ended:
            return []
        out: list[bytes] = []
        if isinstance(event, ir.Start):
            return self._start(event)
        if not self._started and not isinstance(event, ir.Error):
            out.extend(self._start(None))
        if isinstance(event, ir.TextDelta | ir.RefusalDelta):
            at = self._enter(event.index, "text", {"type": "text", "text": ""}, out)
            out.append(self._delta(at, {"type": "text_delta", "text": event.text}))
        elif isinstance(event, ir.ToolCallStart):
            block = {"type": "tool_use", "id": tool_id(event.id), "name": event.name, "input": {}}
            self._enter(event.index, "tool_use", block, out)
        elif isinstance(event, ir.ToolArgsDelta):
            at = self._enter(
                event.index, "tool_use", {"type": "tool_use", "id": tool_id(""), "name": "", "input": {}}, out
            )
            out.append(self._delta(at, {"type": "input_json_delta", "partial_json": event.delta}))
        elif isinstance(event, ir.ThinkingDelta | ir.SignatureDelta):
            at = self._enter(
                event.index, "thinking", {"type": "thinking", "thinking": "", "signature": ""}, out
            )
            if isinstance(event, ir.ThinkingDelta):
                out.append(self._delta(at, {"type": "thinking_delta", "thinking": event.text}))
            else:
                out.append(self._delta(at, {"type": "signature_delta", "signature": event.signature}))
        elif isinstance(event, ir.RedactedThinkingBlock):
            self._enter(
                event.index, "redacted_thinking", {"type": "redacted_thinking", "data": event.data}, out
            )
        elif isinstance(event, ir.BlockStop):
            if self._open == event.index:
                self._close(out)
        elif isinstance(event, ir.Finish):
            self._close(out)
            self._ended = True
            usage = usage_dict(event.usage or ir.Usage())
            delta = {
                "stop_reason": _STOP_OUT[event.stop],
                "stop_sequence": event.stop_sequence if event.stop == "stop_sequence" else None,
            }
            out.append(frame({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta"))
            out.append(frame({"type": "message_stop"}, "message_stop"))
        elif isinstance(event, ir.Error):
            self._ended = True
            out.append(stream_error(MESSAGES, UpstreamError(event.kind, event.message)))
        return out

    def finish(self) -> list[bytes]:
        if self._ended:
            return []
        self._ended = True
        return [
            stream_error(
                MESSAGES,
                UpstreamError("bad_gateway", "the upstream's stream ended before the answer finished"),
            )
        ]
