"""Chain: the checks one gateway runs, in order, over every user and tool text of a request.

``Guardrails(pii_redaction, input_filters)`` is built once from the config's ``guardrails`` and
shared by every request; ``apply(api, body)`` is the pipeline step. Order: the input filters run first,
in the order configured, on each text as the client sent it; redaction runs last, so a filter never
sees placeholders and a rejected request is not rewritten for nothing. The first rejection raises
``Blocked``; the gateway answers 400 in the client API's envelope naming ``Blocked.guardrail``.

The body is rewritten in place: ``Outcome.changed`` says whether the caller must serialize it again
instead of forwarding the bytes it received. With no check configured, ``apply`` returns at once
without walking the body.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from agentkube.dataplane.llm.apis import API
from agentkube.dataplane.llm.guardrails.check import Blocked, Check
from agentkube.dataplane.llm.guardrails.injection import PromptInjection
from agentkube.dataplane.llm.guardrails.pii import PiiRedaction
from agentkube.dataplane.llm.guardrails.texts import texts

__all__ = ["INPUT_FILTERS", "Guardrails", "Outcome"]

INPUT_FILTERS: Final[dict[str, type[PromptInjection]]] = {"prompt-injection": PromptInjection}
"""The input filters ``inputFilters`` may name."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``apply`` did: the body (the same object, rewritten in place), how many pieces were
    redacted, and whether any text changed (then serialize the body again instead of forwarding the
    client's bytes)."""

    body: MutableMapping[str, Any]
    redactions: int = 0
    changed: bool = False


class Guardrails:
    """The guardrails of one gateway. Safe to share between concurrent requests (no state per call)."""

    def __init__(
        self,
        pii_redaction: bool = False,
        input_filters: Sequence[str] = (),
        *,
        checks: Sequence[Check] = (),
    ) -> None:
        """Build the chain: ``input_filters`` by name, then ``checks`` (other checks, such as a
        model-based one, in the order given), then PII redaction when asked for.

        An unknown filter name raises ``ValueError`` naming it and the known ones.
        """
        chain: list[Check] = []
        for i, name in enumerate(input_filters):
            factory = INPUT_FILTERS.get(name)
            if factory is None:
                known = ", ".join(INPUT_FILTERS)
                raise ValueError(f"guardrails.inputFilters[{i}]: unknown filter {name!r}; known: {known}")
            chain.append(factory())
        chain.extend(checks)
        if pii_redaction:
            chain.append(PiiRedaction())
        self.checks: tuple[Check, ...] = tuple(chain)

    @property
    def enabled(self) -> bool:
        """Whether any check is configured (else ``apply`` does nothing)."""
        return bool(self.checks)

    def apply(self, api: API, body: MutableMapping[str, Any]) -> Outcome:
        """Run every check over the user and tool texts of ``body`` (a request of ``api``).

        Raises ``Blocked`` on the first text a check rejects; texts already redacted by then stay
        redacted in ``body``.
        """
        if not self.checks:
            return Outcome(body)
        redactions = 0
        changed = False
        for slot in texts(api, body):
            text = slot.text
            for check in self.checks:
                if slot.origin not in check.origins:
                    continue
                verdict = check.inspect(text, slot.origin)
                if verdict.reason is not None:
                    raise Blocked(check.name, f"{slot.where}: {verdict.reason}")
                if verdict.text is not None:
                    text = verdict.text
                    redactions += verdict.redactions
            if text is not slot.text:
                slot.replace(text)
                changed = True
        return Outcome(body, redactions, changed)
