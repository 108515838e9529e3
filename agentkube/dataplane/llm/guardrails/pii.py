"""PII redaction: replace personal data and credentials with typed placeholders before a provider sees them.

``PiiRedaction`` (``piiRedaction: true``) rewrites user text, tool output and embeddings input. Each
piece it finds becomes a placeholder naming its type; everything else is left byte for byte:

==================  =============================================================================
``[EMAIL]``         ``local@domain.tld`` (a letter TLD of 2-24; not ``logo@2x.png``-style file names,
                    not ``git@host:`` SSH remotes)
``[PHONE]``         ``+`` and a country code (8-15 digits in all), North American numbers written with
                    separators (``(415) 555-2671``, ``415.555.2671``), national numbers with a trunk
                    ``0`` and separators (``020 7946 0958``, ``06 12 34 56 78``), and any 7-15 digit
                    number right after "phone", "tel", "mobile", "call me at"...
``[CARD]``          13-19 digits, bare or in groups of 4 (or Amex 4-6-5), passing the Luhn check and
                    starting like a card network's numbers (Visa, Mastercard, Amex, Discover, JCB,
                    Diners, UnionPay, Maestro)
``[IBAN]``          a country's IBAN of that country's exact length (80 countries), bare or in groups
                    of four, passing the ISO 13616 mod-97 check
``[NATIONAL_ID]``   US SSN ``123-45-6789`` (area not 000, 666 or 900-999, group not 00, serial not
                    0000; bare 9 digits only after "SSN"/"social security"); UK National Insurance
                    number (format and prefix rules, it has no check digit); Spanish DNI and NIE
                    (check letter); French NIR (15 digits, mod-97 key, Corsica's 2A/2B); Canadian SIN
                    ``123-456-782`` (Luhn; space-grouped only after "SIN"/"social insurance"); Indian
                    Aadhaar ``2345 6789 0124`` (grouped, Verhoeff check digit); Brazilian CPF
                    ``123.456.789-09`` (two mod-11 check digits)
``[IP_ADDRESS]``    IPv4 and IPv6 addresses, except loopback, unspecified, broadcast and netmasks
                    (``255.255.255.0``), and not dotted numbers after "version"/"v"
``[API_KEY]``       keys with a known prefix: OpenAI/Anthropic/OpenRouter ``sk-``, GitHub ``ghp_``
                    ``gho_`` ``ghu_`` ``ghs_`` ``ghr_`` ``github_pat_``, Slack ``xox?-`` ``xapp-``,
                    AWS access key ids ``AKIA``/``ASIA``..., Google ``AIza``, Stripe ``sk_live_``...,
                    GitLab ``glpat-``, Hugging Face ``hf_``, npm ``npm_``, PyPI ``pypi-``, SendGrid
                    ``SG.``, Groq ``gsk_``, Replicate ``r8_``, xAI ``xai-``, Perplexity ``pplx-``
``[JWT]``           three base64url segments whose first two are JSON objects (``eyJ...``)
``[PRIVATE_KEY]``   a PEM private key block (RSA, EC, OpenSSH, PKCS#8, encrypted, PGP); public keys
                    and certificates are left alone
``[SECRET]``        the value in ``password=...``-style assignments (any name ending in password,
                    passwd, pwd, passphrase, secret, token, api key, access/secret/private key,
                    credentials...), ``Authorization: Bearer ...`` headers, ``user:pass@`` in URLs and
                    "my password is ..." in prose when the value holds a digit or a symbol; the name
                    is kept (``DB_PASSWORD=[SECRET]``)
==================  =============================================================================

What a caller may rely on: placeholders are ASCII, never contain digits, and are never matched again,
so redacting twice changes nothing the second time. Validation keeps false positives down (a number
failing Luhn or mod 97 is left alone, as are version strings, dates, timestamps, 12-digit account
ids), at the cost of recall: a real card number typed with a typo, a phone number written without any
separator or context, a password in a variable assignment (``password = user_input`` is taken for
code) or names, postal addresses and dates of birth are not found. Numbers glued to letters
(``order4111111111111111``) are taken for identifiers and left alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from agentkube.dataplane.llm.guardrails.check import PASS, Origin, Verdict

__all__ = ["NAME", "PLACEHOLDERS", "PLACEHOLDER_OF", "PiiRedaction"]

NAME: Final = "pii-redaction"
PLACEHOLDER_OF: Final[Mapping[str, str]] = MappingProxyType(
    {
        "email": "[EMAIL]",
        "phone": "[PHONE]",
        "card": "[CARD]",
        "iban": "[IBAN]",
        "national-id": "[NATIONAL_ID]",
        "ip": "[IP_ADDRESS]",
        "api-key": "[API_KEY]",
        "jwt": "[JWT]",
        "private-key": "[PRIVATE_KEY]",
        "secret": "[SECRET]",
    }
)
"""The placeholder of each type found, by the type's name (the ``kind`` of the labelled corpus)."""
PLACEHOLDERS: Final = tuple(PLACEHOLDER_OF.values())

