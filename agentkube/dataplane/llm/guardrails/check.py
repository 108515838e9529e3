"""Check: the one interface every guardrail implements, and ``Blocked``, what a rejection raises.

A check looks at one piece of text at a time, told where the text came from (``Origin``), and
answers with a ``Verdict``: let it through (``PASS``), send on a rewritten text (``Verdict(text=...,
redactions=n)``), or reject the request (``Verdict(reason=...)``). ``Guardrails`` walks a request body,
hands each user and tool text to each check whose ``origins`` include the text's origin, writes
rewritten texts back and turns the first rejection into ``Blocked`` naming the check and the place.

A check is synchronous and must not do I/O: it runs on the gateway's event loop, once per text of
every request. A model-based check fits as long as it scores locally (a small classifier loaded at
start-up); one that calls a service needs an asynchronous variant of this interface, which does not
exist yet. A rejection's reason is shown to the client and logged: it says what kind of text was
found, never the text itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = ["ORIGINS", "PASS", "Blocked", "Check", "Origin", "Verdict"]

Origin = Literal["user", "tool", "embedding"]
"""Where a text came from: a user turn, a tool's output sent back to the model, or embeddings input."""

ORIGINS: Final[frozenset[Origin]] = frozenset({"user", "tool", "embedding"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check decided about one text.

    ``text`` is the text to send on instead (None: unchanged), with ``redactions`` pieces replaced;
    ``reason`` set means the request is rejected, and says why without quoting the text.
    """

    text: str | None = None
    redactions: int = 0
    reason: str | None = None


PASS: Final = Verdict()
"""The verdict of a check that found nothing: the text goes on unchanged."""


class Check(Protocol):
    """One guardrail, applied to one text at a time."""

    @property
    def name(self) -> str:
        """The guardrail's name as the config and the client's error spell it (``prompt-injection``)."""
        ...

    @property
    def origins(self) -> frozenset[Origin]:
        """The origins of the texts this check inspects; texts of other origins never reach it."""
        ...

    def inspect(self, text: str, origin: Origin) -> Verdict:
        """Decide about ``text``; must not raise for any input and must not keep ``text``."""
        ...


class Blocked(Exception):
    """An input guardrail rejected the request; the gateway answers 400 naming ``guardrail``.

    ``reason`` says where in the request body and what was found (``messages[2].content: tries to
    override the instructions``); it never contains the prompt's text.
    """

    def __init__(self, guardrail: str, reason: str) -> None:
        super().__init__(f"guardrail {guardrail}: {reason}")
        self.guardrail = guardrail
        self.reason = reason
