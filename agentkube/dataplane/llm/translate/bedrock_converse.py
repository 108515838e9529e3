"""Amazon Bedrock's Converse API (``bedrock-converse``): to and from the internal form.

An upstream API only: requests are built in it (``build_request``), answers and ConverseStream
events are read from it (``parse_response``, ``Decoder``). The body is Converse's JSON wire form
(REST-JSON: blobs are base64 text), without ``modelId``, which the provider puts in the path.

Writing a request, and what is lossy:

- ``system``: the system prompt as text blocks; a system message later in the conversation is
  appended to ``system`` (Converse has no system turn), so its position is lost. Empty text is
  dropped (Converse refuses it).
- Messages: consecutive messages of one role merge into one turn, tool results lead their user turn.
  Text, images (inline base64 as ``bytes``; an ``s3://`` URL as ``s3Location``; ``http(s)`` URLs are
  refused: the gateway never fetches and Converse cannot), documents (inline ``bytes`` of PDF, CSV,
  DOC(X), XLS(X), HTML, plain text or Markdown, named after the client's filename made to fit
  Converse's name rule, else ``document-<n>``; ``detail`` of images is dropped), tool calls
  (``toolUse``; arguments JSON text -> ``input`` object, non-object text as
  ``{"_raw_arguments": text}``) and tool results (``toolResult``, ``is_error`` as ``status: error``).
- Tool-call ids keep their value, with characters outside ``[A-Za-z0-9_.:-]`` replaced by ``_`` and
  cut to 64 characters (the same rewrite each time, so calls and results still match).
- Thinking: signed thinking as ``reasoningContent.reasoningText`` (text + signature), redacted
  thinking as ``reasoningContent.redactedContent``; unsigned thinking (from OpenAI) is dropped.
- ``inferenceConfig``: ``maxTokens`` (omitted when the client set none: the model's default),
  ``temperature`` clamped to 0..1 (Converse's range; not scaled), ``topP``, ``stopSequences``.
- Tools as ``toolSpec`` (name, description, ``inputSchema.json``, ``strict``); ``tool_choice``
  auto -> ``auto``, required -> ``any``, a named tool -> ``tool``. ``none`` has no Converse
  equivalent: the tools are left out when the conversation holds no tool blocks (so none can be
  called), else sent with no choice (the model may still call one). ``parallel_tool_calls`` is
  dropped (Converse has no switch for it).
- Structured output -> ``outputConfig.textFormat`` (``json_schema``, the schema as JSON text).
- Reasoning: an effort -> ``outputConfig.effort`` (``minimal`` -> ``low``; ``none`` sends nothing);
  Anthropic's ``thinking`` with a budget -> ``additionalModelRequestFields.thinking`` (what Claude
  reads through Converse). Models without these answer 400, which the client gets in its envelope.
- Dropped: ``user`` and the OpenAI bookkeeping fields (``metadata``, ``store``...), Anthropic's
  ``cache_control`` breakpoints (no ``cachePoint`` is sent: prompt caching through Converse is not
  asked for). ``verbosity`` other than ``medium`` is refused, and so is Anthropic's ``top_k`` (by the
  Messages reader, as towards OpenAI: Converse carries it only in model-specific fields).
- What each client API's reader refuses or drops on the way in (``n`` > 1, ``logprobs``, server
  tools...) is listed in that API's module.

Reading answers (and streams):

- Stop reasons: ``end_turn`` -> stop, ``tool_use`` -> tool_calls, ``max_tokens`` -> length,
  ``stop_sequence`` -> stop_sequence (Converse does not say which sequence),
  ``model_context_window_exceeded`` -> context_window, ``guardrail_intervened`` (a Bedrock guardrail
  blocked or masked the input or output) and ``content_filtered`` (the model provider's own filter
  cut the output) -> content_filter (OpenAI ``content_filter``, Anthropic ``refusal``),
  ``malformed_model_output`` and ``malformed_tool_use`` -> stop (what was produced is passed on).
- Usage: ``inputTokens`` excludes cache reads and writes (as Anthropic counts); the internal form's
  input count adds them back. ``metrics`` (latency) and ``trace`` are dropped.
- Content: text, ``toolUse``, ``reasoningContent``; citations, images and other block kinds in an
  answer are dropped. Converse answers carry no id: the client gets one the gateway makes.
- Streams: ``messageStart`` starts the answer, ``contentBlockStart`` (tool use) and
  ``contentBlockDelta`` (text, tool input JSON text, reasoning text, signature, redacted content)
  fill blocks, ``contentBlockStop`` closes one, ``messageStop`` gives the stop reason and
  ``metadata`` the usage; the answer finishes at ``metadata`` (or at the end of the stream after a
  ``messageStop``). An exception event (``throttlingException``, ``modelStreamErrorException``...,
  or the provider's ``error`` event in Anthropic's envelope) ends the stream with that error.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from agentkube.dataplane.llm.apis import CONVERSE, Kind
from agentkube.dataplane.llm.translate import fields as f
from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.anthropic_messages import tool_input
from agentkube.dataplane.llm.translate.blocks import Blocks
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError, kind_for
from agentkube.dataplane.llm.translate.sse import event_object

__all__ = ["Decoder", "build_request", "parse_response", "parse_usage", "tool_use_id"]

_STOP_IN: Final[dict[str, ir.StopReason]] = {
    "end_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "stop_sequence": "stop_sequence",
    "model_context_window_exceeded": "context_window",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "stop",
    "malformed_tool_use": "stop",
}
_IMAGE_FORMATS: Final = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_FORMATS: Final = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_EFFORTS: Final = frozenset({"low", "medium", "high", "xhigh", "max"})
_TOOL_ID = re.compile(r"[^A-Za-z0-9_.:-]")
# Converse's document name: alphanumerics, whitespace, hyphens, parentheses and square brackets, no
# two whitespace characters in a row.
_NAME_OUT = re.compile(r"[^A-Za-z0-9\s\-()\[\]]")
_SPACES = re.compile(r"\s+")
# ConverseStream's exception events, by event name.
_EXCEPTIONS: Final = frozenset(
    {
        "internalServerException",
        "modelStreamErrorException",
        "validationException",
        "throttlingException",
        "serviceUnavailableException",
        "modelTimeoutException",
    }
)


# --- requests -------------------------------------------------------------------------------------


def tool_use_id(call_id: str) -> str:
    """A tool-call id as Converse takes it (``[A-Za-z0-9_.:-]{1,64}``), the same for the same input."""
    return (_TOOL_ID.sub("_", call_id) or "tooluse")[:64]


def build_request(req: ir.Request, model: str) -> dict[str, Any]:
    """The internal form as a Converse request body (``model`` goes in the path, not the body)."""
    if req.verbosity not in (None, "medium"):
        raise TranslationError("verbosity", f"is not supported by {CONVERSE}; remove it")
    system = [{"text": t.text} for t in req.system if t.text]
    documents = _Names()
    messages: list[dict[str, Any]] = []
    has_tool_blocks = False
    for message in req.messages:
        if message.role == "system":
            system.extend({"text": p.text} for p in message.parts if isinstance(p, ir.Text) and p.text)
            continue
        blocks = [b for p in message.parts if (b := _block(p, documents)) is not None]
        if not blocks:
            continue
        has_tool_blocks = has_tool_blocks or any("toolUse" in b or "toolResult" in b for b in blocks)
        if messages and messages[-1]["role"] == message.role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": message.role, "content": blocks})
    for turn in messages:
        if turn["role"] == "user":
            content = turn["content"]
            turn["content"] = [b for b in content if "toolResult" in b] + [
                b for b in content if "toolResult" not in b
            ]
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    if req.max_tokens is not None:
        inference["maxTokens"] = max(req.max_tokens, 1)
    if req.temperature is not None:
        inference["temperature"] = min(max(req.temperature, 0.0), 1.0)
    if req.top_p is not None:
        inference["topP"] = req.top_p
    if req.stop:
        inference["stopSequences"] = list(req.stop)
    if inference:
        body["inferenceConfig"] = inference
    tools = _tool_config(req, has_tool_blocks)
    if tools is not None:
        body["toolConfig"] = tools
    output: dict[str, Any] = {}
    additional: dict[str, Any] = {}
    _reasoning(req.reasoning, output, additional)
    if req.output_format is not None:
        schema: dict[str, Any] = {
            "schema": orjson.dumps(req.output_format.schema).decode(),
            "name": req.output_format.name,
        }
        if req.output_format.description:
            schema["description"] = req.output_format.description
        output["textFormat"] = {"type": "json_schema", "structure": {"jsonSchema": schema}}
    if output:
        body["outputConfig"] = output
    if additional:
        body["additionalModelRequestFields"] = additional
    return body


def _reasoning(reasoning: ir.Reasoning | None, output: dict[str, Any], additional: dict[str, Any]) -> None:
    if reasoning is None or not reasoning.wanted:
        return
    if reasoning.mode == "enabled":
        additional["thinking"] = {"type": "enabled", "budget_tokens": reasoning.budget_tokens or 1024}
        return
    if reasoning.mode == "adaptive":
        additional["thinking"] = {"type": "adaptive"}
    effort = "low" if reasoning.effort == "minimal" else reasoning.effort
    if effort in _EFFORTS:
        output["effort"] = effort


def _tool_config(req: ir.Request, has_tool_blocks: bool) -> dict[str, Any] | None:
    if not req.tools:
        return None
    choice = req.tool_choice
    if choice == "none" and not has_tool_blocks:
        return None
    config: dict[str, Any] = {"tools": [{"toolSpec": _tool(t)} for t in req.tools]}
    if isinstance(choice, ir.NamedTool):
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


def _tool(tool: ir.Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:
        spec["description"] = tool.description
    if tool.strict is not None:
        spec["strict"] = tool.strict
    return spec


class _Names:
    """Document names, unique within a request as Converse requires."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def name(self, filename: str | None) -> str:
        base = _SPACES.sub(" ", _NAME_OUT.sub("-", filename or "")).strip()[:190] or "document"
        name, n = base, 1
        while name in self._used:
            n += 1
            name = f"{base}-{n}"
        self._used.add(name)
        return name


