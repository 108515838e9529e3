"""Texts: where the user and tool text of each API's request body lives.

``texts(api, body)`` yields a ``Slot`` for every string a guardrail inspects: the container holding it,
the key (or index) under which, the text's ``Origin`` and its path for error messages. Writing
``slot.container[slot.key] = new`` replaces the text in place.

What is inspected, per API:

- ``openai-chat``: ``messages[]`` of role ``user`` (string content, or ``text`` parts of a content
  list), ``tool`` and the legacy ``function`` (their content, string or text parts).
- ``openai-responses``: ``input`` when a string; else its items: messages of role ``user`` (string
  content or ``input_text`` parts), and the outputs of client-side tools sent back:
  ``function_call_output``, ``custom_tool_call_output`` (string or ``input_text`` parts),
  ``local_shell_call_output``, ``apply_patch_call_output`` and ``shell_call_output``
  (``stdout``/``stderr``).
- ``anthropic-messages``: ``messages[]`` of role ``user``: string content, ``text`` blocks,
  ``tool_result`` blocks (string content, or their ``text`` blocks and the text blocks of their
  ``search_result`` blocks), plain-text ``document`` blocks (``source.data``, ``source.content``,
  ``context``) and ``search_result`` blocks.
- ``openai-embeddings``: ``input`` when a string or a list of strings (token arrays are left alone).

Never inspected: system prompts (chat ``system`` and ``developer`` messages, Responses
``instructions`` and ``system``/``developer`` items, Messages' top-level ``system``): they are the
operator's own. Nor assistant turns (chat ``assistant`` messages, Responses ``assistant`` messages
and model-side items such as ``function_call``/``reasoning``/``mcp_call``, Messages ``assistant``
turns): in a conversation they are what the provider itself produced, so they carry nothing it has
not seen, and rewriting them would change history the model wrote (and break provider prompt caches)
or block a conversation for what the model said. The limit: a client that writes assistant turns
itself (few-shot examples, prefill) gets them past the guardrails; they guard what users and tools
put in. Tool definitions, names, image and file data (base64 or URLs), and any field not listed are
left alone too. A body of an unexpected shape yields what it can and never raises.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, MutableSequence
from dataclasses import dataclass
from typing import Any, Final

from agentkube.dataplane.llm.apis import API, CHAT, EMBEDDINGS, MESSAGES, RESPONSES
from agentkube.dataplane.llm.guardrails.check import Origin

__all__ = ["Slot", "texts"]

Container = MutableMapping[str, Any] | MutableSequence[Any]
Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Slot:
    """One inspected string: ``container[key]`` is the text, from ``origin``, at ``path`` in the body."""

    container: Container
    key: str | int
    origin: Origin
    path: Path

    @property
    def text(self) -> str:
        value: str = self.container[self.key]  # type: ignore[index]
        return value

    def replace(self, text: str) -> None:
        self.container[self.key] = text  # type: ignore[index]

    @property
    def where(self) -> str:
        """The path as a client reads it: ``messages[2].content[0].text``."""
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


_CHAT_ORIGINS: Final[dict[str, Origin]] = {"user": "user", "tool": "tool", "function": "tool"}
_RESPONSES_TOOL_OUTPUTS: Final = frozenset(
    {"function_call_output", "custom_tool_call_output", "local_shell_call_output", "apply_patch_call_output"}
)


def texts(api: API, body: MutableMapping[str, Any]) -> Iterator[Slot]:
    """Every user and tool text of ``body``, a request of ``api`` (see the module docstring)."""
    if api == CHAT:
        yield from _chat(body)
    elif api == RESPONSES:
        yield from _responses(body)
    elif api == MESSAGES:
        yield from _messages(body)
    elif api == EMBEDDINGS:
        yield from _embeddings(body)


def _string(container: Container, key: str | int, origin: Origin, path: Path) -> Iterator[Slot]:
    try:
        value = container[key]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return
    if isinstance(value, str) and value:
        yield Slot(container, key, origin, path)


def _parts(value: Any, origin: Origin, path: Path, kinds: frozenset[str]) -> Iterator[Slot]:
    """A string, or the text parts (of the given ``type``s) of a list of parts."""
    if isinstance(value, str):
        return
    if isinstance(value, list):
        for i, part in enumerate(value):
            if isinstance(part, dict) and part.get("type", "text") in kinds:
                yield from _string(part, "text", origin, (*path, i, "text"))


def _content(holder: MutableMapping[str, Any], key: str, origin: Origin, path: Path,
             kinds: frozenset[str]) -> Iterator[Slot]:  # fmt: skip
    yield from _string(holder, key, origin, (*path, key))
    yield from _parts(holder.get(key), origin, (*path, key), kinds)


_TEXT: Final = frozenset({"text"})
_INPUT_TEXT: Final = frozenset({"input_text", "text"})


def _items(body: MutableMapping[str, Any], key: str) -> Iterator[tuple[int, MutableMapping[str, Any]]]:
    items = body.get(key)
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield i, item


def _chat(body: MutableMapping[str, Any]) -> Iterator[Slot]:
    for i, message in _items(body, "messages"):
        origin = _CHAT_ORIGINS.get(message.get("role"))  # type: ignore[arg-type]
        if origin is not None:
            yield from _content(message, "content", origin, ("messages", i), _TEXT)


def _responses(body: MutableMapping[str, Any]) -> Iterator[Slot]:
    yield from _string(body, "input", "user", ("input",))
    for i, item in _items(body, "input"):
        kind = item.get("type", "message")
        path: Path = ("input", i)
        if kind == "message" and item.get("role") == "user":
            yield from _content(item, "content", "user", path, _INPUT_TEXT)
        elif kind in _RESPONSES_TOOL_OUTPUTS:
            yield from _content(item, "output", "tool", path, _INPUT_TEXT)
        elif kind == "shell_call_output":
            output = item.get("output")
            if isinstance(output, list):
                for j, chunk in enumerate(output):
                    if isinstance(chunk, dict):
                        for stream in ("stdout", "stderr"):
                            yield from _string(chunk, stream, "tool", (*path, "output", j, stream))


def _messages(body: MutableMapping[str, Any]) -> Iterator[Slot]:
    for i, message in _items(body, "messages"):
        if message.get("role") != "user":
            continue
        path: Path = ("messages", i, "content")
        yield from _string(message, "content", "user", path)
        blocks = message.get("content")
        if not isinstance(blocks, list):
            continue
        for j, block in enumerate(blocks):
            if isinstance(block, dict):
                yield from _block(block, "user", (*path, j))


def _block(block: MutableMapping[str, Any], origin: Origin, path: Path) -> Iterator[Slot]:
    kind = block.get("type")
    if kind == "text":
        yield from _string(block, "text", origin, (*path, "text"))
    elif kind == "tool_result":
        yield from _string(block, "content", "tool", (*path, "content"))
        inner = block.get("content")
        if isinstance(inner, list):
            for k, part in enumerate(inner):
                if isinstance(part, dict) and part.get("type") != "tool_result":
                    yield from _block(part, "tool", (*path, "content", k))
    elif kind == "search_result":
        yield from _parts(block.get("content"), origin, (*path, "content"), _TEXT)
    elif kind == "document":
        source = block.get("source")
        if isinstance(source, dict):
            if source.get("type") == "text":
                yield from _string(source, "data", origin, (*path, "source", "data"))
            elif source.get("type") == "content":
                yield from _content(source, "content", origin, (*path, "source"), _TEXT)
        yield from _string(block, "context", origin, (*path, "context"))


def _embeddings(body: MutableMapping[str, Any]) -> Iterator[Slot]:
    yield from _string(body, "input", "embedding", ("input",))
    value = body.get("input")
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                yield Slot(value, i, "embedding", ("input", i))
