"""The one internal form every chat API is translated through: requests, responses, stream events.

Each API module reads its wire form into these types and writes these types back into its wire form;
a translation is always ``parse`` in the client's API then ``build`` in the upstream's (and back for
responses and streams), never a direct mapping between two wire forms. The types hold only what at
least two of the three APIs can express; whatever exists in one API alone is decided (kept, dropped
or refused) by that API's parser and documented there.

Conventions a reader may rely on:

- Tool results are parts of a ``user`` message (Anthropic's form). Chat Completions' ``tool`` messages
  and Responses' ``function_call_output`` items become such messages, and go back out as those.
- Tool-call arguments are JSON *text* (OpenAI's form); Anthropic's ``input`` object is serialised on
  the way in and parsed on the way out.
- ``Usage.input_tokens`` counts every input token, cached or not (OpenAI's convention); Anthropic's
  ``input_tokens`` excludes cache reads and writes and is converted both ways.
- ``Request.system`` holds the system prompt given before the conversation (Anthropic ``system``,
  Responses ``instructions``, leading Chat ``system``/``developer`` messages); a system message
  later in the conversation stays in place as a ``Message(role="system")``.
- A stream is a sequence of events in which content blocks are sequential: a block's events all come
  before the next block starts, and ``index`` numbers blocks from 0 in order of appearance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agentkube.dataplane.llm.apis import Kind

__all__ = [
    "BlockStop",
    "Content",
    "Document",
    "Error",
    "Event",
    "Finish",
    "Image",
    "Message",
    "NamedTool",
    "OutputFormat",
    "Part",
    "Reasoning",
    "RedactedThinking",
    "RedactedThinkingBlock",
    "Refusal",
    "RefusalDelta",
    "Request",
    "Response",
    "Role",
    "SignatureDelta",
    "Start",
    "StopReason",
    "Text",
    "TextDelta",
    "Thinking",
    "ThinkingDelta",
    "Tool",
    "ToolArgsDelta",
    "ToolCall",
    "ToolCallStart",
    "ToolChoice",
    "ToolResult",
    "Usage",
]

Role = Literal["system", "user", "assistant"]

StopReason = Literal[
    "stop",  # a natural end of the turn
    "stop_sequence",  # a requested stop sequence was produced (Response.stop_sequence says which, when known)
    "length",  # the output token limit
    "context_window",  # the model's context window filled up
    "tool_calls",  # the turn ends with tool calls for the client to run
    "content_filter",  # the provider's content filter cut the output
    "refusal",  # the model (or a streaming classifier) refused
    "pause",  # a long server-side turn paused (Anthropic ``pause_turn``)
]


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class Image:
    """An image by URL (``https://``, passed on as a URL, never fetched) or by inline base64 ``data``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None  # OpenAI's low/high/auto; no Anthropic equivalent


@dataclass(slots=True)
class Document:
    """A file for the model to read: base64 ``data`` of ``media_type`` (PDF), or a ``url``."""

    data: str | None = None
    media_type: str = "application/pdf"
    url: str | None = None
    filename: str | None = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model produced it


Content = Text | Image | Document


@dataclass(slots=True)
class ToolResult:
    call_id: str
    content: list[Content]
    is_error: bool = False


@dataclass(slots=True)
class Thinking:
    """Reasoning text the model showed, with the provider's opaque ``signature`` when it gave one."""

    text: str
    signature: str | None = None


@dataclass(slots=True)
class RedactedThinking:
    """Reasoning the provider returned encrypted only (Anthropic ``redacted_thinking``)."""

    data: str


@dataclass(slots=True)
class Refusal:
    text: str


Part = Text | Image | Document | ToolCall | ToolResult | Thinking | RedactedThinking | Refusal


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


@dataclass(slots=True)
class Tool:
    name: str
    parameters: dict[str, Any]  # a JSON Schema of an object
    description: str | None = None
    strict: bool | None = None


@dataclass(slots=True)
class NamedTool:
    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedTool


@dataclass(slots=True)
class Reasoning:
    """What the client asked of the model's reasoning, in whichever terms its API has.

    ``effort`` is OpenAI's ``reasoning_effort`` / ``reasoning.effort`` or Anthropic's
    ``output_config.effort``; ``mode`` and ``budget_tokens`` are Anthropic's ``thinking``; ``summary``
    is Responses' ``reasoning.summary``.
    """

    effort: str | None = None
    mode: Literal["enabled", "adaptive", "disabled"] | None = None
    budget_tokens: int | None = None
    summary: str | None = None
    display: str | None = None

    @property
    def wanted(self) -> bool:
        """Whether the client asked for reasoning at all (as opposed to asking it off)."""
        if self.mode is not None:
            return self.mode != "disabled"
        return self.effort is not None and self.effort != "none"


@dataclass(slots=True)
class OutputFormat:
    """Structured output: the answer must be JSON matching ``schema``."""

    schema: dict[str, Any]
    name: str = "output"
    strict: bool | None = None
    description: str | None = None


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # Chat Completions' stream_options.include_usage
    user: str | None = None
    reasoning: Reasoning | None = None
    output_format: OutputFormat | None = None
    verbosity: str | None = None
    openai: dict[str, Any] = field(default_factory=dict)
    """Fields Chat Completions and Responses share verbatim (``metadata``, ``store``, ``service_tier``,
    ``prompt_cache_key``, ``prompt_cache_retention``, ``safety_identifier``); bookkeeping only, so the
    Messages writer drops them."""


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0  # all input tokens, cached ones included
    output_tokens: int = 0  # reasoning tokens included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Response:
    id: str
    model: str
    parts: list[Part]
    stop: StopReason = "stop"
    usage: Usage = field(default_factory=Usage)
    stop_sequence: str | None = None
    created: int | None = None


# Stream events. ``index`` numbers content blocks in order (see the module docstring).


@dataclass(slots=True)
class Start:
    id: str
    model: str
    usage: Usage | None = None  # Anthropic reports input tokens here; OpenAI only at the end


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class RefusalDelta:
    index: int
    text: str


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(slots=True)
class ToolArgsDelta:
    index: int
    delta: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str


@dataclass(slots=True)
class SignatureDelta:
    index: int
    signature: str


@dataclass(slots=True)
class RedactedThinkingBlock:
    index: int
    data: str


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class Finish:
    stop: StopReason
    usage: Usage | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class Error:
    """The upstream ended the stream with an error (its own error event, or a cut stream)."""

    kind: Kind
    message: str
    param: str | None = None
    code: str | None = None


Event = (
    Start
    | TextDelta
    | RefusalDelta
    | ToolCallStart
    | ToolArgsDelta
    | ThinkingDelta
    | SignatureDelta
    | RedactedThinkingBlock
    | BlockStop
    | Finish
    | Error
)