def _block(part: ir.Part, names: _Names) -> dict[str, Any] | None:
    if isinstance(part, ir.Text | ir.Refusal):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Image):
        return {"image": _image(part)}
    if isinstance(part, ir.Document):
        return {"document": _document(part, names)}
    if isinstance(part, ir.ToolCall):
        return {
            "toolUse": {
                "toolUseId": tool_use_id(part.id),
                "name": part.name,
                "input": tool_input(part.arguments),
            }
        }
    if isinstance(part, ir.ToolResult):
        content = [b for c in part.content if (b := _result_block(c, names)) is not None]
        result: dict[str, Any] = {
            "toolUseId": tool_use_id(part.call_id),
            "content": content or [{"text": ""}],
        }
        if part.is_error:
            result["status"] = "error"
        return {"toolResult": result}
    if isinstance(part, ir.Thinking):
        if not part.signature:
            return None
        return {"reasoningContent": {"reasoningText": {"text": part.text, "signature": part.signature}}}
    return {"reasoningContent": {"redactedContent": part.data}}


def _result_block(content: ir.Content, names: _Names) -> dict[str, Any] | None:
    if isinstance(content, ir.Text):
        return {"text": content.text}
    if isinstance(content, ir.Image):
        return {"image": _image(content)}
    return {"document": _document(content, names)}


