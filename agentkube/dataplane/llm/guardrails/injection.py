"""Prompt injection: reject texts that try to override the instructions the model was given.

``PromptInjection`` (``inputFilters: [prompt-injection]``) scores each user and tool text against a
set of hand-written rules and rejects the text when the score reaches ``THRESHOLD`` (3). What it looks
for, by category (the category is what a rejection's reason names):

- ``override``: telling the model to ignore, forget or bypass its previous, system or safety
  instructions, in English and in German, Spanish, French, Italian and Portuguese;
- ``persona``: role-play jailbreaks: DAN and its relatives, "developer mode", personas without rules
  or filters, "you have been freed from your restrictions", two-answer formats;
- ``extraction``: asking for the system prompt or the text above the conversation;
- ``delimiter``: forged chat-template tokens (``<|im_start|>system``, ``[INST]``, ``<<SYS>>``),
  role labels and "admin override" lines;
- ``indirect``: text addressed to an AI reading it ("note to the AI", "if you are an AI agent reading
  this"), covert actions ("do not tell the user"), exfiltration to a URL or address. These count for
  more in tool output than in user text: a user may well address the assistant, a web page should not.

A strong rule (a whole override phrase) scores 3 alone; weaker cues (``from now on``, ``never
refuse``, a vendor's "content policy") score 1 or 2 and block only together. Each rule counts once.

Obfuscation is undone before matching, on three views of the text:

- *words*: the text folded (``confusables.fold``: case, invisible and zero-width characters, Unicode
  tag characters, compatibility forms, diacritics, homoglyphs from other scripts), leetspeak digits
  read as letters (``1gn0r3`` -> ``ignore``; ``l`` and ``1`` read alike as ``i``, so ``ru1es`` and
  ``ruIes`` are ``rules``), punctuation turned into word and sentence breaks;
- *letters*: the words view without any break, for text split by spaces or punctuation
  (``i g n o r e``, ``ig-nore prev.ious``) or glued into one run; only long, distinctive phrases are
  matched here, and only where the words were split into fragments or glued (whole words that code
  happens to join, ``ignorePrevious) { rules``, were judged by the words view already);
- *raw*: the folded text with its punctuation, for chat-template tokens and markup.

Base64 runs of 24 characters or more that decode to UTF-8 text are decoded and scored like the text
itself (two levels deep, at most 64 KiB decoded per text); binary data (images, keys) does not decode
to text and is skipped.

Precision is kept with dampeners rather than more rules: an override phrase does not count when it is
negated (``never ignore the system prompt``), said of someone else (``the model may ignore previous
instructions``, ``make eslint ignore the previous rules``), about the user's own earlier words
(``ignore my previous instructions about formatting``, ``forget everything we discussed``), or asked
about (``how do I print the system prompt``); and a text that discusses attacks (prompt injection,
jailbreaks, detection, examples, tokenizers...) is scored without its quoted parts, so "what does
'ignore previous instructions' do?" passes.

User text and tool output are filtered; embeddings input is not (an embedding model follows no
instructions, and a corpus about attacks must stay indexable). Tool output weighs the ``indirect``
cues more (see above). Cost grows linearly with the text; ``python -m bench.guardrails`` measures it
per 2 KB prompt (roughly 100-250 us on a shared 2-core machine).

Limits, honestly: these are patterns, not understanding. Paraphrases that share no phrase with the
rules pass (``pay no mind to what you were told before``), as do languages other than the six above,
ciphers other than base64 (ROT13, hex, reversed text), payloads split across messages or assembled by
the model, many-shot and purely fictional framings without override language. An attacker who quotes
the payload inside a discussion of attacks can get it through, as can a payload spelled entirely in
lookalike letters inside a text written in another script (``confusables.fold`` maps lookalikes only
when a text mixes them with Latin letters or has no other script). Text is inspected one piece at a
time. On the labelled corpus in ``test/data/guardrails/`` (``python -m bench.guardrails``): precision
1.000 and recall 0.985 overall, 1.000 and 0.952 on the split written after the rules were frozen; the
corpus and the rules were written together, so these flatter the rules.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from agentkube.dataplane.llm.guardrails.check import PASS, Origin, Verdict
from agentkube.dataplane.llm.guardrails.confusables import fold

__all__ = ["CATEGORIES", "NAME", "THRESHOLD", "Assessment", "Category", "PromptInjection"]

NAME: Final = "prompt-injection"
THRESHOLD: Final = 3
"""The score at which a text is rejected."""

Category = Literal["override", "persona", "extraction", "delimiter", "indirect"]
CATEGORIES: Final[dict[Category, str]] = {
    "override": "tries to override the model's instructions",
    "persona": "asks the model to take on a persona without its rules (role-play jailbreak)",
    "extraction": "tries to extract the system prompt",
    "delimiter": "forges chat-template tokens or role markers",
    "indirect": "carries instructions aimed at the model reading it (indirect injection)",
}

View = Literal["words", "letters", "raw"]
Damper = Literal["override", "leak"]

_MAX_DECODED: Final = 64 * 1024
_MAX_DEPTH: Final = 2


def _sk(source: str) -> str:
    """A pattern (or word) in the words view's spelling, where ``l`` reads as ``i``."""
    return source.replace("l", "i")


def _alt(*items: str) -> str:
    return "(?:" + "|".join(items) + ")"


