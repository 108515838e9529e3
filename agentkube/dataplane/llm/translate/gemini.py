"""Google Gemini's generateContent API (``google-gemini``): to and from the internal form.

An upstream API only (Vertex AI's ``publishers/google`` models): requests are built in it
(``build_request``), answers (``parse_response``) and ``streamGenerateContent?alt=sse`` streams
(``Decoder``) are read from it. What each mapping keeps, and what it loses:

Requests (``build_request``):

- Turns: ``user`` stays ``user``, ``assistant`` becomes ``model``; consecutive turns of one role are
  merged (Gemini alternates them), and a turn left without parts is dropped. The system prompt is
  ``systemInstruction`` (one text part per block); a ``system`` message later in the conversation
  is appended to ``systemInstruction`` too (Gemini has no system turn), so its place in the
  conversation is lost.
- Text is a ``text`` part (empty text dropped). Images and documents with inline data are
  ``inlineData`` (``mimeType`` + the base64 text as it came); by URL (``https://``, ``http://``,
  ``gs://``) they are ``fileData`` (``fileUri``), which Vertex AI fetches itself. ``fileData`` needs
  a media type: the client's, else one guessed from the URL's file extension; an image URL with
  neither is refused (send it inline as a ``data:`` URL). ``detail`` and document titles are dropped.
- Tools: each is a ``functionDeclarations`` entry with its JSON Schema as ``parametersJsonSchema``
  (passed unchanged, so no schema rewriting); ``strict`` is dropped. ``tool_choice`` ``auto`` /
  ``required`` / ``none`` / a named tool become ``functionCallingConfig`` mode ``AUTO`` / ``ANY`` /
  ``NONE`` / ``ANY`` with ``allowedFunctionNames``. ``parallel_tool_calls: false`` is dropped:
  Gemini has no such switch.
- Tool calls in the history are ``functionCall`` parts (``args``: the arguments' JSON object; text
  that is not one becomes ``{"_raw_arguments": text}``). Gemini has no call ids, so the gateway
  makes them (see below) and a tool result is sent as a ``functionResponse`` named after the call
  it answers (looked up by id in the history; a result whose call is not in the history is refused)
  with ``response: {"output": <its text>}`` (``{"error": ...}`` when ``is_error``), in the order the
  client gave. Media inside a tool result follow the ``functionResponse`` parts in the same turn.
- Thinking blocks of earlier turns are dropped (their signatures are another provider's or the
  client's; Gemini's own travel in the call ids). For Gemini 3 and later, a ``model`` turn with
  function calls but no thought signature (a conversation begun with another model, or ids a client
  rewrote) gets Google's documented ``skip_thought_signature_validator`` on its first call, which
  Gemini 3 otherwise refuses.
- ``generationConfig``: ``temperature`` (unchanged: Gemini takes 0..2 as OpenAI does), ``topP``,
  ``maxOutputTokens``, ``stopSequences``, structured output as ``responseMimeType:
  application/json`` + ``responseJsonSchema``. ``candidateCount`` is never sent (one candidate: the
  client APIs' parsers refuse ``n`` > 1) and ``topK`` cannot be asked for (the internal form has no
  ``top_k``: Anthropic's is refused by its parser). ``thinkingConfig``: a thinking budget is
  ``thinkingBudget``; an effort is ``thinkingLevel`` for Gemini 3 and later (``minimal``/``low`` ->
  ``low``, higher -> ``high``) and a budget for earlier models (``minimal`` 512, ``low`` 1,024,
  ``medium`` 8,192, higher 24,576); thinking turned off is ``thinkingBudget: 0`` (Gemini 3 cannot
  turn it off: ``thinkingLevel: low``); any thinking asked for sets ``includeThoughts``.
- ``verbosity`` other than ``medium`` is refused; ``user`` and OpenAI's bookkeeping fields are
  dropped; no ``safetySettings`` are sent (the model's defaults apply).

Answers and streams (``parse_response``, ``Decoder``): candidate 0 only. ``text`` parts are text
(consecutive ones merged), ``thought: true`` parts are thinking without a signature, ``functionCall``
parts are tool calls whose arguments are their ``args`` as JSON text. Call ids are
``call_<the first 32 letters and digits of responseId>_<n>`` (n counts the answer's calls from 0; a random
base when the answer has no ``responseId``), stable for one answer, and when the call carries a
``thoughtSignature`` it rides in the id after ``__ts_`` (URL-safe base64, unpadded), so a client that
sends the call back sends Gemini its signature too. Gemini's own ``functionCall.id`` is not kept.
Parts of other kinds (images the model made, code execution) and ``thoughtSignature`` on text parts
are dropped. In a stream, text arrives as deltas and each function call whole (one start, one
arguments delta); the chunk with ``finishReason`` ends the answer.

Finish reasons: ``STOP`` -> ``stop`` (``tool_calls`` when the answer holds calls; a stop sequence is
reported as ``stop``, Gemini does not tell them apart), ``MAX_TOKENS`` -> ``length``, ``SAFETY``,
``RECITATION``, ``BLOCKLIST``, ``PROHIBITED_CONTENT``, ``SPII``, ``MODEL_ARMOR`` and the ``IMAGE_*``
filters -> ``content_filter``; every other reason (``OTHER``, ``LANGUAGE``,
``MALFORMED_FUNCTION_CALL``, ``UNEXPECTED_TOOL_CALL``, ...) -> ``stop``, its ``finishMessage``
dropped. A prompt Gemini blocked (``promptFeedback.blockReason``, no candidates) is a refusal whose
text names the reason, stopped by ``content_filter``.

Usage (``usageMetadata``): input = ``promptTokenCount`` (cached tokens included, as the internal form
counts), cache reads = ``cachedContentTokenCount``, output = ``candidatesTokenCount`` +
``thoughtsTokenCount`` (reasoning = the latter); ``toolUsePromptTokenCount`` is not counted.

An error object (``{"error": {"code", "message", "status"}}``) in an answer or a stream chunk is an
``UpstreamError`` whose kind comes from its ``status`` (``error_kind``).
"""

