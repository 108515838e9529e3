"""Sealed session ids: what opens, what is refused and why, and that keys never show."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.mcp import sessions
from agentkube.dataplane.mcp.sessions import (
    CLOCK_SKEW_SECONDS,
    MAX_TOKEN_CHARS,
    InvalidSession,
    KeyRing,
    Sealer,
    SessionState,
    new_sid,
)

NOW = 1_800_000_000
TTL = 3600
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
B64_A = base64.b64encode(KEY_A).decode()
B64_B = base64.b64encode(KEY_B).decode()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sealer(ring: str | KeyRing = f"a:{B64_A}", clock: Clock | None = None, ttl: int = TTL) -> Sealer:
    keyring = KeyRing.parse(ring) if isinstance(ring, str) else ring
    return Sealer(keyring, ttl, clock or Clock())


def state(**overrides: Any) -> SessionState:
    values: dict[str, Any] = {
        "protocol_version": "2025-06-18",
        "client_capabilities": {"roots": {"listChanged": True}, "sampling": {}},
        "client_info": {"name": "claude-code", "version": "2.1.0"},
        "upstream_sessions": {"github": "a1b2c3d4-e5f6", "files": "7788"},
        "issued_at": NOW,
        "sid": "5e55" * 8,
    }
    values.update(overrides)
    return SessionState(**values)


def reason_of(s: Sealer, token: str) -> str:
    with pytest.raises(InvalidSession) as e:
        s.open(token)
    return e.value.reason


def raw_of(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def token_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_sealed(key: bytes, kid: bytes, plain: bytes, version: int = 1) -> str:
    """A token built from the documented layout, independently of ``Sealer.seal``."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"agentkube mcp session v1").derive(
        key
    )
    header = bytes((version, len(kid))) + kid
    nonce = secrets.token_bytes(12)
    return token_of(header + nonce + AESGCM(derived).encrypt(nonce, plain, header))


# --- round trip and format ---------------------------------------------------------------------------


def test_a_sealed_state_opens_to_the_same_state() -> None:
    s = sealer()
    original = state()
    assert s.open(s.seal(original)) == original


def test_the_token_is_url_safe_base64_so_visible_ascii_and_short() -> None:
    s = sealer()
    token = s.seal(state())
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert all(0x21 <= ord(c) <= 0x7E for c in token)
    assert len(token) < 400
    bare = s.seal(state(client_capabilities={}, client_info=None, upstream_sessions={}))
    assert len(bare) <= 180


def test_sealing_twice_gives_different_ids_for_the_same_state() -> None:
    s = sealer()
    first, second = s.seal(state()), s.seal(state())
    assert first != second
    assert s.open(first) == s.open(second)


def test_the_documented_layout_with_hkdf_derived_key_and_kid_as_associated_data_opens() -> None:
    plain = orjson.dumps({"p": "2025-03-26", "c": {}, "i": None, "u": {"x": "1"}, "t": NOW, "s": "ab" * 16})
    opened = sealer().open(hand_sealed(KEY_A, b"a", plain))
    assert opened == SessionState("2025-03-26", {}, None, {"x": "1"}, NOW, "ab" * 16)


def test_the_kid_is_authenticated_so_relabelling_a_token_fails() -> None:
    # Both ids name the same key: a token re-labelled from one to the other must still fail,
    # which only happens when the kid is part of the associated data.
    s = sealer(f"a:{B64_A}, b:{B64_A}")
    raw = raw_of(s.seal(state()))
    assert raw[1:3] == b"\x01a"
    assert reason_of(s, token_of(raw[:2] + b"b" + raw[3:])) == "tampered"


def test_the_plaintext_uses_compact_one_letter_keys() -> None:
    s = sealer()
    raw = raw_of(s.seal(state()))
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"agentkube mcp session v1").derive(
        KEY_A
    )
    plain = AESGCM(derived).decrypt(raw[3:15], raw[15:], raw[:3])
    assert sorted(orjson.loads(plain)) == ["c", "i", "p", "s", "t", "u"]
    assert b" " not in plain


def test_new_state_is_issued_now_by_the_sealers_clock_with_a_fresh_sid() -> None:
    s = sealer(clock=Clock(NOW + 0.9))
    a = s.new_state("2025-11-25", {"elicitation": {}})
    b = s.new_state("2025-11-25", {"elicitation": {}}, {"name": "c"}, {"u": "1"})
    assert (a.issued_at, a.client_info, a.upstream_sessions) == (NOW, None, {})
    assert (b.client_info, b.upstream_sessions) == ({"name": "c"}, {"u": "1"})
    assert re.fullmatch(r"[0-9a-f]{32}", a.sid)
    assert a.sid != b.sid
    assert s.open(s.seal(b)) == b