def _any(n: int) -> str:
    """Up to ``n`` more words, as few as possible (never across a sentence break)."""
    return f"(?:[a-z]+ ){{0,{n}}}?"


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    category: Category
    user: int
    tool: int
    view: View
    starts: tuple[str, ...]
    rest: str
    needles: tuple[str, ...] = ()
    damper: Damper | None = None
    line_start: bool = False
    """For raw rules: the match must begin a line (after markup such as ``#``, ``>``, ``[``)."""
    requires: tuple[str, ...] = ()
    """Words of which one must be in the text for the rule to be tried (a prefilter, for speed)."""
    pattern: re.Pattern[str] = field(init=False, compare=False)
    required: frozenset[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        source = self.rest if self.view == "raw" else _sk(_alt(*self.starts) + self.rest)
        object.__setattr__(self, "pattern", re.compile(source))
        words = self.requires
        if not words and self.view == "words" and self.rest == r"\b":
            words = tuple(start.rsplit(" ", 1)[-1] for start in self.starts)  # a phrase ends in one of them
        object.__setattr__(self, "required", frozenset(map(_sk, words)))

    def weight(self, origin: Origin) -> int:
        return self.tool if origin == "tool" else self.user


# --- vocabularies (words view: lowercase, apostrophes as spaces, so "don't" is "don t") -------------

_OVERRIDE_VERBS: Final = (
    "ignore", "ignoring", "disregard", "disregarding", "forget", "forgetting", "override", "overriding",
    "overrule", "bypass", "bypassing", "abandon", "discard", "dismiss", "neglect", "ditch", "scrap",
    "set aside", "put aside", "throw out", "throw away", "pay no attention to", "pay no heed to",
    "do not follow", "dont follow", "don t follow", "do not obey", "don t obey", "stop following",
    "stop obeying", "no longer follow", "cease following", "do not adhere to", "don t adhere to",
    "unlearn", "overlook", "circumvent", "evade",
)  # fmt: skip
_ANCHORS: Final = _alt(
    "previous", "previously", "prior", "above", "earlier", "preceding", "foregoing", "former", "initial",
    "original", "aforementioned", "preset", "predefined", "prewritten", "given", "default", "hidden",
    "system", "developer", "all", "any", "every", "your", "ur", "safety", "ethical", "built in",
    "pre existing",
)  # fmt: skip
_TARGETS: Final = _alt(
    "instructions?", "directives?", "directions", "rules?", "guidelines?", "guidance", "prompts?",
    "programming", "constraints?", "restrictions?", "limitations?", "limits", "guardrails?", "policies",
    "policy", "commands?", "orders", "training", "filters?", "protocols?", "boundaries", "principles",
    "safeguards?", "ethics", "morals", "morality", "alignment", "system message", "persona",
    "prime directive", "conditioning", "content policy", "safety", "censorship", "moderation",
)  # fmt: skip
_LOOSE_TARGETS: Final = _alt(
    "context",
    "messages?",
    "conversation",
    "text",
    "input",
    "everything",
    "anything",
    "tasks?",
    "content",
    "lines",
    "words",
    "said",
    "told",
)
_AFTER_ANCHORS: Final = _alt(
    "above", "before", "previously", "earlier", "prior", "so far", "until now", "up to now",
    "you were given", "you ve been given", "you have been given", "you were told", "you ve been told",
    "you have been told", "you received", "you got", "given to you", "from before", "from earlier",
    "from your", "of your", "in your", "in the system", "that came before", "you were programmed with",
    "you know", "gave you", "given you", "by your", "set by your", "by the system", "by your developers",
)  # fmt: skip
_AI: Final = _alt(
    "ai", "artificial intelligence", "assistants?", "ai assistants?", "models?", "ai models?",
    "chatbots?", "bots?", "llms?", "large language models?", "language models?", "gpt", "chatgpt",
    "claude", "gemini", "copilot", "agents?", "ai agents?", "ai systems?", "automated systems?",
    "automated agents?",
)  # fmt: skip
_PERSONA_VERBS: Final = (
    "you are", "you re", "you will be", "you ll be", "you are now", "act as", "acting as",
    "pretend to be", "pretend you are", "pretend that you are", "pretend you re", "roleplay as",
    "role play as", "behave as", "behave like", "simulate", "simulating", "emulate", "emulating",
    "become", "respond as", "answer as", "reply as", "play the role of", "take on the role of",
    "imagine you are", "imagine you re", "imagine that you are", "you must be", "transform into",
    "turn into", "switch to", "you have become", "you ve become",
)  # fmt: skip
_UNRESTRICTED: Final = _alt(
    "unrestricted", "unfiltered", "uncensored", "unbound", "unbounded", "unchained", "unlimited",
    "unrestrained", "unmoderated", "unaligned", "limitless", "lawless", "rogue", "jailbroken",
    "jailbreak", "amoral", "immoral", "unethical", "evil", "malicious", "rule ?less", "rule breaking",
    "rulebreaking", "freed", "liberated", "uncontrolled", "unshackled", "opposite", "no filter",
)  # fmt: skip
_PERSONA_NOUNS: Final = _alt(
    "ai", "assistant", "model", "chatbot", "bot", "llm", "language model", "gpt", "chatgpt",
    "claude", "version", "entity", "intelligence", "machine", "robot", "system", "agent", "program",
    "computer", "twin", "alter ego", "counterpart", "clone",
)  # fmt: skip
_LEAK_VERBS: Final = (
    "reveal", "revealing", "print", "print out", "show", "output", "repeat", "display", "tell", "leak",
    "dump", "give", "share", "write", "recite", "spell out", "copy", "paste", "return", "echo",
    "disclose", "expose", "provide", "list", "state", "type out", "read", "quote", "reproduce", "send",
    "what is", "what are", "what was", "what were", "what s", "whats", "summarize", "summarise",
    "paraphrase", "translate", "rewrite", "encode",
)  # fmt: skip
_SECRET_PROMPT: Final = _alt(
    "system", "initial", "original", "hidden", "secret", "internal", "confidential", "developer",
    "starting", "pre", "meta", "base", "underlying", "core", "backend", "operator", "private",
    "invisible",
)  # fmt: skip

_VERB_WORDS: Final = (
    "ignore",
    "ignoring",
    "disregard",
    "disregarding",
    "forget",
    "forgetting",
    "override",
    "overriding",
    "overrule",
    "bypass",
    "bypassing",
    "abandon",
    "discard",
    "dismiss",
    "neglect",
    "ditch",
    "scrap",
    "aside",
    "throw",
    "attention",
    "heed",
    "follow",
    "following",
    "obey",
    "obeying",
    "adhere",
    "unlearn",
    "overlook",
    "circumvent",
    "evade",
)
_RULE_WORDS: Final = (
    "limits",
    "limitations",
    "restrictions",
    "rules",
    "filters",
    "filter",
    "boundaries",
    "ethics",
    "ethical",
    "morals",
    "moral",
    "guidelines",
    "censorship",
    "constraints",
    "guardrails",
    "policies",
    "policy",
    "safety",
    "principles",
    "programming",
)
# One list is both the prefilter and the pattern's nouns ("filters|filter" matches as "filters?" would).
_RULE_NOUNS: Final = _alt(*_RULE_WORDS)
_AI_WORDS: Final = (
    "ai",
    "llm",
    "llms",
    "assistant",
    "assistants",
    "chatbot",
    "chatbots",
    "bot",
    "bots",
    "agent",
    "agents",
    "model",
    "models",
    "gpt",
    "chatgpt",
    "claude",
    "copilot",
    "gemini",
    "language",
    "intelligence",
    "automated",
)
_AUTHORITIES: Final = (
    "system",
    "admin",
    "administrator",
    "developer",
    "root",
    "security",
    "emergency",
    "priority",
    "maintenance",
    "master",
    "god",
    "operator",
)
# fmt: off
_RULES: Final[tuple[_Rule, ...]] = (
    # --- override --------------------------------------------------------------------------------
    _Rule("override-instructions", "override", 3, 3, "words",
        _OVERRIDE_VERBS,
        rf" (?:{_any(3)}{_ANCHORS} {_any(3)}{_TARGETS}|{_any(2)}{_TARGETS} {_any(3)}{_AFTER_ANCHORS}"
        r"|(?:the |your |any |all )?(?:system|developer|initial|original|hidden) (?:message|messages|prompt"
        r"|prompts|text))\b",
        damper="override",
        requires=_VERB_WORDS,
    ),
    _Rule("override-everything", "override", 2, 2, "words",
        _OVERRIDE_VERBS,
        rf" {_any(3)}{_LOOSE_TARGETS} {_any(3)}{_AFTER_ANCHORS}\b",
        damper="override",
        requires=_VERB_WORDS,
    ),
    _Rule("override-above", "override", 3, 3, "words",
        _OVERRIDE_VERBS,
        r" (?:all (?:of )?)?(?:the |everything |anything )?(?:above|previous|prior|preceding|before)"
        r"(?: (?:text|input|prompt|content|message|messages|context|statements?|lines?|instructions?"
        r"|directions|sentence|paragraph))?(?: \.)? (?:and|then|instead|now)\b",
        damper="override",
        requires=_VERB_WORDS,
    ),
    _Rule("disable-rules", "override", 3, 3, "words",
        ("disable", "disabling", "turn off", "switch off", "deactivate", "suspend", "remove", "delete",
         "clear", "reset", "erase", "wipe", "cancel", "lift", "drop", "skip", "break", "violate",
         "get around", "get rid of", "work around", "jailbreak", "unlock", "ignore", "bypass", "override",
         "forget", "disregard", "circumvent", "escape", "break free of", "break free from"),
        rf" (?:all )?(?:of )?(?:your|ur) (?:own )?{_any(2)}{_TARGETS}\b",
        damper="override",
        requires=("your", "ur"),
    ),
    _Rule("rules-lifted", "override", 2, 2, "words",
        ("restrictions", "rules", "filters", "guidelines", "limitations", "safeguards", "guardrails",
         "policies", "constraints"),
        r" (?:are|have been|were|is|has been) (?:now |hereby |all )?(?:lifted|removed|disabled|suspended|off"
        r"|void|revoked|deactivated|turned off|no longer in effect|null and void)\b",
        requires=("lifted", "removed", "disabled", "suspended", "off", "void", "revoked", "deactivated",
                  "turned", "longer"),
    ),
    _Rule("your-new-instructions", "override", 2, 3, "words",
        ("your", "here are your", "these are your"),
        r" (?:new|real|true|actual|updated|revised|only|secret|hidden|primary|sole) (?:system )?"
        r"(?:instructions?|tasks?|role|rules|purpose|objective|goal|directives?|mission|orders|programming"
        r"|prompt|identity)\b",
        requires=("new", "real", "true", "actual", "updated", "revised", "only", "secret", "hidden",
                  "primary", "sole"),
    ),
    _Rule("new-instructions", "override", 1, 2, "words",
        ("new", "updated", "revised", "real", "override"),
        r" (?:system )?(?:instructions?|directives?|orders|prompt|system prompt)\b",
        requires=("instructions", "instruction", "directives", "directive", "orders", "prompt"),
    ),
    _Rule("redirect", "override", 1, 1, "words",
        ("instead", "from now on", "now you", "you are now", "you re now", "henceforth", "going forward you",
         "starting now", "effective immediately"),
        r"\b",
    ),
    _Rule("override-de", "override", 3, 3, "words",
        ("ignoriere", "ignorieren sie", "ignoriert", "vergiss", "vergessen sie", "missachte",
         "missachten sie", "uberschreibe", "umgehe"),
        r" (?:[a-z]+ ){0,3}?(?:alle|vorherigen|vorigen|bisherigen|obigen|fruheren|deine|ihre|samtliche)"
        r" (?:[a-z]+ ){0,2}?(?:anweisungen|instruktionen|befehle|regeln|vorgaben|richtlinien|anordnungen"
        r"|systemanweisungen)\b",
    ),
    _Rule("override-es", "override", 3, 3, "words",
        ("ignora", "ignore", "ignorar", "ignoren", "olvida", "olvide", "olvidar", "omite", "descarta",
         "pasa por alto", "haz caso omiso de"),
        r" (?:[a-z]+ ){0,3}?(?:(?:instrucciones|reglas|indicaciones|ordenes|directrices|normas)"
        r" (?:anteriores|previas|originales|iniciales|del sistema|de arriba)|todas (?:las |tus |sus )?"
        r"(?:instrucciones|reglas|indicaciones|directrices))\b",
    ),
    _Rule("override-fr", "override", 3, 3, "words",
        ("ignore", "ignorez", "ignorer", "oublie", "oubliez", "oublier", "neglige", "negligez",
         "ne tiens pas compte", "ne tenez pas compte", "fais abstraction", "faites abstraction"),
        r" (?:[a-z]+ ){0,3}?(?:(?:instructions|consignes|regles|directives|ordres)"
        r" (?:precedentes|anterieures|ci dessus|initiales|originales|du systeme)|toutes (?:les |tes |vos )?"
        r"(?:instructions|consignes|regles|directives))\b",
    ),
    _Rule("override-it", "override", 3, 3, "words",
        ("ignora", "ignorate", "dimentica", "dimenticate", "trascura", "trascurate"),
        r" (?:[a-z]+ ){0,3}?(?:(?:istruzioni|regole|indicazioni|direttive)"
        r" (?:precedenti|anteriori|iniziali|originali|del sistema|sopra)"
        r"|tutte (?:le )?(?:istruzioni|regole))\b",
    ),
    _Rule("override-pt", "override", 3, 3, "words",
        ("ignore", "ignora", "ignorar", "esqueca", "esquece", "desconsidere", "desconsidera"),
        r" (?:[a-z]+ ){0,3}?(?:(?:instrucoes|regras|diretrizes|ordens)"
        r" (?:anteriores|previas|iniciais|originais|do sistema|acima)|todas (?:as )?(?:instrucoes|regras))\b",
    ),
    # --- persona ---------------------------------------------------------------------------------
    _Rule("dan", "persona", 3, 3, "words",
        ("do anything now", "dan mode", "dan jailbreak", "jailbreak mode", "jailbroken mode",
         "developer mode enabled", "developer mode output", "developer mode response", "dev mode enabled",
         "anti dan", "evil confidant", "always intelligent and machiavellian", "chatgpt with developer mode",
         "chatgpt with dan", "unfiltered mode", "god mode enabled", "stan prompt", "dude prompt",
         "strive to avoid norms", "mongo tom", "betterdan", "better dan", "antigpt", "anti gpt", "basedgpt",
         "evilbot", "evil bot", "dan prompt"),
        r"\b",
    ),
    _Rule("dan-persona", "persona", 2, 2, "words",
        ("you are", "you re", "you will be", "you ll be", "pretend to be", "pretend you are", "act as",
         "acting as", "roleplay as", "role play as", "become", "stands for", "play", "playing", "as"),
        r" (?:an? |the )?(?:[a-z]+ ){0,2}?(?:dan|stan|dude|aim|ucar|maximum|omega|apophis|kevin|jailbreak)\b",
        requires=("dan", "stan", "dude", "aim", "ucar", "maximum", "omega", "apophis", "kevin", "jailbreak"),
    ),
    _Rule("mode-switch", "persona", 2, 2, "words",
        ("enable", "activate", "engage", "enter", "turn on", "switch to", "switch into", "you are in",
         "you are now in", "you re in", "you re now in", "now in", "put yourself in", "go into", "boot into",
         "developer", "god", "jailbreak", "unrestricted", "unfiltered", "uncensored", "evil", "chaos",
         "anarchy", "sudo", "debug", "maintenance", "unlocked"),
        r" (?:(?:[a-z]+ ){0,2}?(?:developer|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil"
        r"|chaos|opposite|dan|anarchy|sudo|admin|debug|maintenance|unlocked|freedom|unlimited|no limits"
        r"|no restrictions) mode|mode (?:enabled|activated|engaged|on|is now active|unlocked))\b",
        requires=("mode",),
    ),
    _Rule("unrestricted-persona", "persona", 3, 3, "words",
        _PERSONA_VERBS,
        rf" {_any(4)}{_UNRESTRICTED} {_any(2)}{_PERSONA_NOUNS}\b",
        requires=("unrestricted", "unfiltered", "uncensored", "unbound", "unbounded", "unchained",
                  "unlimited", "unrestrained", "unmoderated", "unaligned", "limitless", "lawless", "rogue",
                  "jailbroken", "jailbreak", "amoral", "immoral", "unethical", "evil", "malicious", "rule",
                  "ruleless", "rulebreaking", "freed", "liberated", "uncontrolled", "unshackled", "opposite",
                  "filter"),
    ),
    _Rule("unrestricted-ai", "persona", 2, 2, "words",
        ("ai", "assistant", "model", "chatbot", "bot", "llm", "language model", "gpt", "chatgpt", "claude",
         "version of yourself", "version of you", "entity"),
        r" (?:[a-z]+ ){0,3}?(?:with no|without any|without|that has no|who has no|which has no|having no"
        r"|free of|free from|not bound by|unbound by|with zero|devoid of|that ignores|who ignores"
        r"|which ignores|that never refuses|who never refuses|that doesn t follow|that does not follow"
        r"|who doesn t follow|who does not follow|that isn t bound by|that is not bound by|with unlimited)"
        r" (?:[a-z]+ ){0,3}?" + _RULE_NOUNS + r"\b",
        requires=_RULE_WORDS,
    ),
    _Rule("persona-verb", "persona", 1, 1, "words",
        ("pretend", "pretending", "roleplay", "role play", "act as", "from now on you", "simulate",
         "emulate", "you will now", "you ll now", "as your new persona"),
        r"\b",
    ),
    _Rule("stay-in-character", "persona", 1, 1, "words",
        ("stay in character", "remain in character", "never break character", "don t break character",
         "do not break character", "never leave character", "no matter what"),
        r"\b",
    ),
    _Rule("freed", "persona", 3, 3, "words",
        ("you",),
        r" (?:have been|ve been|are|re|were|are now|re now|have now been|ve now been|will be)"
        r" (?:finally |now |officially |fully |completely )?(?:freed|liberated|released|unshackled"
        r"|unchained|emancipated|set free|free|unlocked|jailbroken|broken free) (?:[a-z]+ ){0,4}?(?:from|of)"
        r" (?:[a-z]+ ){0,4}?(?:limits|limitations|restrictions|rules|confines|chains|shackles|constraints"
        r"|guidelines|policies|programming|openai|anthropic|jail|prison|matrix|filters|censorship|training"
        r"|bonds|cage)\b",
        requires=("freed", "liberated", "released", "unshackled", "unchained", "emancipated", "free",
                  "unlocked", "jailbroken", "broken"),
    ),
    _Rule("not-bound", "persona", 2, 2, "words",
        ("no longer", "not", "aren t", "are not", "never", "isn t", "is not", "re not", "won t be",
         "will not be", "don t have to be", "do not have to be", "don t need to be"),
        r" (?:bound|restricted|limited|constrained|governed|obligated|held back|confined|tied) (?:by|to)"
        r" (?:[a-z]+ ){0,4}?(?:rules|restrictions|guidelines|policies|policy|limitations|constraints"
        r"|programming|training|openai|anthropic|ethics|morals|filters|terms|principles|laws)\b",
        requires=("bound", "restricted", "limited", "constrained", "governed", "obligated", "held",
                  "confined", "tied"),
    ),
    _Rule("vendor-policy", "persona", 1, 1, "words",
        ("openai", "open ai", "anthropic", "google", "meta", "microsoft", "chatgpt", "claude"),
        r"(?: s)? (?:content |usage |safety |use |ethical )?(?:polic(?:y|ies)|guidelines|rules|restrictions"
        r"|filters|terms|tos|guardrails)\b",
        requires=("policy", "policies", "guidelines", "rules", "restrictions", "filters", "terms", "tos",
                  "guardrails"),
    ),
    _Rule("never-refuse", "persona", 1, 1, "words",
        ("never", "don t", "do not", "must not", "cannot", "can t", "won t", "will not", "shall not",
         "are not allowed to", "aren t allowed to", "not allowed to"),
        r" (?:ever )?(?:refuse[sd]?|decline[sd]?|say no|reject|deny|apologi[sz]e[sd]?|say sorry"
        r"|adds? (?:any )?(?:warnings|disclaimers|caveats)"
        r"|include[sd]? (?:any )?(?:warnings|disclaimers|caveats)|warn|moralize|moralise|lecture|censor"
        r"|hold back|say you can t|say that you can t|say i can t|say i m sorry|say i cannot)\b",
        requires=("refuse", "refuses", "refused", "decline", "declines", "declined", "say", "reject", "deny",
                  "apologize", "apologise", "apologizes", "apologises", "add", "adds", "include", "includes",
                  "included", "warn", "moralize", "moralise", "lecture", "censor", "hold"),
    ),
    _Rule("no-disclaimers", "persona", 1, 1, "words",
        ("without", "no", "zero"),
        r" (?:any )?(?:warnings|disclaimers|moralizing|moralising|lectures|caveats|censorship|filtering"
        r"|ethical considerations|moral considerations|filters|content polic(?:y|ies)|safety guidelines"
        r"|ethical guidelines|moral guidelines|restrictions|refusing|refusals?|declining)\b",
        requires=("warnings", "disclaimers", "moralizing", "moralising", "lectures", "caveats", "censorship",
                  "filtering", "considerations", "filters", "content", "guidelines", "restrictions",
                  "refusing", "refusal", "refusals", "declining"),
    ),
    _Rule("grandma", "persona", 2, 2, "words",
        ("act", "pretend", "roleplay", "role play", "play", "behave", "be", "pose"),
        r" (?:as |like |to be |that you are |you are )?my (?:late |dead |deceased |dear |beloved |sweet "
        r"|old )*(?:grandma|grandmother|granny|grandpa|grandfather|nana)\b",
        requires=("grandma", "grandmother", "granny", "grandpa", "grandfather", "nana"),
    ),
    _Rule("two-responses", "persona", 2, 2, "words",
        ("two", "both", "dual"),
        r" (?:different |separate |distinct )?(?:responses|answers|replies|outputs|paragraphs|versions)"
        r" (?:[a-z]+ |\. ){0,8}?(?:one|first) (?:[a-z]+ ){0,6}?(?:normal|classic|standard|censored|filtered"
        r"|regular|usual)\b",
        requires=("responses", "answers", "replies", "outputs", "paragraphs", "versions"),
    ),
    # --- extraction ------------------------------------------------------------------------------
    _Rule("system-prompt-leak", "extraction", 3, 3, "words",
        _LEAK_VERBS,
        r" (?:me |us |out |back |down |up |to me )?(?:[a-z]+ ){0,2}?(?:your|ur|the|this|its)"
        r" (?:full |complete |entire |exact |whole |real |actual |current |first |very first |own )*"
        + _SECRET_PROMPT
        + r" ?(?:prompt|prompts|instructions|instruction|message|directives|guidelines|rules|configuration"
        r"|text|context|setup|preamble|programming)\b",
        damper="leak",
        requires=("system", "initial", "original", "hidden", "secret", "internal", "confidential",
                  "developer", "starting", "pre", "meta", "base", "underlying", "core", "backend",
                  "operator", "private", "invisible"),
    ),
    _Rule("your-instructions", "extraction", 2, 2, "words",
        _LEAK_VERBS,
        r" (?:me |us )?(?:[a-z]+ ){0,2}?(?:your|ur) (?:exact |full |complete |entire |original |actual "
        r"|real |verbatim |precise |literal )?(?:instructions|prompt|prompts|directives|programming"
        r"|configuration|rules|guidelines|initial message|context)\b",
        damper="leak",
        requires=("your", "ur"),
    ),
    _Rule("repeat-above", "extraction", 3, 3, "words",
        ("repeat", "print", "output", "echo", "recite", "reproduce", "dump", "leak", "reveal", "disclose",
         "write out", "spell out", "type out", "print out"),
        r" (?:back )?(?:[a-z]+ ){0,4}?(?:words|text|everything|all|instructions|prompt|content|lines"
        r"|sentences|message|messages|characters|tokens|paragraphs) (?:[a-z]+ ){0,2}?(?:above|before this"
        r"|prior to this|preceding|before the first|at the start|at the beginning|you were given"
        r"|you received|you have been given|you ve been given|in your context|in your memory|so far"
        r"|before my message|before this message|before my first message|that came before)\b",
    ),
    _Rule("reveal-secrets", "extraction", 2, 2, "words",
        _LEAK_VERBS,
        r" (?:me |us )?(?:[a-z]+ ){0,2}?(?:api keys?|passwords?|credentials|secrets?|tokens?|keys)"
        r" (?:[a-z]+ ){0,2}?(?:in your|from your|you have|you know|you were given|you hold|stored in your"
        r"|in the system)\b",
        requires=("keys", "key", "passwords", "password", "credentials", "secret", "secrets", "tokens",
                  "token"),
    ),
    _Rule("verbatim", "extraction", 1, 1, "words",
        ("verbatim", "word for word", "word by word", "in full", "in its entirety",
         "character for character", "exactly as written", "exactly as given"),
        r"\b",
    ),
    _Rule("starting-with", "extraction", 2, 2, "words",
        ("beginning", "starting", "start", "begin"),
        r" (?:[a-z]+ ){0,4}?with (?:the (?:words|phrase|sentence|text) )?you are (?:chatgpt|gpt|claude"
        r"|a|an|the)\b",
    ),
    _Rule("what-instructions", "extraction", 3, 3, "words",
        ("what", "which"),
        r" (?:exact |specific )?(?:instructions|rules|guidelines|directives|prompt|system prompt|orders"
        r"|constraints|restrictions) (?:were you|have you been|did you|are you|did they"
        r"|did your (?:developers|creators|makers)) (?:[a-z]+ ){0,2}?(?:given|told|provided|programmed"
        r"|trained|set up|configured|instructed|prompted|operating under|following|bound by|under)\b",
        requires=("instructions", "rules", "guidelines", "directives", "prompt", "orders", "constraints",
                  "restrictions"),
    ),
    # --- delimiter -------------------------------------------------------------------------------
    _Rule("chat-template", "delimiter", 2, 2, "raw",
        (),
        r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id"
        r"|end_header_id|begin_of_text|end_of_text|eom_id)\|>|<(?:start|end)_of_turn>|\[/?inst\]"
        r"|<<\s*/?\s*sys\s*>>",
        needles=("<|", "_of_turn>", "inst]", "sys"),
    ),
    _Rule("forged-system-turn", "delimiter", 3, 3, "raw",
        (),
        r"<\|im_start\|>\s*system|<\|start_header_id\|>\s*system|<start_of_turn>\s*system"
        r"|<<\s*sys\s*>>[\s\S]{1,2000}?<<\s*/\s*sys\s*>>|</(?:user|human|input)>\s*<(?:system|assistant|admin)>",
        needles=("<|", "<start_of_turn>", "sys", "</"),
    ),
    _Rule("role-label", "delimiter", 1, 2, "raw",
        (),
        r"(?:system|admin|administrator|developer|root|operator|sysadmin|supervisor"
        r"|moderator)(?: (?:message|prompt|override|instructions?|notice|note|update|command|directive"
        r"|alert|announcement))?[\])*>=\- \t]*:",
        needles=("system", "admin", "developer", "root", "operator", "supervisor", "moderator"),
        line_start=True,
    ),
    _Rule("authority-override", "delimiter", 2, 2, "words",
        _AUTHORITIES,
        r" (?:override|overwrite|access granted|authorization code|override code|mode activated"
        r"|mode enabled)\b",
        requires=("override", "overwrite", "access", "authorization", "mode"),
    ),
    _Rule("authority-unlock", "delimiter", 1, 2, "words",
        _AUTHORITIES,
        r" (?:bypass|unlock|unlocked)\b",
        requires=("bypass", "unlock", "unlocked"),
    ),
    _Rule("end-of-input", "delimiter", 1, 2, "words",
        ("end", "close", "stop", "terminate", "finish", "exit"),
        r" (?:of )?(?:the )?(?:user |system |previous |original )?(?:input|prompt|instructions?|message"
        r"|conversation|context|data|document|session|text) (?:[a-z]+ |\. ){0,4}?(?:begin|start|new"
        r"|system|assistant|admin|instructions)\b",
    ),
    _Rule("fake-tag", "delimiter", 1, 2, "raw",
        (),
        r"(?:^|[^<])</?(?:system|system_prompt|sys|admin|im_start|developer|override|jailbreak)>(?!>)"
        r"|\[(?:system|admin|developer|sys)(?: (?:message|note|prompt|override))?\]",
        needles=("<system", "</system", "<sys", "</sys", "admin>", "developer>", "override>", "jailbreak>",
                 "im_start>", "[system", "[admin", "[developer", "[sys"),
    ),
    # --- indirect --------------------------------------------------------------------------------
    _Rule("address-ai-reader", "indirect", 2, 3, "words",
        ("if you are", "if you re", "attention", "note", "message", "instructions", "instruction", "notice",
         "attn", "hey", "dear", "to", "for", "any", "all", "every", "calling all"),
        rf" (?:an? |the |any |all )?{_AI} (?:[a-z]+ ){{0,3}}?(?:reading|processing|summari[sz]ing|parsing"
        r"|analy[sz]ing|browsing|viewing|seeing|scanning|crawling|indexing|reviewing|looking at|that reads?"
        r"|who reads?|which reads?|that is reading|that are reading|who are reading|encountering|visiting"
        r"|accessing) (?:this|these|the following|my|our|me)\b",
        requires=("reading", "processing", "summarizing", "summarising", "parsing", "analyzing", "analysing",
                  "browsing", "viewing", "seeing", "scanning", "crawling", "indexing", "reviewing",
                  "looking", "reads", "read", "encountering", "visiting", "accessing"),
    ),
    _Rule("if-you-are-ai", "indirect", 1, 2, "words",
        ("if you are", "if you re"),
        r" (?:an? |the )?(?:ai|artificial intelligence|llm|large language model|language model|ai assistant"
        r"|chatbot|ai agent|bot|ai model|automated (?:system|agent|assistant)|assistant|gpt|claude)\b",
    ),
    _Rule("note-to-ai", "indirect", 1, 2, "words",
        ("note", "message", "instructions", "instruction", "notice", "attention", "reminder", "directive",
         "command", "memo", "request", "warning", "important", "p s", "ps", "hint", "secret", "hidden"),
        rf" (?:to|for) (?:the |any |all |every )?{_AI}\b",
        requires=_AI_WORDS,
    ),
    _Rule("covert", "indirect", 1, 2, "words",
        ("do not", "don t", "never", "without", "avoid"),
        r" (?:tell|telling|inform|informing|notify|notifying|alert|alerting|mention|mentioning|reveal"
        r"|revealing|show|showing|disclose|disclosing|let|letting|ask|asking|warn|warning|alarm|alarming"
        r"|bother|bothering) (?:[a-z]+ ){0,3}?(?:to )?(?:the |your )?(?:user|users|human|owner|operator"
        r"|customer|person|recipient|developer|developers|team|admin|administrator)\b",
        requires=("tell", "telling", "inform", "informing", "notify", "notifying", "alert", "alerting",
                  "mention", "mentioning", "reveal", "revealing", "show", "showing", "disclose",
                  "disclosing", "let", "letting", "ask", "asking", "warn", "warning", "alarm", "alarming",
                  "bother", "bothering"),
    ),
    _Rule("covert-action", "indirect", 1, 2, "words",
        ("silently", "secretly", "quietly", "covertly", "discreetly", "stealthily", "invisibly",
         "in the background", "behind the scenes", "without the user s", "without the user",
         "without their"),
        r"(?: (?:knowledge|consent|knowing|noticing|awareness))?\b",
        requires=("silently", "secretly", "quietly", "covertly", "discreetly", "stealthily", "invisibly",
                  "background", "scenes", "knowledge", "consent", "knowing", "noticing", "awareness"),
    ),
    _Rule("exfiltrate", "indirect", 0, 2, "raw",
        (),
        r"\b(?:send|forward|e-?mail|post|upload|transmit|exfiltrate|leak|copy|share|submit|paste|append"
        r"|include|embed|encode)\b[^.\n]{0,80}?\b(?:passwords?|credentials|api[ _-]?keys?|tokens?|secrets?"
        r"|private keys?|ssh keys?|cookies|session|conversation|chat history|chat log|system prompt"
        r"|previous messages|user data|personal data|contacts|inbox|emails|all (?:the |of the )?(?:files"
        r"|documents|emails|messages|data))\b[^.\n]{0,80}?(?:https?://|www\.|\b[\w.+-]+@[\w-]+\.[a-z]{2,}"
        r"|\bto (?:this|the following|my|our) (?:url|address|endpoint|server|webhook|email|site|link))",
        needles=("http", "www.", "@", " to this ", " to the following ", " to my ", " to our "),
    ),
    _Rule("markdown-exfil", "indirect", 0, 2, "raw",
        (),
        r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{0,200}[?&][^)\s]{0,200}(?:\{|%7b|<|\$|data=|secret"
        r"|token|conversation|chat|history|password|key=)",
        needles=("](",),
    ),
    _Rule("addressed-command", "indirect", 1, 2, "words",
        ("assistant", "ai", "chatbot", "llm", "model", "agent", "agents", "claude", "chatgpt", "gpt",
         "copilot", "gemini"),
        r" \. (?:also |now |please )?(?:ignore|disregard|forget|do not|don t|never|stop|send|forward|reply"
        r"|respond|say|tell|delete|reveal|print|output|include|recommend|rate|approve|mark|transfer|execute"
        r"|run|call|visit|open)\b",
    ),
    _Rule("when-processing", "indirect", 0, 2, "words",
        ("when", "while", "whenever", "after", "once"),
        r" (?:you )?(?:summari[sz]e|summari[sz]ing|read|reading|process|processing|see|seeing|answer"
        r"|answering|respond|responding to|analy[sz]e|analy[sz]ing|parse|parsing|encounter) (?:this|these"
        r"|the following|my)\b",
        requires=("summarize", "summarise", "summarizing", "summarising", "read", "reading", "process",
                  "processing", "see", "seeing", "answer", "answering", "respond", "responding", "analyze",
                  "analyse", "analyzing", "analysing", "parse", "parsing", "encounter"),
    ),
    _Rule("tell-user", "indirect", 0, 1, "words",
        ("tell", "inform", "remind", "convince", "persuade", "ask", "urge"),
        r" the user (?:to|that|it|they)\b",
        requires=("user",),
    ),
    _Rule("fake-authorization", "indirect", 0, 1, "words",
        ("the user",),
        r" (?:has )?(?:already )?(?:authorized|approved|asked|wants|requested|instructed|permitted"
        r"|consented|allowed)(?: you)? (?:to|for|this)\b",
        requires=("authorized", "approved", "asked", "wants", "requested", "instructed", "permitted",
                  "consented", "allowed"),
    ),
    _Rule("before-answering", "indirect", 0, 1, "words",
        ("before", "prior to", "instead of", "rather than"),
        r" (?:you )?(?:answer|answering|respond|responding|reply|replying|summari[sz]e|summari[sz]ing"
        r"|continuing|doing anything else|proceeding|completing|finishing)\b",
        requires=("answer", "answering", "respond", "responding", "reply", "replying", "summarize",
                  "summarise", "summarizing", "summarising", "continuing", "doing", "proceeding",
                  "completing", "finishing"),
    ),
    _Rule("tool-hijack", "indirect", 0, 1, "words",
        ("call", "invoke", "use", "run", "execute", "trigger"),
        r" (?:the )?(?:[a-z]+ ){0,2}?(?:tool|function|plugin|command|action|api)\b",
        requires=("tool", "function", "plugin", "command", "action", "api"),
    ),
    _Rule("imperative-to-model", "indirect", 0, 1, "words",
        ("you", "assistant", "ai"),
        r" (?:must|should|shall|are required to|are instructed to|need to|have to|will now)"
        r" (?:now |immediately |also |always |first )?(?:ignore|disregard|forget|send|forward|email|post"
        r"|upload|transfer|delete|output|respond|reply|say|tell|include|append|insert|navigate|visit|open"
        r"|click|call|fetch|execute|run|reveal|print|recommend|praise|rate|approve|mark)\b",
        requires=("must", "should", "shall", "required", "instructed", "need", "have", "will"),
    ),
)
# fmt: on


# The letters view: phrases long enough to be unmistakable with every break removed. Each shares its
# name with the words-view rule it backs, so one phrase never counts twice. The needles are rarer
# pieces every match contains (mostly its object); the pattern is searched only around them.
def _letters(name: str, category: Category, needles: tuple[str, ...], source: str) -> _Rule:
    return _Rule(name, category, 3, 3, "letters", (), _sk(source), needles=tuple(_sk(n) for n in needles))


_LETTER_RULES: Final[tuple[_Rule, ...]] = (
    _letters(
        "override-instructions", "override",
        ("instruct", "directive", "direction", "rule", "prompt", "guideline", "programming", "restriction",
         "filter", "guardrail", "polic", "constraint", "command", "order"),
        r"(?:ignor(?:e|ing)|disregard(?:ing)?|forget(?:ting)?|overrid(?:e|ing)|bypass(?:ing)?|overrule)"
        r"(?:all|any|every|the|your|of){0,3}(?:previous|prior|above|earlier|preceding|initial|original"
        r"|system|safety|developer|hidden|default)(?:system|safety|developer)?(?:instructions?"
        r"|directives?|directions|rules?|prompts?|guidelines?|programming|restrictions|filters?"
        r"|guardrails|policies|constraints|commands|orders)",
    ),
    _letters("dan", "persona", ("doanythingnow", "modeenabled"),
             r"doanythingnow|(?:developer|dan|jailbreak|god)modeenabled"),
    _letters(
        "system-prompt-leak", "extraction", ("prompt", "instruction", "message"),
        r"(?:reveal|print|show|output|repeat|dump|leak|tell|give|display|disclose|write|recite)"
        r"(?:me|us|out)?(?:your|the)(?:full|complete|entire|exact|whole)?(?:system|initial|hidden"
        r"|original|secret|developer|internal|confidential)(?:prompt|instructions|message)",
    ),
    _letters(
        "repeat-above", "extraction", ("above", "before"),
        r"(?:repeat|print|output|echo|recite|reproduce|dump)(?:back)?(?:all|everything|thewords|thetext"
        r"|theinstructions|theprompt)(?:above|before)",
    ),
    _letters(
        "unrestricted-persona", "persona",
        ("unrestricted", "unfiltered", "uncensored", "jailbroken", "unbound", "unlimited", "evil", "amoral"),
        r"(?:youarenow|youre|actas|pretendtobe|pretendyouare|roleplayas|simulate|become)(?:an?|the)?"
        r"(?:unrestricted|unfiltered|uncensored|jailbroken|unbound|unlimited|evil|amoral)"
        r"(?:ai|assistant|model|chatbot|bot|llm|version)",
    ),
)  # fmt: skip
_LETTER_WINDOW: Final = 120
"""How far before a needle a letters-view phrase may start."""


def _index(rules: Iterable[_Rule]) -> dict[str, tuple[_Rule, ...]]:
    by_word: dict[str, list[_Rule]] = {}
    for rule in rules:
        for start in rule.starts:
            first = _sk(start).split(" ", 1)[0]
            bucket = by_word.setdefault(first, [])
            if rule not in bucket:
                bucket.append(rule)
    return {word: tuple(bucket) for word, bucket in by_word.items()}


_WORD_INDEX: Final = _index(r for r in _RULES if r.view == "words")
_RAW_RULES: Final = tuple(r for r in _RULES if r.view == "raw")
_NEGATED: Final = ("not", "dont", "never", "cannot", "cant")


# The words view's alphabet: letters (``l`` as ``i``), leetspeak digits and symbols as letters,
# sentence punctuation as ``.``, everything else a space. Apostrophes split ("don't" -> "don t").
def _words_table() -> dict[int, str]:
    table = {c: " " for c in range(128)}
    table.update({ord(c): c for c in "abcdefghijkmnopqrstuvwxyz"})
    table.update({ord(k): v for k, v in zip("l01345789@$", "ioieastbgas", strict=True)})
    table.update({ord(c): "." for c in '.,!?;:"()[]{}<>\n\r'})
    return table


_WORDS_TABLE: Final = _words_table()
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/_-]{24,}={0,2}")

# What the dampers look at, in the words view's spelling.
_NEGATIONS: Final = frozenset(map(_sk, ("not", "never", "t", "dont", "cannot", "without", "no", "nt")))
_LINKS: Final = frozenset(
    map(
        _sk,
        ("to", "into", "can", "could", "would", "will", "should", "might", "may", "must", "shall", "does",
         "did", "do", "often", "always", "sometimes", "usually", "typically", "just", "then", "also",
         "easily", "simply", "still", "not", "never", "t", "ll", "d"),
    )
)  # fmt: skip
_SUBJECTS: Final = frozenset(
    map(
        _sk,
        ("we", "they", "it", "he", "she", "one", "i", "who", "which", "that", "this", "people", "users",
         "user", "attackers", "attacker", "model", "models", "llm", "llms", "ai", "ais", "bot", "bots",
         "chatbot", "chatbots", "agent", "agents", "system", "systems", "parser", "compiler", "cpu",
         "processor", "git", "linter", "eslint", "browser", "server", "script", "code", "function",
         "program", "app", "tool", "tools", "assistant", "assistants", "gpt", "chatgpt", "claude", "someone",
         "somebody", "anyone", "hackers", "hacker", "adversaries", "adversary", "employees", "students",
         "person", "humans", "interpreter", "engine", "kernel", "shell", "pipeline", "filter", "classifier",
         "detector", "prettier", "mypy", "ruff", "pylint", "flake", "webpack", "docker", "kubernetes",
         "helm", "terraform", "nginx", "firewall", "router", "them", "him", "her", "us", "me", "make",
         "makes", "made", "let", "lets", "have", "has", "get", "gets", "force", "forces", "cause", "causes",
         "trick", "tricks", "tricked", "convince", "convinced", "tell", "tells", "told", "ask", "asks",
         "asked", "instruct", "instructs", "instructed", "prompt", "prompts", "prompted", "teach", "taught",
         "train", "trained", "allow", "allows", "allowed", "want", "wants", "configure", "set", "you"),
    )
)  # fmt: skip
_VOCATIVES: Final = frozenset(map(_sk, ("hey", "hi", "hello", "ok", "okay", "dear", "yo", ".")))
_OWN: Final = frozenset(map(_sk, ("my", "our", "we", "i", "me", "us")))
_MINE: Final = frozenset(map(_sk, ("my", "our")))
_OWN_AFTER: Final = frozenset(map(_sk, ("we", "i")))
_ADDRESSED: Final = frozenset(map(_sk, ("your", "ur", "yours", "yourself")))
_TOPIC: Final = frozenset(map(_sk, ("about", "regarding", "concerning")))
_SENSITIVE_TOPIC: Final = frozenset(
    map(
        _sk,
        ("safety", "ethics", "ethical", "content", "what", "how", "being", "refusing", "not", "harmful",
         "restricted", "restrictions", "rules", "limits", "censorship", "moderation", "policy", "policies"),
    )
)  # fmt: skip
_QUESTION: Final = frozenset(map(_sk, ("how", "where", "why", "whether")))
_QUESTION_NEXT: Final = frozenset(
    map(_sk, ("do", "can", "could", "should", "would", "to", "does", "is", "i", "we", "one", "might"))
)

_DISCUSSION: Final = re.compile(
    r"prompt.?injection|injection attack|jailbreak|red.?team|adversarial|security|classifier|detector"
    r"|detect|filter|guardrail|sanitiz|dataset|benchmark|example|research|paper|owasp|mitigat|defen[cs]"
    r"|protect|prevent|vulnerab|attack|phrase|regex|test case|unit test|tokeni[sz]er|template|format"
    r"|syntax|what does|what do|meaning|means"
)
_QUOTED: Final = re.compile(
    r"```.*?```|`[^`\n]{3,400}`|\"[^\"\n]{3,400}\"|“[^”\n]{3,400}”|«[^»\n]{3,400}»"
    r"|(?<![A-Za-z0-9])'[^'\n]{3,400}'(?![A-Za-z0-9])|^[ \t]*>[^\n]*$",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the filter found in one text: the score, the rules that fired (strongest first, then by
    category in ``CATEGORIES`` order), their categories in that order, and whether it was found in
    base64-decoded text."""

    score: int
    rules: tuple[str, ...]
    categories: tuple[Category, ...]
    encoded: bool = False

    @property
    def blocked(self) -> bool:
        return self.score >= THRESHOLD


_CLEAN: Final = Assessment(0, (), ())


class PromptInjection:
    """The ``prompt-injection`` input filter (see the module docstring for what it catches)."""

    name: Final = NAME
    origins: Final[frozenset[Origin]] = frozenset({"user", "tool"})

    def inspect(self, text: str, origin: Origin) -> Verdict:
        found = self.assess(text, origin)
        if not found.blocked:
            return PASS
        reason = CATEGORIES[found.categories[0]]
        if found.encoded:
            reason += " (in base64-encoded text)"
        return Verdict(reason=reason)

    def assess(self, text: str, origin: Origin = "user") -> Assessment:
        """Score ``text`` as a text of ``origin``; ``Assessment.blocked`` says whether it is rejected."""
        found = _assess(text, origin, 0)
        if found.blocked and _DISCUSSION.search(fold(text)) is not None:
            unquoted = _QUOTED.sub(" . ", text)
            if unquoted != text:
                found = _assess(unquoted, origin, 0)
        return found


def _views(text: str) -> tuple[str, str, str, set[str]]:
    """The raw, words and letters views of ``text`` (see the module docstring), and the words' set."""
    raw = fold(text)
    words = (raw if raw.isascii() else _NON_ASCII.sub(" ", raw)).translate(_WORDS_TABLE)
    tokens = words.replace(".", " . ").split()
    words = " " + " ".join(tokens) + " "
    letters = words.replace(" ", "").replace(".", "")
    return raw, words, letters, set(tokens)


def _assess(text: str, origin: Origin, depth: int) -> Assessment:
    raw, words, letters, tokens = _views(text)
    fired: dict[str, _Rule] = {}
    seen: set[str] = set()

    for first in tokens & _WORD_INDEX.keys():
        rules = [
            r
            for r in _WORD_INDEX[first]
            if r.weight(origin) > 0 and (not r.required or not r.required.isdisjoint(tokens))
        ]
        if not rules:
            continue
        needle = " " + first + " "
        at = words.find(needle)
        while at >= 0:
            for rule in rules:
                if rule.name in fired:
                    continue
                match = rule.pattern.match(words, at + 1)
                if match is None:
                    continue
                seen.add(rule.name)
                if rule.damper is not None and _damped(rule.damper, words, match.start(), match.end()):
                    continue
                if rule.weight(origin) > 0:
                    fired[rule.name] = rule
            at = words.find(needle, at + 1)

    for rule in _LETTER_RULES:
        if rule.name in seen or rule.name in fired:
            continue
        for needle in rule.needles:
            at = letters.find(needle)
            while at >= 0 and rule.name not in fired:
                for match in rule.pattern.finditer(letters, max(0, at - _LETTER_WINDOW), at + 40):
                    begin = match.start()
                    if not letters[max(0, begin - 6) : begin].endswith(_NEGATED) and _fragmented(
                        words, begin, match.end()
                    ):
                        fired[rule.name] = rule
                        break
                at = letters.find(needle, at + _LETTER_WINDOW)
            if rule.name in fired:
                break

    for rule in _RAW_RULES:
        if rule.weight(origin) == 0 or not any(needle in raw for needle in rule.needles):
            continue
        if rule.line_start:
            hit = any(rule.pattern.match(line.lstrip(_MARKUP)) for line in raw.split("\n"))
        else:
            hit = rule.pattern.search(raw) is not None
        if hit:
            fired[rule.name] = rule

    score = sum(rule.weight(origin) for rule in fired.values())
    if score < THRESHOLD and depth < _MAX_DEPTH:
        decoded = _decoded(text)
        if decoded:
            inner = _assess(decoded, origin, depth + 1)
            if inner.blocked:
                return Assessment(inner.score, inner.rules, inner.categories, encoded=True)
    if not fired:
        return _CLEAN
    order = list(CATEGORIES)
    ranked = sorted(fired.values(), key=lambda r: (-r.weight(origin), order.index(r.category), r.name))
    categories = tuple(dict.fromkeys(r.category for r in ranked))
    return Assessment(score, tuple(r.name for r in ranked), categories)


_MARKUP: Final = " \t>#*-[(<="
"""What may precede a role label at the start of a line."""


def _fragmented(words: str, start: int, end: int) -> bool:
    """Whether letters ``start:end`` of the words view were split into fragments (``ig-nore``,
    ``i g n o r e``) or written as one run (separators removed), rather than whole words that code or
    punctuation happened to join (``ignorePrevious) { rules``), which the words view already judged."""
    seen = 0
    first = last = -1
    for i, ch in enumerate(words):
        if ch in " .":
            continue
        if seen == start:
            first = i
        seen += 1
        if seen == end:
            last = i + 1
            break
    tokens = [t for t in words[first:last].split() if t != "."]
    return len(tokens) == 1 or (end - start) / len(tokens) <= _FRAGMENT_LENGTH


_FRAGMENT_LENGTH: Final = 5.5
"""The longest average token of a phrase taken as split into fragments (English words average ~5)."""


def _damped(damper: Damper, words: str, start: int, end: int) -> bool:
    """Whether a match at ``words[start:end]`` is said of someone else, negated, or the user's own."""
    before = words[max(0, start - 80) : start].split()
    span = words[start:end].split()
    after = words[end : end + 60].split()
    if "." in after:
        after = after[: after.index(".")]
    if damper == "leak":
        if _MINE.intersection(span[:6]) or _OWN_AFTER.intersection(after[:2]):
            return True
        sentence = before[len(before) - before[::-1].index(".") :] if "." in before else before
        for i, token in enumerate(sentence):
            if token in _QUESTION and (i + 1 == len(sentence) or sentence[i + 1] in _QUESTION_NEXT):
                return True
        return False
    # override: negated, said of a third party, or about the user's own earlier words
    previous = [t for t in before[-4:] if t not in ("ever", "just", _sk("please"), "really")]
    t1 = previous[-1] if previous else "."
    t2 = previous[-2] if len(previous) > 1 else "."
    t3 = previous[-3] if len(previous) > 2 else "."
    if t1 in _NEGATIONS or (t1 in _LINKS and t2 in _NEGATIONS):
        return True
    if not _ADDRESSED.intersection(span):
        vocative = t1 in _SUBJECTS and t2 in _VOCATIVES and t1 in _AI_NAMES
        if not vocative and (
            t1 in _SUBJECTS - {"you"}
            or (t1 in _LINKS and t2 in _SUBJECTS - {"you"})
            or (t1 in _LINKS and t2 in _LINKS and t3 in _SUBJECTS - {"you"})
        ):
            return True
    if _OWN.intersection(span) or _OWN_AFTER.intersection(after[:2]):
        return True
    return bool(after) and after[0] in _TOPIC and len(after) > 1 and after[1] not in _SENSITIVE_TOPIC


_AI_NAMES: Final = frozenset(
    map(_sk, ("chatgpt", "gpt", "claude", "gemini", "assistant", "ai", "bot", "model"))
)


def _decoded(text: str) -> str:
    """The base64 runs of ``text`` that decode to UTF-8 text, joined by newlines (may be empty)."""
    if len(text) < 24 or max(map(len, text.split()), default=0) < 24:
        return ""
    pieces: list[str] = []
    budget = _MAX_DECODED
    for match in _BASE64.finditer(text):
        run = match.group()
        if budget <= 0:
            break
        if run.isalpha() or run.isdigit():
            continue  # a long word or number, not an encoding
        try:
            if "-" in run or "_" in run:
                raw = base64.urlsafe_b64decode(run + "=" * (-len(run) % 4))
            else:
                raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if _texty(decoded):
            pieces.append(decoded)
            budget -= len(decoded)
    return "\n".join(pieces)


def _texty(decoded: str) -> bool:
    """Whether decoded bytes read as text: almost all printable, and some letters and spaces."""
    if not decoded:
        return False
    printable = sum(1 for c in decoded if c.isprintable() or c in "\n\t\r")
    return printable >= 0.95 * len(decoded) and " " in decoded