from __future__ import annotations

import mimetypes
import re
import uuid
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from agentkube.dataplane.llm.apis import GEMINI, Kind
from agentkube.dataplane.llm.translate import fields as f
from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.anthropic_messages import tool_input
from agentkube.dataplane.llm.translate.blocks import Blocks
from agentkube.dataplane.llm.translate.errors import TranslationError, UpstreamError, kind_for
from agentkube.dataplane.llm.translate.sse import event_object

__all__ = [
    "SKIP_SIGNATURE",
    "Decoder",
    "build_request",
    "call_id",
    "call_signature",
    "error_kind",
    "parse_response",
    "parse_usage",
]

SKIP_SIGNATURE: Final = "skip_thought_signature_validator"
"""Google's documented stand-in for a thought signature a function call never had."""
_SIGNATURE_MARK: Final = "__ts_"
_URL_SAFE: Final = str.maketrans("+/", "-_")
_STANDARD: Final = str.maketrans("-_", "+/")
_NOT_ALNUM: Final = re.compile(r"[^A-Za-z0-9]")
_GENERATION: Final = re.compile(r"gemini-(\d+)")
_FILTERED: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MODEL_ARMOR",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
_BUDGETS: Final[dict[str, int]] = {
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
# google.rpc.Code names, as Google's error envelopes carry them in ``status``.
_STATUS: Final[dict[str, Kind]] = {
    "INVALID_ARGUMENT": "invalid_request",
    "FAILED_PRECONDITION": "invalid_request",
    "OUT_OF_RANGE": "invalid_request",
    "ALREADY_EXISTS": "invalid_request",
    "ABORTED": "api_error",
    "UNAUTHENTICATED": "authentication",
    "PERMISSION_DENIED": "permission",
    "NOT_FOUND": "not_found",
    "RESOURCE_EXHAUSTED": "rate_limit",
    "CANCELLED": "api_error",
    "UNKNOWN": "api_error",
    "INTERNAL": "api_error",
    "DATA_LOSS": "api_error",
    "UNIMPLEMENTED": "invalid_request",
    "UNAVAILABLE": "overloaded",
    "DEADLINE_EXCEEDED": "timeout",
}


def error_kind(status: Any, http_status: int) -> Kind:
    """The gateway's kind of a Google error: by its ``status`` name when known, else the HTTP status."""
    if isinstance(status, str) and status in _STATUS:
        return _STATUS[status]
    return kind_for(http_status)


def _upstream_error(error: dict[str, Any], http_status: int = 500) -> UpstreamError:
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else http_status
    message = error.get("message")
    return UpstreamError(
        error_kind(error.get("status"), status),
        message if isinstance(message, str) and message else f"Vertex AI answered HTTP {status}",
    )


# --- call ids -------------------------------------------------------------------------------------


def _base(response_id: str) -> str:
    return _NOT_ALNUM.sub("", response_id)[:32] or uuid.uuid4().hex[:16]


def call_id(base: str, n: int, signature: str | None = None) -> str:
    """The id of an answer's ``n``-th call (``base``: the answer's), carrying its thought signature."""
    made = f"call_{base}_{n}"
    if signature:
        made += _SIGNATURE_MARK + signature.translate(_URL_SAFE).rstrip("=")
    return made


def call_signature(made: str) -> str | None:
    """The thought signature ``call_id`` put in an id (standard base64, padded); None when none."""
    _, mark, carried = made.partition(_SIGNATURE_MARK)
    if not mark or not carried:
        return None
    signature = carried.translate(_STANDARD)
    return signature + "=" * (-len(signature) % 4)


# --- requests -------------------------------------------------------------------------------------


def _generation(model: str) -> int:
    found = _GENERATION.search(model)
    return int(found.group(1)) if found else 0


def build_request(req: ir.Request, model: str) -> dict[str, Any]:
    """The internal form as a generateContent request for ``model`` (the model goes in the URL)."""
    if req.verbosity not in (None, "medium"):
        raise TranslationError("verbosity", f"is not supported by {GEMINI}; remove it")
    later_system: list[str] = []
    contents = _contents(req.messages, later_system)
    if _generation(model) >= 3:
        _sign_unsigned_calls(contents)
    body: dict[str, Any] = {"contents": contents}
    system = [t.text for t in req.system if t.text] + later_system
    if system:
        body["systemInstruction"] = {"parts": [{"text": t} for t in system]}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in req.tools]}]
        config = _calling_config(req.tool_choice)
        if config is not None:
            body["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(req, model)
    if generation:
        body["generationConfig"] = generation
    return body


def _contents(messages: list[ir.Message], later_system: list[str]) -> list[dict[str, Any]]:
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role == "system":
            later_system.extend(p.text for p in message.parts if isinstance(p, ir.Text) and p.text)
            continue
        responses: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, ir.ToolResult):
                name = names.get(part.call_id)
                if name is None:
                    raise TranslationError(
                        where,
                        f"the tool result for {part.call_id!r} answers no tool call earlier in the "
                        f"conversation; {GEMINI} needs the called function's name",
                    )
                responses.append(_function_response(name, part))
                parts.extend(_media(c, where) for c in part.content if not isinstance(c, ir.Text))
            elif isinstance(part, ir.ToolCall):
                names[part.id] = part.name
                parts.append(_function_call(part))
            else:
                built = _part(part, where)
                if built is not None:
                    parts.append(built)
        parts = responses + parts
        if not parts:
            continue
        role = "model" if message.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _part(part: ir.Part, where: str) -> dict[str, Any] | None:
    if isinstance(part, ir.Text | ir.Refusal):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Image | ir.Document):
        return _media(part, where)
    return None  # thinking of earlier turns (see the module docstring)