def test_sids_are_sixteen_random_bytes_of_hex() -> None:
    sids = {new_sid() for _ in range(100)}
    assert len(sids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", sid) for sid in sids)


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
states = st.builds(
    SessionState,
    protocol_version=st.text(min_size=1, max_size=12),
    client_capabilities=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    client_info=st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    upstream_sessions=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=40), max_size=4),
    issued_at=st.integers(NOW - TTL, NOW + CLOCK_SKEW_SECONDS),
    sid=st.text(max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_any_state_round_trips(original: SessionState) -> None:
    s = sealer()
    assert s.open(s.seal(original)) == original


def test_a_state_too_large_for_a_header_is_refused_at_sealing() -> None:
    with pytest.raises(ValueError, match="too large"):
        sealer().seal(state(client_info={"name": "x" * MAX_TOKEN_CHARS}))


# --- what is refused ---------------------------------------------------------------------------------


def test_every_single_bit_flip_of_the_sealed_bytes_is_refused() -> None:
    s = sealer(f"a:{B64_A}, b:{B64_B}")
    raw = raw_of(s.seal(state()))
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            with pytest.raises(InvalidSession):
                s.open(token_of(bytes(flipped)))


def test_every_single_bit_flip_of_the_token_text_is_refused() -> None:
    s = sealer()
    token = s.seal(state())
    for i in range(len(token)):
        for bit in range(8):
            flipped = token[:i] + chr(ord(token[i]) ^ (1 << bit)) + token[i + 1 :]
            with pytest.raises(InvalidSession):
                s.open(flipped)


def test_every_truncation_is_refused() -> None:
    s = sealer()
    token = s.seal(state())
    for length in range(len(token)):
        with pytest.raises(InvalidSession):
            s.open(token[:length])


@settings(max_examples=150, deadline=None)
@given(states, st.data())
def test_a_flipped_bit_or_a_cut_anywhere_in_any_token_is_refused(original: SessionState, data: Any) -> None:
    s = sealer()
    token = s.seal(original)
    i = data.draw(st.integers(0, len(token) - 1))
    bit = data.draw(st.integers(0, 7))
    with pytest.raises(InvalidSession):
        s.open(token[:i] + chr(ord(token[i]) ^ (1 << bit)) + token[i + 1 :])
    with pytest.raises(InvalidSession):
        s.open(token[:i])


def test_a_non_canonical_spelling_of_the_same_bytes_is_refused() -> None:
    s = sealer()
    # A sealed length that is not a multiple of 3 bytes leaves spare low bits in the last character.
    token = next(
        t for t in (s.seal(state(client_info={"name": "x" * n})) for n in range(3)) if len(raw_of(t)) % 3
    )
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(token[-1]) | 1]
    other = token[:-1] + last
    assert other != token and raw_of(other) == raw_of(token)
    assert reason_of(s, other) == "malformed"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "abc=",
        "a",
        "AQ",
        "x" * (MAX_TOKEN_CHARS + 1),
        "é" * 10,
    ],
)
def test_garbage_is_malformed(token: str) -> None:
    assert reason_of(sealer(), token) == "malformed"


def test_another_token_version_or_a_broken_header_is_malformed() -> None:
    s = sealer()
    plain = orjson.dumps({"p": "v", "c": {}, "i": None, "u": {}, "t": NOW, "s": "x"})
    assert reason_of(s, hand_sealed(KEY_A, b"a", plain, version=2)) == "malformed"
    assert reason_of(s, hand_sealed(KEY_A, b"", plain)) == "malformed"
    assert reason_of(s, hand_sealed(KEY_A, b"a!", plain)) == "malformed"
    assert reason_of(s, token_of(b"\x01\x05ab")) == "malformed"
    assert reason_of(s, token_of(b"\x01\x01a" + b"\x00" * 27)) == "malformed"


@pytest.mark.parametrize(
    "plain",
    [
        b"not json",
        b"[1, 2]",
        b'{"p": "v", "c": {}, "i": null, "u": {}, "t": 1}',
        b'{"p": 1, "c": {}, "i": null, "u": {}, "t": 1800000000, "s": "x"}',
        b'{"p": "v", "c": [], "i": null, "u": {}, "t": 1800000000, "s": "x"}',
        b'{"p": "v", "c": {}, "i": "me", "u": {}, "t": 1800000000, "s": "x"}',
        b'{"p": "v", "c": {}, "i": null, "u": {"a": 1}, "t": 1800000000, "s": "x"}',
        b'{"p": "v", "c": {}, "i": null, "u": {}, "t": true, "s": "x"}',
        b'{"p": "v", "c": {}, "i": null, "u": {}, "t": 1800000000.5, "s": "x"}',
        b'{"p": "v", "c": {}, "i": null, "u": {}, "t": 1800000000, "s": null}',
    ],
)
def test_authentic_but_misshapen_plaintext_is_malformed(plain: bytes) -> None:
    assert reason_of(sealer(), hand_sealed(KEY_A, b"a", plain)) == "malformed"