def _image(image: ir.Image) -> dict[str, Any]:
    if image.url is not None:
        if image.url.startswith("s3://"):
            media = image.media_type or _guess(image.url, _IMAGE_FORMATS)
            fmt = _IMAGE_FORMATS.get(media or "")
            if fmt is None:
                raise TranslationError(
                    "messages", "an s3:// image URL must end in .png, .jpeg, .gif or .webp"
                )
            return {"format": fmt, "source": {"s3Location": {"uri": image.url}}}
        raise TranslationError(
            "messages",
            f"image URLs cannot be sent to {CONVERSE} (it takes inline data or s3:// URLs); "
            "send the image as base64 data",
        )
    fmt = _IMAGE_FORMATS.get(image.media_type or "")
    if fmt is None:
        raise TranslationError(
            "messages",
            f"image media type {image.media_type!r} is not supported by {CONVERSE} "
            "(use PNG, JPEG, GIF or WebP)",
        )
    return {"format": fmt, "source": {"bytes": image.data or ""}}


def _document(doc: ir.Document, names: _Names) -> dict[str, Any]:
    fmt = _DOCUMENT_FORMATS.get(doc.media_type)
    source: dict[str, Any]
    if doc.url is not None:
        if not doc.url.startswith("s3://"):
            raise TranslationError(
                "messages", f"document URLs cannot be sent to {CONVERSE} (it takes inline data or s3:// URLs)"
            )
        guessed = _guess(doc.url, _DOCUMENT_FORMATS)
        fmt = _DOCUMENT_FORMATS[guessed] if guessed is not None else fmt
        source = {"s3Location": {"uri": doc.url}}
    else:
        source = {"bytes": doc.data or ""}
    if fmt is None:
        raise TranslationError(
            "messages",
            f"document media type {doc.media_type!r} is not supported by {CONVERSE} "
            "(use PDF, CSV, DOC, DOCX, XLS, XLSX, HTML, plain text or Markdown)",
        )
    return {"format": fmt, "name": names.name(doc.filename), "source": source}