def _function_call(call: ir.ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"functionCall": {"name": call.name, "args": tool_input(call.arguments)}}
    signature = call_signature(call.id)
    if signature is not None:
        out["thoughtSignature"] = signature
    return out


def _function_response(name: str, result: ir.ToolResult) -> dict[str, Any]:
    text = "\n".join(c.text for c in result.content if isinstance(c, ir.Text))
    return {"functionResponse": {"name": name, "response": {"error" if result.is_error else "output": text}}}


def _sign_unsigned_calls(contents: list[dict[str, Any]]) -> None:
    for content in contents:
        if content["role"] != "model":
            continue
        calls = [p for p in content["parts"] if "functionCall" in p]
        if calls and not any("thoughtSignature" in p for p in calls):
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE


def _media(item: ir.Image | ir.Document, where: str) -> dict[str, Any]:
    if item.data is not None:
        media_type = item.media_type
        if not media_type:
            raise TranslationError(where, "inline media without a media type cannot be sent to Gemini")
        return {"inlineData": {"mimeType": media_type, "data": item.data}}
    url = item.url or ""
    if not url.startswith(("https://", "http://", "gs://")):
        raise TranslationError(where, f"media URL {url[:16]!r}... is not supported by {GEMINI}; use https")
    media_type = item.media_type
    if isinstance(item, ir.Image) and not media_type:
        media_type = mimetypes.guess_type(urlsplit(url).path)[0]
        if media_type is None or not media_type.startswith("image/"):
            raise TranslationError(
                where,
                f"the media type of image {url[:64]!r} cannot be told from its name, and {GEMINI} "
                "needs it; send the image inline (a data: URL) or use a URL ending in .png, .jpg, ...",
            )
    return {"fileData": {"mimeType": media_type, "fileUri": url}}


