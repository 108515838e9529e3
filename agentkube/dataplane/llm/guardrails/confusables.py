"""Confusables: fold a text to what it reads as, so obfuscated instructions meet the same patterns.

``fold(text)`` returns a lowercase text in which visual tricks are undone:

- invisible characters are removed: zero-width spaces and joiners, the word joiner and invisible
  operators, bidirectional controls, the byte-order mark, soft hyphens, variation selectors, Hangul
  and Khmer fillers, the Mongolian vowel separator;
- Unicode tag characters (U+E0020..U+E007E, "ASCII smuggling") become the ASCII letters they encode,
  so a payload hidden in them is read like any other text;
- compatibility forms are decomposed (NFKD: fullwidth ``ｉｇｎｏｒｅ``, mathematical ``𝐢𝐠𝐧𝐨𝐫𝐞``,
  circled ``ⓘ``, superscripts, ligatures) and combining marks dropped (``ïgnörè``, "Zalgo" text);
- lookalike letters from other scripts become the Latin letter they imitate: Cyrillic (``іgnоrе``),
  Greek, Armenian, Cherokee, Latin small capitals and IPA letters, and the enclosed and regional
  indicator letters NFKD leaves alone (``🅸🅶🅽🅾🆁🅴``).

The table is this module's own, a few hundred entries chosen for letters that pass for Latin ones in
common fonts; it is not Unicode's full confusables list (``confusablesSummary.txt``), so a rarer
lookalike goes through unfolded. Folding is for detection only: the text sent on is never the folded
one. An ASCII text skips everything but lowercasing.
"""

# ruff: noqa: RUF001, RUF002, RUF003  (lookalike letters are this module's subject)

from __future__ import annotations

import re
import unicodedata
from typing import Final

__all__ = ["fold"]


# Letters of other scripts (and Latin variants) that pass for a Latin letter. Capitals are mapped
# before lowercasing: Cyrillic Н reads as H, but its lowercase н would read as n.
_LOOKALIKES: Final = {
    "a": "АаΑαɑᴀᎪ",
    "b": "ВвЬьΒβʙƀᏴ",
    "c": "СсϹϲᴄᏟ",
    "d": "ԁᴅđð",
    "e": "ЕеЄєΕεᴇɛᎬ",
    "f": "ꜰ",
    "g": "Ԍԍɡɢց",
    "h": "НнҺһΗʜħհᎻ",
    "i": "ІіӀӏΙιɩɪıɨ",
    "j": "ЈјϳȷᴊᎫ",
    "k": "КкΚκᴋᏦ",
    "l": "ʟłǀᏞ",
    "m": "МмΜᴍᎷ",
    "n": "Νηпոɴ",
    "o": "ОоΟοσՕօᴏøØ",
    "p": "РрΡρᴘᏢ",
    "q": "Ԛԛզ",
    "r": "гʀ",
    "s": "ЅѕꜱՏᏚ",
    "t": "ТтΤτᴛŧᎢ",
    "u": "υμՍսᴜʉ",
    "v": "νѴѵᴠ",
    "w": "ԜԝѠѡшωᴡᏔᎳ",
    "x": "ХхΧχ",
    "y": "УуҮүΥγʏ",
    "z": "ΖᴢᏃ",
}


def _table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    invisible = [
        0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0,
        *range(0x200B, 0x2010),  # zero-width space, non-joiner, joiner, LRM, RLM
        *range(0x202A, 0x202F),  # bidirectional embeddings and overrides
        *range(0x2060, 0x2065),  # word joiner, invisible operators
        *range(0x2066, 0x206A),  # bidirectional isolates
        *range(0x180B, 0x180E),  # Mongolian variation selectors
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
        *range(0xE0000, 0xE0020),  # tag controls
        0xE007F,  # cancel tag
    ]  # fmt: skip
    table.update(dict.fromkeys(invisible))
    for code in range(0xE0020, 0xE007F):
        table[code] = chr(code - 0xE0000)
    for start in (0x1F150, 0x1F170, 0x1F1E6):  # negative circled, negative squared, regional indicators
        for i in range(26):
            table[start + i] = chr(ord("a") + i)
    for letter, chars in _LOOKALIKES.items():
        table.update(dict.fromkeys(map(ord, chars), letter))
    table.update({ord("ß"): "ss", ord("æ"): "ae", ord("Æ"): "ae", ord("œ"): "oe", ord("Œ"): "oe"})
    table.update({ord("þ"): "th", ord("ſ"): "s"})
    return table


_TABLE: Final = _table()
_LOOKALIKE: Final = "".join(sorted({ch for chars in _LOOKALIKES.values() for ch in chars}))
_HIDDEN: Final = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f"
    "\U000e0100-\U000e01ef\U0001f150-\U0001f169\U0001f170-\U0001f189\U0001f1e6-\U0001f1ff]"
)
_MIXED: Final = re.compile(f"[A-Za-z][{_LOOKALIKE}]|[{_LOOKALIKE}][A-Za-z]")
# A character of another script that passes for no Latin letter: the text is written in that script.
_FOREIGN: Final = re.compile(f"[^\\x00-\\x7f{_LOOKALIKE}\u2000-\u206f\u00a0-\u00bf\u00d7\u00f7\ufe00-\ufe0f]")
# NFKD leaves the marks it splits off as separate characters; these blocks hold nearly all of them.
_MARKS: Final = re.compile(
    "[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+"
)


def fold(text: str) -> str:
    """``text`` lowercased with invisible characters, compatibility forms and lookalikes undone.

    Lookalikes are mapped when the text hides characters, mixes a lookalike into a Latin word, or has
    no letter of another script besides lookalikes. A text genuinely written in another script
    (Russian, Greek, Chinese...) without such mixing is only decomposed and lowercased: mapping
    every character costs more than the rest together, and its words are no English phrase anyway.
    """
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", text)
    text = _MARKS.sub("", text)
    if text.isascii():
        return text.lower()
    if _HIDDEN.search(text) or _MIXED.search(text) or not _FOREIGN.search(text):
        text = text.translate(_TABLE)
    return text.lower()
