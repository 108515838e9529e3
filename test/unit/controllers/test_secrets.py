"""The Secret cache transform: key names and digests survive, values and annotations do not."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkube.controllers.secrets import SecretReferences, digest_secret, secret_transform
from test.unit.controllers.conftest import TEST_DIGEST_KEY, World, secret

KEY = TEST_DIGEST_KEY


def keyed(value: bytes, key: bytes = KEY) -> str:
    return "hmac-sha256:" + hmac.new(key, value, hashlib.sha256).hexdigest()


def test_transform_keeps_key_names_and_digests_and_drops_every_value() -> None:
    raw = secret("team-a", "pat", {"token": "ghp_VALUE", "other": "second"})
    raw["stringData"] = {"token": "ghp_VALUE"}
    cached = digest_secret(raw, KEY)
    assert cached["metadata"] == {
        "name": "pat",
        "namespace": "team-a",
        "uid": raw["metadata"]["uid"],
        "resourceVersion": "100",
    }
    assert cached["digests"] == {"token": keyed(b"ghp_VALUE"), "other": keyed(b"second")}
    assert set(cached) == {"apiVersion", "kind", "metadata", "type", "digests"}
    # last-applied-configuration carries stringData in clear: annotations never reach the cache.
    assert "ghp_VALUE" not in repr(cached)
    assert "R2hw" not in repr(cached)  # nor the base64 form


def test_digest_changes_with_the_value_only() -> None:
    a = digest_secret(secret("n", "s", {"k": "one"}), KEY)["digests"]["k"]
    b = digest_secret(secret("n", "t", {"k": "one"}), KEY)["digests"]["k"]
    c = digest_secret(secret("n", "s", {"k": "two"}), KEY)["digests"]["k"]
    assert a == b != c


@given(value=st.binary(max_size=64), other=st.binary(min_size=16, max_size=64))
def test_a_digest_cannot_be_recomputed_without_the_key(value: bytes, other: bytes) -> None:
    import base64

    obj = {"metadata": {"name": "s"}, "data": {"k": base64.b64encode(value).decode()}}
    digest = digest_secret(obj, KEY)["digests"]["k"]
    # Not the unkeyed hash anyone could compute from a guess of the value ...
    assert digest.removeprefix("hmac-sha256:") != hashlib.sha256(value).hexdigest()
    # ... and another key gives another digest.
    if other != KEY:
        assert digest_secret(obj, other)["digests"]["k"] != digest


def test_the_transform_of_one_key_is_one_function_and_short_keys_are_refused() -> None:
    assert secret_transform(KEY) is secret_transform(bytes(KEY))
    assert secret_transform(KEY) is not secret_transform(KEY[::-1])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        secret_transform(b"short")


def test_references_collect_digests_of_found_keys(world: World) -> None:
    world.add(secret("team-a", "pat", {"token": "x", "other": "y"}))
    refs = SecretReferences(world.cache, "MCP team-a/m", "team-a")
    assert refs.key("spec.f", "pat", "token")
    assert refs.problems == []
    assert refs.digests == {"pat/token": keyed(b"x")}
    assert refs.keys("spec.g", "pat") == ["other", "token"]
    assert set(refs.digests) == {"pat/token", "pat/other"}


def test_references_in_another_namespace_are_not_found(world: World) -> None:
    world.add(secret("elsewhere", "pat", {"token": "x"}))
    refs = SecretReferences(world.cache, "MCP team-a/m", "team-a")
    assert not refs.key("spec.f", "pat", "token")
    assert [p.reason for p in refs.problems] == ["SecretNotFound"]