# A validator gets the match and returns the end of what to replace (it may trim), or None to keep it.
Validator = Callable[[re.Match[str]], int | None]


# --- check digits ------------------------------------------------------------------------------------


def luhn(digits: str) -> bool:
    """The Luhn (mod 10) check of payment cards and Canadian SINs."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_VERHOEFF_D: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P: Final = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip


def verhoeff(digits: str) -> bool:
    """The Verhoeff check of Indian Aadhaar numbers."""
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return c == 0


# ISO 13616 IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """The mod-97 check of an IBAN without spaces (country, check digits, BBAN)."""
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _card_network(digits: str) -> bool:
    """Whether ``digits`` starts like a card network's numbers (and has that network's length)."""
    n = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # American Express
    if (
        digits.startswith(("6011", "65"))
        or 644 <= int(digits[:3]) <= 649
        or 622126 <= int(digits[:6]) <= 622925
    ):
        return 16 <= n <= 19  # Discover
    if 3528 <= four <= 3589:
        return 16 <= n <= 19  # JCB
    if 300 <= int(digits[:3]) <= 305 or two in (36, 38, 39):
        return 14 <= n <= 19  # Diners Club
    if two == 62 or two == 81:
        return 16 <= n <= 19  # UnionPay
    return digits[:2] in ("50", "56", "57", "58", "63", "67") and 12 <= n <= 19  # Maestro


_DNI_LETTERS: Final = "TRWAGMYFPDXBNJZSQVHLCKE"


def _cpf_valid(digits: str) -> bool:
    if len(set(digits)) == 1:
        return False
    for size in (9, 10):
        total = sum(int(d) * w for d, w in zip(digits[:size], range(size + 1, 1, -1), strict=True))
        check = total * 10 % 11 % 10
        if check != int(digits[size]):
            return False
    return True


def _nir_valid(digits: str) -> bool:
    body, key = digits[:13], int(digits[13:])
    number = int(body.replace("2A", "19").replace("2B", "18"))
    return 97 - number % 97 == key


def _ssn_valid(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


# --- the numeric pass: runs of digits and separators, tried type by type ------------------------------

_RUN: Final = re.compile(r"\d[\d ()./-]{5,}\d(?:-?[A-Z])?")


def _v_nir(m: re.Match[str]) -> int | None:
    compact = m.group().replace(" ", "")
    return m.end() if _nir_valid(compact) else None


def _v_card(m: re.Match[str]) -> int | None:
    digits = _digits(m.group())
    return m.end() if _card_network(digits) and luhn(digits) else None


def _v_cpf(m: re.Match[str]) -> int | None:
    return m.end() if _cpf_valid(_digits(m.group())) else None


def _v_ssn(m: re.Match[str]) -> int | None:
    return m.end() if _ssn_valid(_digits(m.group())) else None


def _v_sin(m: re.Match[str]) -> int | None:
    digits = _digits(m.group())
    return m.end() if digits[0] not in "08" and luhn(digits) else None


def _v_aadhaar(m: re.Match[str]) -> int | None:
    return m.end() if verhoeff(_digits(m.group())) else None


def _v_dni(m: re.Match[str]) -> int | None:
    text = m.group()
    return m.end() if _DNI_LETTERS[int(text[:8]) % 23] == text[-1] else None


def _v_ipv4(m: re.Match[str]) -> int | None:
    octets = [int(o) for o in m.group().split(".")]
    value = int.from_bytes(bytes(octets), "big")
    inverse = ~value & 0xFFFFFFFF
    netmask = value >= 0xFF000000 and inverse & (inverse + 1) == 0
    if octets[0] == 127 or value == 0 or netmask:
        return None
    before = m.string[max(0, m.start() - 12) : m.start()].lower()
    if _VERSION_BEFORE.search(before):
        return None
    return m.end()


_VERSION_BEFORE: Final = re.compile(r"(?:version|ver\.?|release|build|rev\.?|v)\s*$")


def _v_phone(lo: int, hi: int) -> Validator:
    def validate(m: re.Match[str]) -> int | None:
        return m.end() if lo <= len(_digits(m.group())) <= hi else None

    return validate


_OCTET: Final = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_NUMERIC: Final[tuple[tuple[str, re.Pattern[str], Validator], ...]] = (
    ("[NATIONAL_ID]", re.compile(
        r"[1-478] ?\d\d ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d\d|2[AB]) ?\d{3} ?\d{3} ?\d\d(?![\d-])"), _v_nir),
    ("[CARD]", re.compile(
        r"(?:\d{4}(?P<s>[ -]?)\d{4}(?P=s)\d{4}(?P=s)\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5})"
        r"(?![\d-]|[ ]\d)"), _v_card),
    ("[NATIONAL_ID]", re.compile(r"\d{3}\.\d{3}\.\d{3}-\d\d(?![\d.-])"), _v_cpf),
    ("[NATIONAL_ID]", re.compile(r"\d{3}-\d\d-\d{4}(?![\d-])"), _v_ssn),
    ("[NATIONAL_ID]", re.compile(r"\d{3}-\d{3}-\d{3}(?![\d-])"), _v_sin),
    ("[NATIONAL_ID]", re.compile(r"[2-9]\d{3}(?P<a>[ -])\d{4}(?P=a)\d{4}(?![\d-]|[ ]\d)"), _v_aadhaar),
    ("[NATIONAL_ID]", re.compile(r"\d{8}-?[A-Z](?![A-Za-z0-9])"), _v_dni),
    ("[IP_ADDRESS]", re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)"), _v_ipv4),
    ("[PHONE]", re.compile(r"\+[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\)|[ .-]?\d{1,5}){2,6}(?![\d-])"),
     _v_phone(8, 15)),
    ("[PHONE]", re.compile(r"(?:1[ .-]?)?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-]?)[2-9]\d\d[ .-]\d{4}(?![\d-])"),
     _v_phone(10, 11)),
    ("[PHONE]", re.compile(r"0[1-9](?P<f>[ .])\d\d(?:(?P=f)\d\d){3}(?![\d-])"), _v_phone(10, 10)),
    ("[PHONE]", re.compile(r"0\d{1,4}[ /-]\d{3,8}(?:[ -]\d{2,4}){0,2}(?![\d-])"), _v_phone(9, 12)),
)  # fmt: skip

# A number the types above did not claim is still a phone number or an id right after its name.
_CONTEXT: Final = re.compile(
    r"(?:(?P<phone>phone|telephone|tel|mobile|cell|fax|whatsapp|sms|call me at|text me at|reach me at"
    r"|call me on|contact number)|(?P<ssn>ssn|social security|ss#)|(?P<sin>\bsin|social insurance|nas))"
    r"(?: (?:number|no\.?|num|nr\.?|#))?[\s:#=.-]{0,4}$"
)
_CONTEXT_TYPES: Final[dict[str, tuple[str, Callable[[str], bool]]]] = {
    "phone": ("[PHONE]", lambda d: 7 <= len(d) <= 15),
    "ssn": ("[NATIONAL_ID]", lambda d: len(d) == 9 and _ssn_valid(d)),
    "sin": ("[NATIONAL_ID]", lambda d: len(d) == 9 and d[0] not in "08" and luhn(d)),
}


def _combined(types: tuple[tuple[str, re.Pattern[str], Validator], ...]) -> re.Pattern[str]:
    """One pattern trying every type in order (group ``t<i>`` is type i), so a position costs one call."""
    return re.compile("|".join(f"(?P<t{i}>{_renamed(p.pattern, i)})" for i, (_, p, _v) in enumerate(types)))


def _renamed(source: str, i: int) -> str:
    # named groups and backreferences must stay unique once the patterns are joined
    return re.sub(r"\(\?P([<=])(\w+)", lambda m: f"(?P{m.group(1)}{m.group(2)}{i}", source)


_NUMERIC_ANY: Final = _combined(_NUMERIC)


def _claim(
    types: tuple[tuple[str, re.Pattern[str], Validator], ...], combined: re.Pattern[str], text: str, pos: int
) -> tuple[str, int] | None:
    """The first type whose pattern matches at ``pos`` and whose validator accepts, and where it ends."""
    m = combined.match(text, pos)
    if m is None:
        return None
    first = int(m.lastgroup[1:])  # type: ignore[index]
    for placeholder, pattern, validate in types[first:]:
        typed = m if pattern is types[first][1] else pattern.match(text, pos)
        if typed is not None:
            stop = validate(typed)
            if stop is not None:
                return placeholder, stop
    return None


class _Redacted:
    """``text`` with spans replaced by placeholders, left to right; each placeholder counted in ``found``."""

    __slots__ = ("_found", "_out", "_text", "last")

    def __init__(self, text: str, found: Counter[str]) -> None:
        self._text = text
        self._found = found
        self._out: list[str] = []
        self.last = 0
        """Where the text not replaced yet begins."""

    def replace(self, start: int, end: int, placeholder: str) -> None:
        self._out.append(self._text[self.last : start])
        self._out.append(placeholder)
        self._found[placeholder] += 1
        self.last = end

    def text(self) -> str:
        """The text with every replacement made (the very string given when there was none)."""
        if not self._out:
            return self._text
        self._out.append(self._text[self.last :])
        return "".join(self._out)


def _numeric(text: str, found: Counter[str]) -> str:
    redacted = _Redacted(text, found)
    for run in _RUN.finditer(text):
        start, end = run.start(), run.end()
        if start > redacted.last and text[start - 1] in "+(":
            start -= 1
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-./"):
            continue
        pos = start
        while pos < end:
            claimed = _claim(_NUMERIC, _NUMERIC_ANY, text, pos)
            if claimed is not None:
                placeholder, stop = claimed
                redacted.replace(pos, stop, placeholder)
                pos = stop
            else:
                named = _by_context(text, start, end) if pos == start else None
                if named is not None:
                    redacted.replace(start, end, named)
                    pos = end
                    continue
                space = text.find(" ", pos, end)
                if space < 0:
                    break
                pos = space + 1
    return redacted.text()


def _by_context(text: str, start: int, end: int) -> str | None:
    m = _CONTEXT.search(text[max(0, start - 40) : start].lower())
    if m is None or m.lastgroup is None:
        return None
    placeholder, valid = _CONTEXT_TYPES[m.lastgroup]
    return placeholder if valid(_digits(text[start:end])) else None


# --- the letter-led pass: IBAN, UK National Insurance, Spanish NIE -----------------------------------

_LETTER_LED: Final = re.compile(r"[A-Z](?:[A-Z] ?|-)?\d")
_IBAN: Final = re.compile(r"[A-Z]{2}\d\d(?: ?[A-Z0-9]){11,35}")
_NINO: Final = re.compile(
    r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d\d ?\d\d ?\d\d ?[A-D](?![A-Za-z0-9])"
)
_NIE: Final = re.compile(r"[XYZ]-?\d{7}-?[A-Z](?![A-Za-z0-9])")


def _v_iban(m: re.Match[str]) -> int | None:
    text = m.group()
    length = _IBAN_LENGTHS.get(text[:2])
    if length is None:
        return None
    seen = 0
    for i, ch in enumerate(text):
        if ch != " ":
            seen += 1
        if seen == length:
            stop = m.start() + i + 1
            if stop < len(m.string) and m.string[stop].isalnum():
                return None  # the IBAN would end inside a group
            return stop if iban_valid(text[: i + 1].replace(" ", "")) else None
    return None


def _v_nie(m: re.Match[str]) -> int | None:
    text = m.group().replace("-", "")
    number = int(str("XYZ".index(text[0])) + text[1:8])
    return m.end() if _DNI_LETTERS[number % 23] == text[-1] else None


_LETTERED: Final[tuple[tuple[str, re.Pattern[str], Validator], ...]] = (
    ("[IBAN]", _IBAN, _v_iban),
    ("[NATIONAL_ID]", _NINO, lambda m: m.end()),
    ("[NATIONAL_ID]", _NIE, _v_nie),
)


_LETTERED_ANY: Final = _combined(_LETTERED)


def _lettered(text: str, found: Counter[str]) -> str:
    redacted = _Redacted(text, found)
    pos = 0
    while True:
        candidate = _LETTER_LED.search(text, pos)
        if candidate is None:
            break
        at = candidate.start()
        pos = at + 1
        if at > 0 and (text[at - 1].isalnum() or text[at - 1] == "_"):
            continue
        claimed = _claim(_LETTERED, _LETTERED_ANY, text, at)
        if claimed is not None:
            placeholder, pos = claimed
            redacted.replace(at, pos, placeholder)
    return redacted.text()


# --- emails ------------------------------------------------------------------------------------------

_DOMAIN: Final = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.([A-Za-z]{2,24})(?![A-Za-z0-9-])"
)
_LOCAL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'")
_FILE_TLDS: Final = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "avif", "heic", "pdf"}
)


def _emails(text: str, found: Counter[str]) -> str:
    redacted = _Redacted(text, found)
    at = text.find("@")
    while at >= 0:
        start = at
        while start > redacted.last and at - start < 64 and text[start - 1] in _LOCAL_CHARS:
            start -= 1
        while start < at and text[start] in ".'":
            start += 1
        domain = _DOMAIN.match(text, at + 1)
        nxt = at + 1
        if start < at and domain is not None and domain.group(1).lower() not in _FILE_TLDS:
            local = text[start:at]
            ssh = local == "git" and text.startswith(":", domain.end())
            if not ssh:
                nxt = domain.end()
                redacted.replace(start, nxt, "[EMAIL]")
        at = text.find("@", nxt)
    return redacted.text()


# --- IPv6 --------------------------------------------------------------------------------------------

_COLONS: Final = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6_CHARS: Final = frozenset("0123456789abcdefABCDEF:.")


def _ipv6(text: str, found: Counter[str]) -> str:
    redacted = _Redacted(text, found)
    pos = 0
    while (m := _COLONS.search(text, pos)) is not None:
        start, end = m.start(), m.end()
        while start > redacted.last and text[start - 1] in _IPV6_CHARS:
            start -= 1
        while end < len(text) and text[end] in _IPV6_CHARS:
            end += 1
        pos = end
        while end > start and text[end - 1] in ".:" and not text[start:end].endswith("::"):
            end -= 1  # a sentence's full stop or colon after the address
        candidate = text[start:end]
        glued = (start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_")) or (
            end < len(text) and (text[end].isalnum() or text[end] == "_")
        )
        if glued or len(candidate) < 6 or not any(ch.isdigit() for ch in candidate):
            continue
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if address.is_loopback or address.is_unspecified:
            continue
        redacted.replace(start, end, "[IP_ADDRESS]")
    return redacted.text()


# --- credentials -------------------------------------------------------------------------------------

_PEM: Final = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY"
    r"(?: BLOCK)?-----|(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/=:, -]{8,})*)"
)
_JWT: Final = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_KEYS: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:[A-Za-z0-9]+-){0,3}[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{10,}|whsec_[A-Za-z0-9]{20,}"
    r"|glpat-[0-9A-Za-z_-]{20,}|hf_[A-Za-z0-9]{30,}|npm_[A-Za-z0-9]{36}"
    r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{20,}|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
    r"|gsk_[A-Za-z0-9]{40,}|r8_[A-Za-z0-9]{30,}|xai-[A-Za-z0-9]{40,}|pplx-[A-Za-z0-9]{40,}"
    r")(?![A-Za-z0-9_-])"
)
_URL_PASSWORD: Final = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@]{1,64}:([^\s/@]{1,128})@")
_BEARER: Final = re.compile(
    r"\b(?:(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|apikey|api-key)"
    r"|bearer)\s+([a-z0-9._~+/-]{8,}=*)"
)
_ASSIGNMENT: Final = re.compile(
    r"(?:password|passwd|pwd|passphrase|secret|token"
    r"|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key|account[_-]?key|shared[_-]?access[_-]?key"
    r"|credentials?|auth[_-]?key|client[_-]?secret)[\"']?(?P<op>[ \t]*(?::=|=>|:|=)[ \t]*)"
    r"(?:\"(?P<dq>[^\"\n]{1,256})\"|'(?P<sq>[^'\n]{1,256})'|(?P<bare>[^\s\"'`&,;<>(){}\[\]]{1,256}))"
)
_ASSIGNMENT_WORDS: Final = ("pass", "pwd", "secret", "token", "key", "credential")
_NOT_SECRETS: Final = frozenset(
    {
        "str", "string", "int", "bool", "boolean", "bytes", "none", "null", "nil", "true", "false",
        "undefined", "optional", "any", "number", "secretstr", "char", "text", "varchar", "required",
        "include", "same-origin", "omit", "hidden", "masked", "redacted", "env", "type", "object",
        "list", "dict", "secret", "password", "token", "value", "field", "input", "self", "this",
    }
)  # fmt: skip
_PLACEHOLDER_VALUE: Final = re.compile(
    r"^(?:<.*>|\$\{?.*|%.*|\{\{.*|\[[A-Z_]+\]|[*xX.•]{3,}|.*your[_-]?.*|.*example.*|.*placeholder.*"
    r"|.*changeme.*|.*dummy.*|process\.env.*|os\.environ.*|env\..*|getenv.*)$",
    re.IGNORECASE,
)
_CODE_REFERENCE: Final = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")
# "my password is hunter2": prose; the value must hold a digit or a symbol ("the password is wrong").
_SAID: Final = re.compile(
    r"p(?:assword|asscode|assphrase|in|wd)(?: for [\w.@-]{1,40})? (?:is|was|=)[ :]+[\"'`]?"
    r"([^\s\"'`,;]*[^\sA-Za-z\"'`,;.!?][^\s\"'`,;]*?)[\"'`]?(?=[\s,;.!?]|$)"
)


def _secret_value(m: re.Match[str], text: str) -> tuple[int, int] | None:
    """Where the secret value of an assignment is (``m`` matched ``text`` lowercased), or None when it
    is code, a type or a placeholder."""
    for group in ("dq", "sq", "bare"):
        if m.group(group) is not None:
            break
    else:  # pragma: no cover - one of the alternatives always matched
        return None
    start, end = m.span(group)
    value = text[start:end]
    if value.lower() in _NOT_SECRETS or _PLACEHOLDER_VALUE.match(value):
        return None
    if group == "bare":
        following = text[end : end + 1]
        if following in ("(", "[") or _CODE_REFERENCE.match(value):
            return None  # a call or an attribute: code, not a literal
        spaced = m.group("op").startswith((" ", "\t")) and "=" in m.group("op")
        if (spaced or "_" in value) and value.replace("_", "").isalpha():
            return None  # ``password = user_input``, ``API_KEY=api_key``: a variable
        if value.isdigit() and len(value) < 6:
            return None
    return start, end


def _credentials(text: str, found: Counter[str]) -> str:
    if "PRIVATE KEY" in text:
        text, n = _PEM.subn("[PRIVATE_KEY]", text)
        if n:
            found["[PRIVATE_KEY]"] += n
    if "eyJ" in text:
        text, n = _JWT.subn("[JWT]", text)
        if n:
            found["[JWT]"] += n

    # Every key is a run of 20 characters or more: search only the long whitespace-separated tokens.
    keys = {
        m.group()
        for token in text.split()
        if len(token) >= 20
        for m in _KEYS.finditer(token)
        if not m.group().startswith("sk-") or any(ch.isdigit() for ch in m.group())  # not sk-learn prose
    }
    for key in sorted(keys, key=len, reverse=True):
        found["[API_KEY]"] += text.count(key)
        text = text.replace(key, "[API_KEY]")
    if "://" in text:
        text = _replace_group(_URL_PASSWORD, text, found, 1)
    lowered = text.lower()
    if len(lowered) != len(text):  # a few letters lowercase to two characters: keep offsets aligned
        lowered = "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)
    if "bearer" in lowered or "authorization" in lowered:
        text = _replace_group(_BEARER, text, found, 1, needs_digit=True, lowered=lowered)
        lowered = text.lower() if len(text.lower()) == len(text) else lowered
    if "pass" in lowered or "pin" in lowered or "pwd" in lowered:
        text = _replace_group(_SAID, text, found, 1, lowered=lowered, boundary=True)
        lowered = text.lower() if len(text.lower()) == len(text) else lowered
    if any(word in lowered for word in _ASSIGNMENT_WORDS):
        redacted = _Redacted(text, found)
        for m in _ASSIGNMENT.finditer(lowered):
            span = _secret_value(m, text)
            if span is not None:
                redacted.replace(*span, "[SECRET]")
        text = redacted.text()
    return text


def _replace_group(
    pattern: re.Pattern[str],
    text: str,
    found: Counter[str],
    group: int,
    *,
    needs_digit: bool = False,
    lowered: str | None = None,
    boundary: bool = False,
) -> str:
    """Replace ``group`` of each match with ``[SECRET]``; ``lowered`` (``text`` lowercased, same
    offsets) is what is searched when the pattern is written in lowercase; ``boundary``: the match
    must not start inside a word."""
    redacted = _Redacted(text, found)
    for m in pattern.finditer(text if lowered is None else lowered):
        if boundary and m.start() > 0 and text[m.start() - 1].isalnum():
            continue
        value = text[m.start(group) : m.end(group)]
        if value.startswith("[") or _PLACEHOLDER_VALUE.match(value):
            continue
        if needs_digit and not any(ch.isdigit() for ch in value):
            continue
        redacted.replace(m.start(group), m.end(group), "[SECRET]")
    return redacted.text()


class PiiRedaction:
    """The ``pii-redaction`` guardrail: placeholders for personal data and credentials."""

    name: Final = NAME
    origins: Final[frozenset[Origin]] = frozenset({"user", "tool", "embedding"})

    def inspect(self, text: str, origin: Origin) -> Verdict:
        redacted, found = self.redact(text)
        if redacted is text:
            return PASS
        return Verdict(text=redacted, redactions=sum(found.values()))

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """``text`` with every piece found replaced, and how many of each placeholder were used.

        The same object comes back when nothing was found.
        """
        found: Counter[str] = Counter()
        out = _credentials(text, found)
        if "@" in out:
            out = _emails(out, found)
        if "::" in out or out.count(":") >= 7:
            out = _ipv6(out, found)
        out = _lettered(out, found)
        out = _numeric(out, found)
        return (text if not found else out), found
