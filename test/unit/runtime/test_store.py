"""The informer store: atomic replace, indexes kept current on every change; and cache label selectors."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.runtime.cache import parse_label_selector
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.store import INDEX_NAMESPACE, INDEX_OWNER_UID, Store


def cm(
    name: str,
    namespace: str | None = "default",
    rv: str = "1",
    owners: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv, "uid": f"uid-{name}"}
    if namespace:
        meta["namespace"] = namespace
    if owners:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Owner", "name": o, "uid": o, "controller": i == 0}
            for i, o in enumerate(owners)
        ]
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


def names(objs: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objs)


def by_team(obj: dict[str, Any]) -> list[str]:
    team = (obj["metadata"].get("labels") or {}).get("team")
    return [team] if team else []


# ------------------------------------------------------------------------------------- replace


def test_replace_holds_exactly_the_listed_objects() -> None:
    store = Store()
    store.replace([cm("a"), cm("b")], "10")
    store.replace([cm("b", rv="2"), cm("c")], "20")
    assert names(store.list()) == ["b", "c"]
    assert len(store) == 2
    assert store.get(ObjectKey("default", "a")) is None
    assert store.get(ObjectKey("default", "b"))["metadata"]["resourceVersion"] == "2"  # type: ignore[index]
    assert store.resource_version == "20"


def test_replace_is_invisible_to_readers_until_it_is_complete() -> None:
    store = Store()
    store.replace([cm("old-1"), cm("old-2")], "1")
    seen_during_replace: list[list[str]] = []

    def probe(obj: dict[str, Any]) -> list[str]:
        # Indexers run while replace builds the new contents: whatever the store shows then is what
        # any reader interleaved with the replace would see.
        seen_during_replace.append(names(store.list()))
        seen_during_replace.append(names(store.by_index(INDEX_NAMESPACE, "default")))
        return []

    store.add_indexer("probe", probe)
    seen_during_replace.clear()
    store.replace([cm("new-1"), cm("new-2"), cm("new-3")], "2")

    assert seen_during_replace, "the probe indexer must have run"
    assert all(seen == ["old-1", "old-2"] for seen in seen_during_replace)
    assert names(store.list()) == ["new-1", "new-2", "new-3"]


def test_snapshot_taken_before_replace_keeps_the_old_contents() -> None:
    store = Store()
    store.replace([cm("a")], "1")
    before = store.snapshot()
    store.replace([cm("b")], "2")
    assert list(before) == [ObjectKey("default", "a")]
    assert store.keys() == [ObjectKey("default", "b")]


def test_replace_rebuilds_every_index() -> None:
    store = Store({"team": by_team})
    store.replace([cm("a", owners=("o1",), labels={"team": "x"}), cm("b", namespace="other")], "1")
    store.replace([cm("c", owners=("o2",), labels={"team": "y"})], "2")
    assert store.by_index(INDEX_OWNER_UID, "o1") == []
    assert names(store.by_index(INDEX_OWNER_UID, "o2")) == ["c"]
    assert store.by_index(INDEX_NAMESPACE, "other") == []
    assert store.by_index("team", "x") == []
    assert names(store.by_index("team", "y")) == ["c"]


# ---------------------------------------------------------------------------------- upsert/remove


def test_upsert_returns_the_replaced_object() -> None:
    store = Store()
    first = cm("a", rv="1")
    assert store.upsert(first) is None
    assert store.upsert(cm("a", rv="2")) is first
    assert store.get(ObjectKey("default", "a"))["metadata"]["resourceVersion"] == "2"  # type: ignore[index]


def test_upsert_indexes_a_new_object_under_namespace_and_every_owner() -> None:
    store = Store()
    store.upsert(cm("a", owners=("controller-uid", "other-owner-uid")))
    store.upsert(cm("node", namespace=None))
    assert names(store.by_index(INDEX_NAMESPACE, "default")) == ["a"]
    assert names(store.by_index(INDEX_NAMESPACE, "")) == ["node"]
    assert names(store.by_index(INDEX_OWNER_UID, "controller-uid")) == ["a"]
    assert names(store.by_index(INDEX_OWNER_UID, "other-owner-uid")) == ["a"]


def test_upsert_moves_an_object_between_index_values() -> None:
    store = Store({"team": by_team})
    store.upsert(cm("a", owners=("o1",), labels={"team": "x"}))
    store.upsert(cm("b", owners=("o1",), labels={"team": "x"}))
    store.upsert(cm("a", rv="2", owners=("o2",), labels={"team": "y"}))
    assert names(store.by_index(INDEX_OWNER_UID, "o1")) == ["b"]
    assert names(store.by_index(INDEX_OWNER_UID, "o2")) == ["a"]
    assert names(store.by_index("team", "x")) == ["b"]
    assert names(store.by_index("team", "y")) == ["a"]


def test_by_index_returns_the_current_object_after_an_update_that_keeps_index_values() -> None:
    store = Store()
    store.upsert(cm("a", rv="1", owners=("o1",)))
    store.upsert(cm("a", rv="2", owners=("o1",)))
    [obj] = store.by_index(INDEX_OWNER_UID, "o1")
    assert obj["metadata"]["resourceVersion"] == "2"


def test_remove_drops_the_object_from_every_index() -> None:
    store = Store({"team": by_team})
    store.upsert(cm("a", owners=("o1",), labels={"team": "x"}))
    removed = store.remove(ObjectKey("default", "a"))
    assert removed is not None and removed["metadata"]["name"] == "a"
    assert len(store) == 0
    for index, value in ((INDEX_NAMESPACE, "default"), (INDEX_OWNER_UID, "o1"), ("team", "x")):
        assert store.by_index(index, value) == []
        assert store.index_keys(index, value) == []


def test_remove_of_an_unknown_key_returns_none() -> None:
    store = Store()
    assert store.remove(ObjectKey("default", "missing")) is None


def test_index_keys_lists_keys_without_objects() -> None:
    store = Store()
    store.upsert(cm("a", owners=("o1",)))
    store.upsert(cm("b", owners=("o1",)))
    assert store.index_keys(INDEX_OWNER_UID, "o1") == [ObjectKey("default", "a"), ObjectKey("default", "b")]


# --------------------------------------------------------------------------------------- indexers


def test_indexer_added_later_indexes_what_the_store_already_holds() -> None:
    store = Store()
    store.replace([cm("a", labels={"team": "x"}), cm("b")], "1")
    store.add_indexer("team", by_team)
    assert names(store.by_index("team", "x")) == ["a"]
    store.upsert(cm("c", labels={"team": "x"}))
    assert names(store.by_index("team", "x")) == ["a", "c"]


def test_indexer_returning_a_lone_string_indexes_one_value_not_its_characters() -> None:
    store = Store({"name": lambda obj: obj["metadata"]["name"]})
    store.upsert(cm("abc"))
    assert names(store.by_index("name", "abc")) == ["abc"]
    assert store.by_index("name", "a") == []


def test_indexer_that_raises_leaves_the_object_out_of_that_index_only() -> None:
    def fussy(obj: dict[str, Any]) -> list[str]:
        if obj["metadata"]["name"] == "bad":
            raise ValueError("cannot index this one")
        return ["ok"]

    store = Store({"fussy": fussy})
    store.replace([cm("good"), cm("bad")], "1")
    store.upsert(cm("bad", rv="2"))
    assert names(store.by_index("fussy", "ok")) == ["good"]
    assert names(store.list()) == ["bad", "good"]
    assert names(store.by_index(INDEX_NAMESPACE, "default")) == ["bad", "good"]


def test_unknown_index_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="owner-uid"):
        Store().by_index("nope", "x")


def test_index_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="already defined"):
        Store({INDEX_NAMESPACE: by_team})
    store = Store({"team": by_team})
    with pytest.raises(ValueError, match="already defined"):
        store.add_indexer("team", by_team)


# -------------------------------------------------------------------------------- label selectors


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app=web", {}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app in (web, db)", {"app": "db"}, True),
        ("app in (web,db)", {"app": "cache"}, False),
        ("app notin (web)", {}, True),
        ("app notin (web)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("app", {}, False),
        ("!app", {}, True),
        ("!app", {"app": "x"}, False),
        ("app.kubernetes.io/name=x,tier in (a),!debug", {"app.kubernetes.io/name": "x", "tier": "a"}, True),
        ("app.kubernetes.io/name=x,tier in (a),!debug", {"app.kubernetes.io/name": "x", "debug": "1"}, False),
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas<2", {"replicas": "3"}, False),
        ("replicas>2", {"replicas": "many"}, False),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selector_matches_like_the_api_server(
    selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_label_selector(selector)(labels) is expected


@pytest.mark.parametrize("selector", ["app=(x", "a b", "app in x", "replicas>two", "=x"])
def test_label_selector_that_does_not_parse_is_rejected(selector: str) -> None:
    with pytest.raises(ValueError, match="label selector"):
        parse_label_selector(selector)
