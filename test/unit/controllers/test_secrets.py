"""The Secret cache transform: key names and digests survive, values and annotations do not."""

from __future__ import annotations

import hashlib

from agentkube.controllers.secrets import SecretReferences, digest_secret
from test.unit.controllers.conftest import World, secret


def test_transform_keeps_key_names_and_digests_and_drops_every_value() -> None:
    raw = secret("team-a", "pat", {"token": "ghp_VALUE", "other": "second"})
    raw["stringData"] = {"token": "ghp_VALUE"}
    cached = digest_secret(raw)
    assert cached["metadata"] == {
        "name": "pat",
        "namespace": "team-a",
        "uid": raw["metadata"]["uid"],
        "resourceVersion": "100",
    }
    assert cached["digests"] == {
        "token": "sha256:" + hashlib.sha256(b"ghp_VALUE").hexdigest(),
        "other": "sha256:" + hashlib.sha256(b"second").hexdigest(),
    }
    assert set(cached) == {"apiVersion", "kind", "metadata", "type", "digests"}
    # last-applied-configuration carries stringData in clear: annotations never reach the cache.
    assert "ghp_VALUE" not in repr(cached)
    assert "R2hw" not in repr(cached)  # nor the base64 form


def test_digest_changes_with_the_value_only() -> None:
    a = digest_secret(secret("n", "s", {"k": "one"}))["digests"]["k"]
    b = digest_secret(secret("n", "t", {"k": "one"}))["digests"]["k"]
    c = digest_secret(secret("n", "s", {"k": "two"}))["digests"]["k"]
    assert a == b != c


def test_references_collect_digests_of_found_keys(world: World) -> None:
    world.add(secret("team-a", "pat", {"token": "x", "other": "y"}))
    refs = SecretReferences(world.cache, "MCP team-a/m", "team-a")
    assert refs.key("spec.f", "pat", "token")
    assert refs.problems == []
    assert refs.digests == {"pat/token": "sha256:" + hashlib.sha256(b"x").hexdigest()}
    assert refs.keys("spec.g", "pat") == ["other", "token"]
    assert set(refs.digests) == {"pat/token", "pat/other"}


def test_references_in_another_namespace_are_not_found(world: World) -> None:
    world.add(secret("elsewhere", "pat", {"token": "x"}))
    refs = SecretReferences(world.cache, "MCP team-a/m", "team-a")
    assert not refs.key("spec.f", "pat", "token")
    assert [p.reason for p in refs.problems] == ["SecretNotFound"]