def test_a_key_id_the_ring_does_not_have_is_unknown() -> None:
    token = sealer(f"old:{B64_A}").seal(state())
    assert reason_of(sealer(f"new:{B64_A}"), token) == "unknown key id"


def test_the_same_key_id_with_another_key_is_tampered() -> None:
    token = sealer(f"k1:{B64_A}").seal(state())
    assert reason_of(sealer(f"k1:{B64_B}"), token) == "tampered"
    assert reason_of(sealer(KeyRing.generate()), sealer(KeyRing.generate()).seal(state())) == "tampered"


def test_expires_ttl_seconds_after_issue_and_not_before() -> None:
    clock = Clock()
    s = sealer(clock=clock)
    token = s.seal(state(issued_at=NOW))
    clock.now = NOW + TTL
    assert s.open(token).issued_at == NOW
    clock.now = NOW + TTL + 0.001
    assert reason_of(s, token) == "expired"


def test_a_replica_clock_ahead_by_at_most_the_skew_is_tolerated() -> None:
    s = sealer(clock=Clock(NOW))
    assert s.open(s.seal(state(issued_at=NOW + CLOCK_SKEW_SECONDS))).issued_at == NOW + CLOCK_SKEW_SECONDS
    assert reason_of(s, s.seal(state(issued_at=NOW + CLOCK_SKEW_SECONDS + 1))) == "not yet valid"


def test_the_error_says_the_reason_and_never_the_token() -> None:
    s = sealer()
    token = s.seal(state())
    with pytest.raises(InvalidSession) as e:
        s.open(token[:-3])
    assert str(e.value) == "invalid session id: malformed"
    assert token[:20] not in repr(e.value)


def test_a_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sealer(KeyRing.generate(), 0)


# --- rotation ----------------------------------------------------------------------------------------


def test_rotation_keeps_old_sessions_until_the_old_key_is_dropped() -> None:
    before = sealer(f"old:{B64_A}")
    old_token = before.seal(state())

    rotated = sealer(f"new:{B64_B}, old:{B64_A}")
    assert rotated.open(old_token) == state()
    new_token = rotated.seal(state())
    assert raw_of(new_token)[2:5] == b"new"
    assert rotated.open(new_token) == state()
    # A replica not yet rotated still opens what a rotated one sealed, once the ring carries both.
    assert sealer(f"old:{B64_A}, new:{B64_B}").open(new_token) == state()

    dropped = sealer(f"new:{B64_B}")
    assert dropped.open(new_token) == state()
    assert reason_of(dropped, old_token) == "unknown key id"


# --- key ring ----------------------------------------------------------------------------------------


def test_parse_reads_entries_in_order_and_tolerates_whitespace_and_base64_flavours() -> None:
    urlsafe = base64.urlsafe_b64encode(b"\xfb" * 32).decode().rstrip("=")
    ring = KeyRing.parse(f"  k-2 : {B64_A} ,\n\tk_1:{urlsafe}, K3:{B64_B.rstrip('=')}\n")
    assert ring.kids == ("k-2", "k_1", "K3")
    assert ring.sealing_kid == "k-2"
    assert KeyRing.parse(f"{'x' * 16}:{B64_A}").kids == ("x" * 16,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "key ring is empty"),
        ("  \n", "key ring is empty"),
        (f"a:{B64_A},", "key ring entry 2: empty"),
        (f"a:{B64_A}, ,b:{B64_B}", "key ring entry 2: empty"),
        (B64_A, "key ring entry 1: expected <kid>:<base64 of 32 bytes>, found no ':'"),
        (f"a:{B64_A},b{B64_B}", "key ring entry 2: expected <kid>:<base64 of 32 bytes>, found no ':'"),
        (f":{B64_A}", "key ring entry 1: key id must be 1-16 characters of A-Z a-z 0-9 _ -"),
        (f"{'x' * 17}:{B64_A}", "key ring entry 1: key id must be 1-16 characters"),
        (f"a.b:{B64_A}", "key ring entry 1: key id must be 1-16 characters"),
        (f"a:{B64_A},b:{B64_B},a:{B64_B}", "key ring entry 3: key id repeats entry 1"),
        ("a:", "key ring entry 1: key is not base64"),
        (f"a:{B64_A[:-2]}!=", "key ring entry 1: key is not base64"),
        (f"a:{B64_A[:10]} {B64_A[10:]}", "key ring entry 1: key is not base64"),
        (f"a:{B64_A}A", "key ring entry 1: key is not base64"),
        (
            f"a:{base64.b64encode(KEY_A[:31]).decode()}",
            "key ring entry 1: key decodes to 31 bytes, expected 32",
        ),
        (f"a:{base64.b64encode(KEY_A + b'!').decode()}", "key ring entry 1: key decodes to 33 bytes"),
    ],
)
def test_parse_errors_name_the_entry_and_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        KeyRing.parse(text)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize(
    "text",
    [
        "sekritkeymaterial12345",
        f"a:{B64_A}, {B64_B}",
        f"a:{B64_A[:-1]}#",
        f"a:{base64.b64encode(KEY_B[:20]).decode()}",
        f"{B64_B[:12]}!:{B64_A}",
        f"{B64_B[:12]}:{B64_A},{B64_B[:12]}:{B64_B}",
    ],
)
def test_parse_errors_carry_no_part_of_the_entry(text: str) -> None:
    with pytest.raises(ValueError) as e:
        KeyRing.parse(text)
    shown = str(e.value) + repr(e.value)
    for entry in text.split(","):
        for part in entry.strip().split(":"):
            if len(part) >= 6:
                assert part[:6] not in shown
    assert e.value.__cause__ is None
    assert e.value.__suppress_context__ or e.value.__context__ is None


