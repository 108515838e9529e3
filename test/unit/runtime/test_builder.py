"""One transform per kind: what the builder and the cache do when declarations of a kind disagree."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.runtime import GVK, Cache, Manager, ManagerOptions, Request, strip_managed_fields

CM = GVK("", "v1", "ConfigMap")
SECRET = GVK("", "v1", "Secret")
PRIMARY = GVK("example.com", "v1", "Widget")


def keys_only(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "data": dict.fromkeys(obj.get("data") or {}, "")}


def other_transform(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


async def nothing(request: Request) -> None:
    return None


def manager() -> Manager:
    # Wiring creates informers but starts nothing, so no client is needed.
    return Manager(None, ManagerOptions(install_signal_handlers=False))  # type: ignore[arg-type]


def test_informers_of_one_kind_share_the_transform_of_the_first() -> None:
    cache = Cache(None)  # type: ignore[arg-type]
    full = cache.informer(SECRET, transform=keys_only)
    assert cache.informer(SECRET, transform=keys_only) is full
    # Another scope of the kind is a new informer, but must store the same shape.
    assert cache.informer(SECRET, transform=keys_only, metadata_only=True) is not full
    with pytest.raises(ValueError, match=r"v1/Secret is already cached with transform keys_only; .*strip_"):
        cache.informer(SECRET, label_selector="a=b")
    with pytest.raises(ValueError, match=r"v1/Secret .*keys_only.*other_transform"):
        cache.informer(SECRET, transform=other_transform)


def test_naming_the_cache_transform_is_the_same_as_the_default() -> None:
    cache = Cache(None)  # type: ignore[arg-type]
    informer = cache.informer(CM)
    assert cache.informer(CM, transform=strip_managed_fields) is informer
    with pytest.raises(ValueError, match="v1/ConfigMap is already cached with transform strip_managed_"):
        cache.informer(CM, transform=keys_only)


def test_a_cache_without_transform_stores_objects_as_sent_and_says_so() -> None:
    cache = Cache(None, transform=None)  # type: ignore[arg-type]
    cache.informer(CM)
    with pytest.raises(ValueError, match=r"already cached with transform None \(objects stored as sent\)"):
        cache.informer(CM, transform=keys_only)


def test_watches_and_owns_pass_their_transform_to_the_cache() -> None:
    mgr = manager()
    (
        mgr.controller("a")
        .for_kind(PRIMARY)
        .owns(CM, transform=keys_only)
        .watches(SECRET, map_to=lambda obj: [], transform=keys_only)
        .complete(nothing)
    )
    # The informers exist with keys_only: asking for them with it gives them back, without it fails.
    assert mgr.cache.informer(CM, transform=keys_only) in mgr.cache.informers
    assert mgr.cache.informer(SECRET, transform=keys_only) in mgr.cache.informers
    with pytest.raises(ValueError, match="v1/ConfigMap"):
        mgr.cache.informer(CM)


def test_a_second_controller_declaring_a_kind_with_another_transform_fails_naming_both() -> None:
    mgr = manager()
    first = mgr.controller("first").for_kind(PRIMARY)
    first.watches(SECRET, map_to=lambda obj: [], transform=keys_only).complete(nothing)
    second = mgr.controller("second").for_kind(CM).watches(SECRET, map_to=lambda obj: [])
    with pytest.raises(
        ValueError, match=r"controller 'second': v1/Secret is already cached with .*keys_only"
    ):
        second.complete(nothing)
    # The same transform is fine: both controllers share the one informer.
    third = mgr.controller("third").for_kind(CM).watches(SECRET, map_to=lambda obj: [], transform=keys_only)
    third.complete(nothing)
    assert [c.name for c in mgr.controllers] == ["first", "third"]


def test_owns_with_another_transform_than_the_primary_of_the_same_kind_fails() -> None:
    builder = manager().controller("self-owned").for_kind(CM)
    builder.owns(CM, metadata_only=True, transform=keys_only)
    with pytest.raises(
        ValueError, match=r"controller 'self-owned': v1/ConfigMap .*strip_managed_.*keys_only"
    ):
        builder.complete(nothing)