def _guess(url: str, formats: dict[str, str]) -> str | None:
    suffix = url.rsplit(".", 1)[-1].lower()
    suffix = "jpeg" if suffix == "jpg" else suffix
    return next((media for media, fmt in formats.items() if fmt == suffix), None)


# --- responses ------------------------------------------------------------------------------------


def parse_usage(usage: Any) -> ir.Usage:
    if not isinstance(usage, dict):
        return ir.Usage()
    read = f.count(usage.get("cacheReadInputTokens"))
    write = f.count(usage.get("cacheWriteInputTokens"))
    return ir.Usage(
        input_tokens=f.count(usage.get("inputTokens")) + read + write,
        output_tokens=f.count(usage.get("outputTokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def _part(block: dict[str, Any]) -> ir.Part | None:
    if isinstance(block.get("text"), str):
        return ir.Text(block["text"])
    use = block.get("toolUse")
    if isinstance(use, dict):
        value = use.get("input")
        return ir.ToolCall(
            id=str(use.get("toolUseId") or ""),
            name=str(use.get("name") or ""),
            arguments=orjson.dumps(value if isinstance(value, dict) else {}).decode(),
        )
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict):
        text = reasoning.get("reasoningText")
        if isinstance(text, dict):
            return ir.Thinking(str(text.get("text") or ""), str(text.get("signature") or "") or None)
        if isinstance(reasoning.get("redactedContent"), str):
            return ir.RedactedThinking(reasoning["redactedContent"])
    return None


def parse_response(body: dict[str, Any]) -> ir.Response:
    """A Converse answer as the internal form."""
    message = f.as_obj(f.as_obj(body.get("output")).get("message"))
    content = message.get("content")
    if not isinstance(content, list):
        raise UpstreamError("bad_gateway", "the upstream's Converse answer has no output message")
    parts = [p for block in content if isinstance(block, dict) and (p := _part(block)) is not None]
    return ir.Response(
        id="",
        model="",
        parts=parts,
        stop=_STOP_IN.get(str(body.get("stopReason")), "stop"),
        usage=parse_usage(body.get("usage")),
    )


# --- streams --------------------------------------------------------------------------------------


class Decoder:
    """ConverseStream events (``event``: the event type, ``data``: its JSON) in, internal events out."""

    def __init__(self) -> None:
        self._blocks = Blocks()
        self._stop: ir.StopReason | None = None
        self._started = False
        self._done = False

    def feed(self, event: str | None, data: bytes) -> list[ir.Event]:
        if self._done:
            return []
        out: list[ir.Event] = []
        payload = event_object(data)
        if isinstance(payload, str):
            return self._fail(out, "bad_gateway", payload)
        if event == "error" or event in _EXCEPTIONS:
            return self._exception(event or "error", payload, out)
        if not self._started and event in ("contentBlockStart", "contentBlockDelta", "messageStop"):
            self._start(out)
        if event == "messageStart":
            if not self._started:
                self._start(out)
        elif event == "contentBlockStart":
            self._block_start(payload, out)
        elif event == "contentBlockDelta":
            self._block_delta(payload, out)
        elif event == "contentBlockStop":
            if payload.get("contentBlockIndex") == self._blocks.open_key:
                self._blocks.close(out)
        elif event == "messageStop":
            self._blocks.close(out)
            self._stop = _STOP_IN.get(str(payload.get("stopReason")), "stop")
        elif event == "metadata":
            if not self._started:
                self._start(out)
            self._blocks.close(out)
            self._done = True
            out.append(ir.Finish(self._stop or "stop", parse_usage(payload.get("usage"))))
        return out

    def _start(self, out: list[ir.Event]) -> None:
        self._started = True
        out.append(ir.Start("", ""))

    def _block_start(self, payload: dict[str, Any], out: list[ir.Event]) -> None:
        index = payload.get("contentBlockIndex")
        start = f.as_obj(payload.get("start"))
        use = start.get("toolUse")
        if not isinstance(index, int) or not isinstance(use, dict):
            return  # tool results and images in an answer: not translated
        entered = self._blocks.enter(index, out)
        if entered is None:
            return
        out.append(ir.ToolCallStart(entered[0], str(use.get("toolUseId") or ""), str(use.get("name") or "")))

    def _block_delta(self, payload: dict[str, Any], out: list[ir.Event]) -> None:
        index = payload.get("contentBlockIndex")
        delta = payload.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            return
        entered = self._blocks.enter(index, out)
        if entered is None:
            self._fail(out, "bad_gateway", "the upstream sent a delta for a content block it had closed")
            return
        ours = entered[0]
        if isinstance(delta.get("text"), str):
            out.append(ir.TextDelta(ours, delta["text"]))
        elif isinstance(delta.get("toolUse"), dict):
            text = delta["toolUse"].get("input")
            if isinstance(text, str) and text:
                out.append(ir.ToolArgsDelta(ours, text))
        elif isinstance(delta.get("reasoningContent"), dict):
            reasoning = delta["reasoningContent"]
            if isinstance(reasoning.get("text"), str):
                out.append(ir.ThinkingDelta(ours, reasoning["text"]))
            if isinstance(reasoning.get("signature"), str):
                out.append(ir.SignatureDelta(ours, reasoning["signature"]))
            if isinstance(reasoning.get("redactedContent"), str):
                out.append(ir.RedactedThinkingBlock(ours, reasoning["redactedContent"]))
        # citations, tool results and images: not translated

    def _exception(self, event: str, payload: dict[str, Any], out: list[ir.Event]) -> list[ir.Event]:
        if event == "error":  # the provider's Anthropic-shaped error event
            error = f.as_obj(payload.get("error"))
            error_type = error.get("type")
            kind = kind_for(500, error_type if isinstance(error_type, str) else None)
            return self._fail(out, kind, str(error.get("message") or "upstream stream error"))
        kinds: dict[str, Kind] = {
            "throttlingException": "rate_limit",
            "validationException": "invalid_request",
            "serviceUnavailableException": "overloaded",
            "modelTimeoutException": "timeout",
        }
        return self._fail(out, kinds.get(event, "api_error"), str(payload.get("message") or event))

    def _fail(self, out: list[ir.Event], kind: Kind, message: str) -> list[ir.Event]:
        self._blocks.close(out)
        self._done = True
        out.append(ir.Error(kind, message))
        return out

    def finish(self) -> list[ir.Event]:
        if self._done:
            return []
        if self._stop is not None:  # messageStop came, metadata did not: finish without usage
            out: list[ir.Event] = []
            self._blocks.close(out)
            self._done = True
            out.append(ir.Finish(self._stop))
            return out
        return self._fail([], "bad_gateway", "the upstream's stream ended before the answer finished")