def test_repr_of_ring_and_sealer_shows_key_ids_only() -> None:
    ring = KeyRing.parse(f"new:{B64_B}, old:{B64_A}")
    s = Sealer(ring, TTL)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"agentkube mcp session v1").derive(
        KEY_A
    )
    for shown in (repr(ring), str(ring), repr(s)):
        assert "new" in shown and "old" in shown
        for secret in (B64_A, B64_B, B64_A[:8], KEY_A.hex()[:16], derived.hex()[:16], repr(KEY_A)[:16]):
            assert secret not in shown
    assert repr(ring) == "KeyRing(kids=('new', 'old'))"
    assert not hasattr(ring, "__dict__")


def test_keys_are_derived_once_per_kid_when_the_ring_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = sessions._derive

    def counting(key: bytes) -> bytes:
        calls.append(key)
        return real(key)

    monkeypatch.setattr(sessions, "_derive", counting)
    s = sealer(f"a:{B64_A}, b:{B64_B}")
    assert calls == [KEY_A, KEY_B]
    for _ in range(20):
        s.open(s.seal(state()))
    assert len(calls) == 2


def test_generate_makes_a_random_single_key_ring() -> None:
    first, second = KeyRing.generate(), KeyRing.generate("solo")
    assert (first.kids, second.kids) == (("k1",), ("solo",))
    assert reason_of(sealer(KeyRing.generate()), sealer(first).seal(state())) == "tampered"
    with pytest.raises(ValueError, match="key id must be"):
        KeyRing.generate("bad kid")


def test_the_constructor_checks_what_parse_checks() -> None:
    with pytest.raises(ValueError, match="key ring is empty"):
        KeyRing([])
    with pytest.raises(ValueError, match="key 2: key id repeats"):
        KeyRing([("a", KEY_A), ("a", KEY_B)])
    with pytest.raises(ValueError, match="key 1: key is 16 bytes, expected 32"):
        KeyRing([("a", KEY_A[:16])])
    assert KeyRing([("a", KEY_A)]).kids == ("a",)


def test_from_env_reads_the_named_variable() -> None:
    ring = KeyRing.from_env("SESSION_KEYS", environ={"SESSION_KEYS": f"a:{B64_A}"})
    assert ring.kids == ("a",)
    assert sealer(f"a:{B64_A}").open(Sealer(ring, TTL, Clock()).seal(state())) == state()


def test_from_env_without_a_variable_generates_a_ring() -> None:
    assert KeyRing.from_env(None, environ={}).kids == ("k1",)


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKUBE_TEST_SESSION_KEYS", f"envkid:{B64_B}")
    assert KeyRing.from_env("AGENTKUBE_TEST_SESSION_KEYS").kids == ("envkid",)


@pytest.mark.parametrize("environ", [{}, {"KEYS": ""}, {"KEYS": "  "}])
def test_from_env_refuses_a_named_variable_that_is_unset_or_empty(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"^sessions\.keysEnv: variable KEYS is not set or empty$"):
        KeyRing.from_env("KEYS", environ=environ)


def test_from_env_names_the_variable_and_the_entry_but_not_the_key() -> None:
    with pytest.raises(ValueError) as e:
        KeyRing.from_env("KEYS", environ={"KEYS": f"a:{B64_A}, b:{B64_B[:20]}"})
    assert (
        str(e.value)
        == "sessions.keysEnv: variable KEYS: key ring entry 2: key decodes to 15 bytes, expected 32"
    )
    assert e.value.__cause__ is None and e.value.__suppress_context__
