"""The pure parts of the reflector: relist diff, backoff, and how watch events reach store and handlers."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, cast

import orjson
import pytest
import structlog
import structlog.testing

from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.reflector import (
    Backoff,
    Event,
    EventType,
    Reflector,
    relist_events,
    strip_managed_fields,
)
from agentkube.runtime.store import INDEX_OWNER_UID, Store

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

CONFIGMAP = GVK("", "v1", "ConfigMap")


def cm(name: str, rv: str, uid: str | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": rv,
            "uid": uid or f"uid-{name}",
            **meta,
        },
    }


def keyed(*objs: dict[str, Any]) -> dict[ObjectKey, dict[str, Any]]:
    return {ObjectKey.of(o): o for o in objs}


def summary(events: list[Event]) -> list[tuple[str, str, str | None]]:
    return [
        (e.type.value, e.obj["metadata"]["name"], e.old["metadata"]["resourceVersion"] if e.old else None)
        for e in events
    ]


# ----------------------------------------------------------------------------------- relist diff


def test_relist_reports_new_objects_as_added() -> None:
    assert summary(relist_events({}, keyed(cm("a", "1"), cm("b", "2")))) == [
        ("ADDED", "a", None),
        ("ADDED", "b", None),
    ]


def test_relist_reports_changed_resource_version_as_modified_with_the_old_object() -> None:
    old = cm("a", "1")
    events = relist_events(keyed(old), keyed(cm("a", "5")))
    assert summary(events) == [("MODIFIED", "a", "1")]
    assert events[0].old is old


def test_relist_reports_objects_missing_from_the_list_as_deleted_with_their_last_state() -> None:
    gone = cm("gone", "3")
    events = relist_events(keyed(gone, cm("kept", "4")), keyed(cm("kept", "4")))
    assert summary(events) == [("DELETED", "gone", "3")]
    assert events[0].obj is gone


def test_relist_says_nothing_about_objects_whose_resource_version_is_unchanged() -> None:
    assert relist_events(keyed(cm("a", "1"), cm("b", "2")), keyed(cm("a", "1"), cm("b", "2"))) == []


def test_relist_reports_an_object_recreated_under_the_same_name_as_deleted_then_added() -> None:
    events = relist_events(keyed(cm("a", "1", uid="first")), keyed(cm("a", "9", uid="second")))
    assert summary(events) == [("DELETED", "a", "1"), ("ADDED", "a", None)]
    assert events[0].obj["metadata"]["uid"] == "first"
    assert events[1].obj["metadata"]["uid"] == "second"


def test_relist_mixes_adds_updates_deletes_and_no_ops() -> None:
    old = keyed(cm("same", "1"), cm("changed", "2"), cm("deleted", "3"))
    new = keyed(cm("same", "1"), cm("changed", "7"), cm("added", "8"))
    assert sorted(summary(relist_events(old, new))) == [
        ("ADDED", "added", None),
        ("DELETED", "deleted", "3"),
        ("MODIFIED", "changed", "2"),
    ]


# --------------------------------------------------------------------------------------- backoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_from_0_8_s_up_to_the_30_s_cap() -> None:
    backoff = Backoff(clock=Clock(), rng=lambda: 0.0)
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0])


def test_backoff_jitter_only_shortens_delays_so_the_figures_are_upper_bounds() -> None:
    backoff = Backoff(clock=Clock(), rng=lambda: 0.999999)
    delays = [backoff.next_delay() for _ in range(8)]
    bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= base
        assert delay < base


def test_backoff_jitter_spreads_delays_of_processes_failing_together() -> None:
    values = iter([0.0, 0.5, 1.0 - 1e-9])
    delays = [Backoff(clock=Clock(), rng=lambda: next(values)).next_delay() for _ in range(3)]
    assert len(set(delays)) == 3


def test_backoff_starts_over_after_two_minutes_without_failure() -> None:
    clock = Clock()
    backoff = Backoff(clock=clock, rng=lambda: 0.0)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.base == pytest.approx(25.6)
    # The last retry was due 12.8 s after the last failure; healthy time counts from then.
    clock.now += 12.8 + 120.0
    assert backoff.next_delay() == pytest.approx(0.8)


def test_backoff_keeps_growing_while_failures_come_within_two_minutes() -> None:
    clock = Clock()
    backoff = Backoff(clock=clock, rng=lambda: 0.0)
    delays = []
    for _ in range(4):
        delay = backoff.next_delay()
        delays.append(delay)
        clock.now += delay + 119.0  # retried, then healthy for just under two minutes
    assert delays == pytest.approx([0.8, 1.6, 3.2, 6.4])


def test_backoff_does_not_count_its_own_wait_as_healthy_time() -> None:
    clock = Clock()
    backoff = Backoff(clock=clock, rng=lambda: 0.0, initial=100.0, cap=200.0)
    backoff.next_delay()  # waits 100 s
    clock.now += 100.0 + 60.0  # the retry ran for 60 s, then failed
    assert backoff.next_delay() == pytest.approx(200.0)


def test_backoff_reset_starts_over() -> None:
    backoff = Backoff(clock=Clock(), rng=lambda: 0.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.8)


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0.0}, {"initial": 40.0, "cap": 30.0}, {"factor": 0.5}, {"jitter": 1.0}]
)
def test_backoff_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- watch events -> store


def reflector(store: Store, sink: list[Event], **kwargs: Any) -> Reflector:
    # Applying events to the store touches no I/O, so no client is needed here; the list/watch
    # loop itself is tested against a real API server in test/integration/test_cache.py.
    return Reflector(cast("Client", None), CONFIGMAP, store, sink.append, **kwargs)


def test_watch_events_update_the_store_before_handlers_hear_of_them() -> None:
    store = Store()
    seen: list[tuple[str, int]] = []

    def handler(event: Event) -> None:
        seen.append((event.type.value, len(store)))

    r = Reflector(cast("Client", None), CONFIGMAP, store, handler)
    r._apply({"type": "ADDED", "object": cm("a", "1")})
    r._apply({"type": "DELETED", "object": cm("a", "2")})
    assert seen == [("ADDED", 1), ("DELETED", 0)]


def test_watch_events_become_added_modified_deleted_with_the_previous_object() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events)
    r._apply({"type": "ADDED", "object": cm("a", "1")})
    r._apply({"type": "MODIFIED", "object": cm("a", "2")})
    r._apply({"type": "DELETED", "object": cm("a", "3")})
    assert summary(events) == [("ADDED", "a", None), ("MODIFIED", "a", "1"), ("DELETED", "a", "2")]
    assert len(store) == 0
    assert r.resource_version == "3"


def test_an_added_event_for_a_cached_object_is_delivered_as_modified() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events)
    r._apply({"type": "ADDED", "object": cm("a", "1")})
    r._apply({"type": "ADDED", "object": cm("a", "2")})
    assert summary(events) == [("ADDED", "a", None), ("MODIFIED", "a", "1")]


def test_bookmarks_move_the_resource_version_and_nothing_else() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events)
    r._apply({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": "42"}}})
    assert r.resource_version == "42"
    assert events == []
    assert len(store) == 0


def test_stored_objects_lose_managed_fields_by_default() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events)
    r._apply({"type": "ADDED", "object": cm("a", "1", managedFields=[{"manager": "kubectl"}])})
    assert "managedFields" not in store.list()[0]["metadata"]


def test_transform_none_stores_objects_as_sent() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events, transform=None)
    r._apply({"type": "ADDED", "object": cm("a", "1", managedFields=[{"manager": "kubectl"}])})
    assert store.list()[0]["metadata"]["managedFields"] == [{"manager": "kubectl"}]


def test_metadata_only_reflector_keeps_only_metadata_under_the_kind_it_watches() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events, metadata_only=True)
    partial = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", **cm("a", "1")}
    partial["data"] = {"big": "x" * 100}
    r._apply({"type": "ADDED", "object": partial})
    [obj] = store.list()
    assert obj == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": cm("a", "1")["metadata"]}


def test_repeated_metadata_strings_are_shared_between_cached_objects() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events)
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "owner-uid"}
    for name in ("a", "b"):
        raw = orjson.dumps(cm(name, "1", labels={"app": "web-frontend"}, ownerReferences=[owner]))
        r._apply({"type": "ADDED", "object": orjson.loads(raw)})
    a, b = (store.get(ObjectKey("ns", n))["metadata"] for n in ("a", "b"))  # type: ignore[index]
    assert a["namespace"] is b["namespace"]
    assert a["labels"]["app"] is b["labels"]["app"]
    assert a["ownerReferences"][0]["uid"] is b["ownerReferences"][0]["uid"]
    assert [o["metadata"]["name"] for o in store.by_index(INDEX_OWNER_UID, "owner-uid")] == ["a", "b"]


def test_strip_managed_fields_leaves_everything_else() -> None:
    obj = cm("a", "1", managedFields=[{"manager": "x"}], labels={"k": "v"})
    expected = copy.deepcopy(obj)
    del expected["metadata"]["managedFields"]
    assert strip_managed_fields(obj) == expected
    assert strip_managed_fields({"kind": "Weird"}) == {"kind": "Weird"}


def test_watch_timeout_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError, match="watch_timeout"):
        reflector(Store(), [], watch_timeout=(10, 5))


def test_event_types_include_resync_that_handlers_can_tell_apart() -> None:
    assert {t.value for t in EventType} == {"ADDED", "MODIFIED", "DELETED", "RESYNC"}


def secret(name: str, rv: str, value: str) -> dict[str, Any]:
    return {**cm(name, rv), "kind": "Secret", "data": {"token": value}}


def failing_on(name: str) -> Any:
    def transform(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"]["name"] == name:
            raise ValueError(f"cannot redact {obj['data']['token']}")
        obj.pop("data", None)
        return obj

    return transform


def transform_failures(kind: str) -> float:
    from agentkube.runtime import metrics

    return (
        metrics.REGISTRY.get_sample_value("agentkube_cache_transform_failures_total", {"kind": kind}) or 0.0
    )


def test_a_transform_that_raises_drops_the_object_counts_and_logs_it_without_the_value() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events, transform=failing_on("bad"))
    before = transform_failures(str(CONFIGMAP))
    with structlog.testing.capture_logs() as logs:
        r._apply({"type": "ADDED", "object": secret("bad", "1", "s3cr3t-value")})
        r._apply({"type": "ADDED", "object": secret("good", "2", "other-value")})
    assert [str(k) for k in store.keys()]  # noqa: SIM118 (Store is not a dict) == ["ns/good"], "the object the transform failed on is not cached"
    assert all("data" not in obj for obj in store.list())
    assert summary(events) == [("ADDED", "good", None)]
    # The watch moves on past the object: it is not retried at the same event forever.
    assert r.resource_version == "2"
    assert transform_failures(str(CONFIGMAP)) == before + 1
    failures = [line for line in logs if "transform" in line["event"]]
    assert failures and failures[0]["object"] == "ns/bad"
    assert "s3cr3t-value" not in repr(logs)


def test_an_update_the_transform_fails_on_removes_the_cached_object() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    names = {"fail": ""}

    def transform(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"]["resourceVersion"] == names["fail"]:
            raise ValueError("broken")
        obj.pop("data", None)
        return obj

    r = reflector(store, events, transform=transform)
    r._apply({"type": "ADDED", "object": secret("a", "1", "v1")})
    names["fail"] = "2"
    r._apply({"type": "MODIFIED", "object": secret("a", "2", "v2")})
    # The cache never holds the untransformed update, nor pretends the old state is current.
    assert len(store) == 0
    assert summary(events) == [("ADDED", "a", None), ("DELETED", "a", "1")]
    assert "data" not in events[-1].obj


def test_a_list_leaves_out_the_objects_the_transform_fails_on() -> None:
    store, events = Store(), []  # type: ignore[var-annotated]
    r = reflector(store, events, transform=failing_on("bad"))
    kept = r._prepare_all([secret("bad", "1", "s3cr3t"), secret("good", "2", "x")])
    assert [o["metadata"]["name"] for o in kept] == ["good"]