def _declaration(tool: ir.Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["parametersJsonSchema"] = tool.parameters
    return out


def _calling_config(choice: ir.ToolChoice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, ir.NamedTool):
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}


def _generation_config(req: ir.Request, model: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.temperature is not None:
        out["temperature"] = req.temperature
    if req.top_p is not None:
        out["topP"] = req.top_p
    if req.max_tokens is not None:
        out["maxOutputTokens"] = req.max_tokens
    if req.stop:
        out["stopSequences"] = req.stop
    if req.output_format is not None:
        out["responseMimeType"] = "application/json"
        out["responseJsonSchema"] = req.output_format.schema
    thinking = _thinking(req.reasoning, _generation(model))
    if thinking is not None:
        out["thinkingConfig"] = thinking
    return out


def _thinking(reasoning: ir.Reasoning | None, generation: int) -> dict[str, Any] | None:
    if reasoning is None:
        return None
    if not reasoning.wanted:
        return {"thinkingLevel": "low"} if generation >= 3 else {"thinkingBudget": 0}
    if reasoning.mode == "enabled" and reasoning.budget_tokens:
        return {"thinkingBudget": reasoning.budget_tokens, "includeThoughts": True}
    effort = reasoning.effort
    if effort in _BUDGETS:
        if generation >= 3:
            return {
                "thinkingLevel": "low" if effort in ("minimal", "low") else "high",
                "includeThoughts": True,
            }
        return {"thinkingBudget": _BUDGETS[effort], "includeThoughts": True}
    return {"includeThoughts": True}  # adaptive: the model's own budget


# --- answers --------------------------------------------------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_usage(metadata: Any) -> ir.Usage:
    """``usageMetadata`` as the internal form's usage (see the module docstring)."""
    data = f.as_obj(metadata)
    thoughts = _int(data.get("thoughtsTokenCount"))
    return ir.Usage(
        input_tokens=_int(data.get("promptTokenCount")),
        output_tokens=_int(data.get("candidatesTokenCount")) + thoughts,
        cache_read_tokens=_int(data.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts or None,
    )


def _stop(reason: Any, calls: bool) -> ir.StopReason:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if calls else "stop"


def _blocked(body: dict[str, Any]) -> str | None:
    """The refusal text of a prompt Gemini blocked, or None."""
    feedback = f.as_obj(body.get("promptFeedback"))
    reason = feedback.get("blockReason")
    if not reason:
        return None
    message = feedback.get("blockReasonMessage")
    detail = f": {message}" if isinstance(message, str) and message else ""
    return f"the prompt was blocked by Vertex AI ({reason}){detail}"


def _candidate(body: dict[str, Any]) -> dict[str, Any] | None:
    candidates = body.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def _parts_of(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    parts = f.as_obj(candidate.get("content")).get("parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _arguments(call: dict[str, Any]) -> str:
    args = call.get("args")
    return orjson.dumps(args if isinstance(args, dict) else {}).decode()


def _signature(part: dict[str, Any]) -> str | None:
    value = part.get("thoughtSignature")
    return value if isinstance(value, str) and value else None


def parse_response(body: dict[str, Any]) -> ir.Response:
    """A generateContent answer as the internal form."""
    if isinstance(body.get("error"), dict):
        raise _upstream_error(body["error"])
    response_id = str(body.get("responseId") or "")
    model = str(body.get("modelVersion") or "")
    usage = parse_usage(body.get("usageMetadata"))
    candidate = _candidate(body)
    if candidate is None:
        blocked = _blocked(body)
        if blocked is None:
            raise UpstreamError("bad_gateway", "the upstream's answer has no candidates")
        return ir.Response(response_id, model, [ir.Refusal(blocked)], "content_filter", usage)
    base = _base(response_id)
    parts: list[ir.Part] = []
    calls = 0
    for part in _parts_of(candidate):
        text = part.get("text")
        call = part.get("functionCall")
        if isinstance(call, dict):
            parts.append(
                ir.ToolCall(
                    call_id(base, calls, _signature(part)), str(call.get("name") or ""), _arguments(call)
                )
            )
            calls += 1
        elif isinstance(text, str) and text:
            previous = parts[-1] if parts else None
            if part.get("thought") is True:
                if isinstance(previous, ir.Thinking):
                    previous.text += text
                else:
                    parts.append(ir.Thinking(text))
            elif isinstance(previous, ir.Text):
                previous.text += text
            else:
                parts.append(ir.Text(text))
    stop = _stop(candidate.get("finishReason"), calls > 0)
    return ir.Response(response_id, model, parts, stop, usage)


# --- streams --------------------------------------------------------------------------------------


class Decoder:
    """streamGenerateContent SSE chunks (``data`` one GenerateContentResponse) in, internal events out."""

    def __init__(self) -> None:
        self._blocks = Blocks()
        self._run = 0
        self._kind: str | None = None  # the open block's kind: text, thinking
        self._calls = 0
        self._base = ""
        self._usage: ir.Usage | None = None
        self._started = False
        self._done = False

    def feed(self, event: str | None, data: bytes) -> list[ir.Event]:
        if self._done:
            return []
        out: list[ir.Event] = []
        payload = event_object(data, "chunk")
        if isinstance(payload, str):
            return self._fail(out, "bad_gateway", payload)
        if isinstance(payload.get("error"), dict):
            error = _upstream_error(payload["error"])
            return self._fail(out, error.kind, error.message)
        metadata = payload.get("usageMetadata")
        if isinstance(metadata, dict):
            self._usage = parse_usage(metadata)
        if not self._started:
            self._started = True
            response_id = str(payload.get("responseId") or "")
            self._base = _base(response_id)
            start_usage = ir.Usage(input_tokens=self._usage.input_tokens) if self._usage else None
            out.append(ir.Start(response_id, str(payload.get("modelVersion") or ""), start_usage))
        candidate = _candidate(payload)
        if candidate is None:
            blocked = _blocked(payload)
            if blocked is not None:
                self._blocks.close(out)
                self._run += 1
                entered = self._blocks.enter(("refusal", self._run), out)
                assert entered is not None  # a new key is never a closed one
                out.append(ir.RefusalDelta(entered[0], blocked))
                return self._end(out, "content_filter")
            return out
        for part in _parts_of(candidate):
            self._part(part, out)
        reason = candidate.get("finishReason")
        if reason:
            return self._end(out, _stop(reason, self._calls > 0))
        return out

    def _part(self, part: dict[str, Any], out: list[ir.Event]) -> None:
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._run += 1
            self._kind = None
            entered = self._blocks.enter(("call", self._run), out)
            assert entered is not None  # a new key is never a closed one
            index = entered[0]
            made = call_id(self._base, self._calls, _signature(part))
            self._calls += 1
            out.append(ir.ToolCallStart(index, made, str(call.get("name") or "")))
            out.append(ir.ToolArgsDelta(index, _arguments(call)))
            self._blocks.close(out)
            return
        text = part.get("text")
        if not isinstance(text, str) or not text:
            return  # a signature-only part, or a kind not translated
        kind = "thinking" if part.get("thought") is True else "text"
        if kind != self._kind:
            self._run += 1
            self._kind = kind
        entered = self._blocks.enter((kind, self._run), out)
        assert entered is not None
        index = entered[0]
        out.append(ir.ThinkingDelta(index, text) if kind == "thinking" else ir.TextDelta(index, text))

    def _end(self, out: list[ir.Event], stop: ir.StopReason) -> list[ir.Event]:
        self._blocks.close(out)
        self._done = True
        out.append(ir.Finish(stop, self._usage))
        return out

    def _fail(self, out: list[ir.Event], kind: Kind, message: str) -> list[ir.Event]:
        self._blocks.close(out)
        self._done = True
        out.append(ir.Error(kind, message))
        return out

    def finish(self) -> list[ir.Event]:
        if self._done:
            return []
        return self._fail([], "bad_gateway", "the upstream's stream ended before the answer finished")
