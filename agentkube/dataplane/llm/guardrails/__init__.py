"""Guardrails: PII redaction and the prompt-injection filter, each behind the one ``Check`` interface.

    from agentkube.dataplane.llm.guardrails import Guardrails, Blocked

    guardrails = Guardrails(pii_redaction=True, input_filters=["prompt-injection"])
    outcome = guardrails.apply(api, body)   # raises Blocked(guardrail, reason); body redacted in place

Modules, in the order a text meets them: ``texts`` (where user and tool text lives in each API's
body), ``chain`` (``Guardrails``: the checks in order), ``check`` (the interface and ``Blocked``),
``injection`` (the filter, with ``confusables`` undoing visual obfuscation) and ``pii`` (redaction).
No network, no model: regular expressions compiled at import and a few checksums.
"""

from agentkube.dataplane.llm.guardrails.chain import INPUT_FILTERS, Guardrails, Outcome
from agentkube.dataplane.llm.guardrails.check import ORIGINS, PASS, Blocked, Check, Origin, Verdict
from agentkube.dataplane.llm.guardrails.injection import Assessment, PromptInjection
from agentkube.dataplane.llm.guardrails.pii import PLACEHOLDER_OF, PLACEHOLDERS, PiiRedaction

__all__ = [
    "INPUT_FILTERS",
    "ORIGINS",
    "PASS",
    "PLACEHOLDERS",
    "PLACEHOLDER_OF",
    "Assessment",
    "Blocked",
    "Check",
    "Guardrails",
    "Origin",
    "Outcome",
    "PiiRedaction",
    "PromptInjection",
    "Verdict",
]
