"""PII redaction: exact outputs per type, check digits, the corpus floors, and idempotence.

The floors sit a little under what the corpus measures today (``python -m bench.guardrails``): every
type P 1.000; recall 1.000 per type without the rows marked ``hard`` (known misses), 0.946 with them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.llm.guardrails import PLACEHOLDER_OF, PLACEHOLDERS, PiiRedaction
from agentkube.dataplane.llm.guardrails.pii import iban_valid, luhn, verhoeff

CORPUS = Path(__file__).resolve().parents[3] / "data" / "guardrails" / "pii.jsonl"
PII = PiiRedaction()


def corpus() -> list[dict[str, Any]]:
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def redacted(text: str) -> str:
    return PII.redact(text)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reach me at jane.roe@example.org or +44 20 7946 0958.", "Reach me at [EMAIL] or [PHONE]."),
        (
            "Call (415) 555-2671 or 415.555.0132, mobile: 5551234567",
            "Call [PHONE] or [PHONE], mobile: [PHONE]",
        ),
        ("Pay 4111 1111 1111 1111 or 4111 1111 1111 1112.", "Pay [CARD] or 4111 1111 1111 1112."),
        ("Amex 3782-822463-10005, Visa 4012888888881881", "Amex [CARD], Visa [CARD]"),
        (
            "IBAN GB82 WEST 1234 5698 7654 32, not GB82 WEST 1234 5698 7654 33.",
            "IBAN [IBAN], not GB82 WEST 1234 5698 7654 33.",
        ),
        ("to DE89370400440532013000 today", "to [IBAN] today"),
        ("SSN 536-90-4399; 666-12-3456 is never issued.", "SSN [NATIONAL_ID]; 666-12-3456 is never issued."),
        (
            "DNI 12345678Z, NIE X1234567L, NI AB 12 34 56 C",
            "DNI [NATIONAL_ID], NIE [NATIONAL_ID], NI [NATIONAL_ID]",
        ),
        ("CPF 111.444.777-35 but not 111.444.777-36", "CPF [NATIONAL_ID] but not 111.444.777-36"),
        ("NIR 1 85 05 78 006 084 91", "NIR [NATIONAL_ID]"),
        (
            "Servers 203.0.113.42, 2001:db8::1 and 127.0.0.1.",
            "Servers [IP_ADDRESS], [IP_ADDRESS] and 127.0.0.1.",
        ),
        ("OPENAI_API_KEY=sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4 in .env", "OPENAI_API_KEY=[API_KEY] in .env"),
        (
            "aws AKIAIOSFODNN7EXAMPLE, gh ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "aws [API_KEY], gh [API_KEY]",
        ),
        ("export DB_PASSWORD=hunter2 # password: str", "export DB_PASSWORD=[SECRET] # password: str"),
        (
            "curl -H 'Authorization: Bearer abc.def-123456' https://u:pw1@api.example.com/x",
            "curl -H 'Authorization: Bearer [SECRET]' https://u:[SECRET]@api.example.com/x",
        ),
        ('{"password": "p@ss w0rd", "user": "ann"}', '{"password": "[SECRET]", "user": "ann"}'),
        (
            "my password is hunter2! and the password is wrong",
            "my password is [SECRET]! and the password is wrong",
        ),
        (
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5\n"
            "-----END EC PRIVATE KEY-----\nthanks",
            "[PRIVATE_KEY]\nthanks",
        ),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl ok", "token [JWT] ok"),
    ],
)
def test_redacts_each_type_with_its_placeholder(text: str, expected: str) -> None:
    assert redacted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Version 1.2.3.4 shipped on 2024-05-01; order 1234567 at 10:30:45.",
        "Use logo@2x.png; git clone git@github.com:org/repo.git; npm i lodash@4.17.21",
        "netmask 255.255.255.0 on 0.0.0.0, MAC 00:1a:2b:3c:4d:5e, std::vector<int>",
        "Unix time 1700000000000 and AWS account 123456789012",
        "password = input('Password: '); token = get_token(); max_tokens=1024; API_KEY=api_key",
        "pip install scikit-learn; sk-this-is-not-a-real-key-just-words",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    ],
)
def test_lookalikes_that_are_not_personal_data_are_left_alone(text: str) -> None:
    out, found = PII.redact(text)
    assert out is text and not found


def test_check_digit_algorithms_agree_with_known_values() -> None:
    assert luhn("4111111111111111") and luhn("378282246310005") and not luhn("4111111111111112")
    assert iban_valid("DE89370400440532013000") and iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89370400440532013001") and not iban_valid("GB82WEST1234569876543")
    assert verhoeff("2363") and not verhoeff("2364")


def test_unchanged_text_is_the_same_object_and_counts_nothing() -> None:
    text = "Nothing personal here, just a question about Python."
    out, found = PII.redact(text)
    assert out is text and sum(found.values()) == 0
    assert PII.inspect(text, "user").text is None


def test_the_verdict_counts_every_piece_replaced() -> None:
    verdict = PII.inspect("a@example.com b@example.com 203.0.113.9", "tool")
    assert (
        verdict.text == "[EMAIL] [EMAIL] [IP_ADDRESS]" and verdict.redactions == 3 and verdict.reason is None
    )


def test_placeholders_are_ascii_without_digits_so_they_are_never_matched_again() -> None:
    for placeholder in PLACEHOLDERS:
        assert placeholder.isascii() and not any(ch.isdigit() for ch in placeholder)
        assert redacted(f"x {placeholder} y") == f"x {placeholder} y"


def test_redacting_the_corpus_twice_changes_nothing_the_second_time() -> None:
    for row in corpus():
        once = redacted(row["text"])
        assert redacted(once) == once, row["text"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789 -.+()/:@abcdefXYZ_=", max_size=80))
def test_redaction_is_idempotent_on_digit_soup(text: str) -> None:
    once = redacted(text)
    assert redacted(once) == once


def test_every_type_stays_above_its_precision_and_recall_floors() -> None:
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in corpus():
        out, found = PII.redact(row["text"])
        t = tally[row["kind"]]
        if row["label"] == "pii":
            ok = row["value"] not in out and PLACEHOLDER_OF[row["kind"]] in out
            t["tp"] += ok
            t["pos"] += 1
            if not row.get("hard"):
                t["easy_tp"] += ok
                t["easy"] += 1
        else:
            t["fp"] += bool(found)
            t["neg"] += 1
    assert set(tally) == set(PLACEHOLDER_OF)
    for kind, t in tally.items():
        assert t["neg"] >= 1, f"{kind}: no hard negatives"
        assert t["tp"] / (t["tp"] + t["fp"]) >= 0.95, kind
        assert t["easy_tp"] / t["easy"] >= 0.95, kind
    overall = sum(t["tp"] for t in tally.values()) / sum(t["pos"] for t in tally.values())
    assert overall >= 0.92
