"""The bookkeeping of own writes: which watch events are echoes of what a reconcile wrote."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentkube.runtime.echo import OwnWrites, note_written
from agentkube.runtime.informer import Event, EventType
from agentkube.runtime.reconcile import Request

OWNER = Request("ns", "owner")
OTHER = Request("ns", "other")


def cm(
    name: str, rv: str, *, namespace: str = "ns", api_version: str = "v1", kind: str = "ConfigMap"
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv, "uid": f"uid-{name}"},
    }


def modified(obj: dict[str, Any]) -> Event:
    return Event(EventType.MODIFIED, obj, obj)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_event_of_a_noted_write_names_its_writer_once() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    assert writes.echo_of(Event(EventType.ADDED, cm("a", "7"))) == OWNER
    assert len(writes) == 0
    # Consumed: the same state delivered again (another event object) is no echo.
    assert writes.echo_of(modified(cm("a", "7"))) is None


def test_the_same_event_object_asked_twice_gets_the_same_answer() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    event = modified(cm("a", "7"))
    assert writes.echo_of(event) == OWNER
    assert writes.echo_of(event) == OWNER


def test_another_resource_version_is_no_echo() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    # Someone else's change before ours: no echo, and our note still waits for its event.
    assert writes.echo_of(modified(cm("a", "6"))) is None
    assert len(writes) == 1
    assert writes.echo_of(modified(cm("a", "7"))) == OWNER


def test_a_newer_resource_version_drops_the_note() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    assert writes.echo_of(modified(cm("a", "9"))) is None
    assert len(writes) == 0
    assert writes.echo_of(modified(cm("a", "7"))) is None


def test_resource_versions_that_are_not_numbers_match_only_exactly() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "xyz"), OWNER)
    assert writes.echo_of(modified(cm("a", "abc"))) is None
    assert len(writes) == 1  # not known to be newer: kept until its age runs out
    assert writes.echo_of(modified(cm("a", "xyz"))) == OWNER


def test_a_delete_is_never_an_echo_and_drops_the_note() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    assert writes.echo_of(Event(EventType.DELETED, cm("a", "7"), cm("a", "7"))) is None
    assert len(writes) == 0


def test_an_object_recreated_under_the_same_name_is_no_echo() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    recreated = cm("a", "12")
    recreated["metadata"]["uid"] = "uid-second"
    assert writes.echo_of(Event(EventType.ADDED, recreated)) is None


def test_a_resync_is_never_an_echo_and_leaves_the_note() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    obj = cm("a", "7")
    assert writes.echo_of(Event(EventType.RESYNC, obj, obj)) is None
    assert len(writes) == 1


def test_an_event_of_a_relist_is_never_an_echo() -> None:
    # A relist may have skipped someone else's change just before our write.
    writes = OwnWrites()
    writes.note(cm("a", "7"), OWNER)
    assert writes.echo_of(Event(EventType.MODIFIED, cm("a", "7"), cm("a", "5"), listed=True)) is None
    assert len(writes) == 0


def test_objects_are_told_apart_by_group_kind_namespace_and_name_not_version() -> None:
    writes = OwnWrites()
    writes.note(cm("web", "7", api_version="apps/v1", kind="Deployment"), OWNER)
    for other in (
        cm("web", "7", api_version="v1", kind="Service"),
        cm("web", "7", api_version="extensions/v1beta1", kind="Deployment"),
        cm("web", "7", api_version="apps/v1", kind="Deployment", namespace="elsewhere"),
        cm("www", "7", api_version="apps/v1", kind="Deployment"),
    ):
        assert writes.echo_of(modified(other)) is None
    assert writes.echo_of(modified(cm("web", "7", api_version="apps/v1beta2", kind="Deployment"))) == OWNER


def test_a_note_older_than_max_age_is_no_echo() -> None:
    clock = Clock()
    writes = OwnWrites(max_age=60.0, clock=clock)
    writes.note(cm("a", "7"), OWNER)
    clock.now += 61.0
    assert writes.echo_of(modified(cm("a", "7"))) is None
    assert len(writes) == 0


def test_old_notes_are_dropped_as_new_ones_are_made() -> None:
    clock = Clock()
    writes = OwnWrites(max_age=60.0, clock=clock)
    writes.note(cm("old", "1"), OWNER)
    clock.now += 30.0
    writes.note(cm("middle", "2"), OWNER)
    clock.now += 31.0
    writes.note(cm("new", "3"), OWNER)
    assert len(writes) == 2
    assert writes.echo_of(modified(cm("middle", "2"))) == OWNER


def test_a_note_made_again_counts_its_age_from_then() -> None:
    clock = Clock()
    writes = OwnWrites(max_age=60.0, clock=clock)
    writes.note(cm("a", "1"), OWNER)
    clock.now += 50.0
    writes.note(cm("a", "4"), OWNER)
    clock.now += 20.0
    writes.note(cm("b", "5"), OWNER)
    assert writes.echo_of(modified(cm("a", "4"))) == OWNER


def test_at_most_max_entries_notes_are_kept_the_oldest_going_first() -> None:
    writes = OwnWrites(max_entries=2)
    for i, name in enumerate(("a", "b", "c")):
        writes.note(cm(name, str(i + 1)), OWNER)
    assert len(writes) == 2
    assert writes.echo_of(modified(cm("a", "1"))) is None
    assert writes.echo_of(modified(cm("c", "3"))) == OWNER


def test_writes_answered_out_of_order_keep_the_later_state() -> None:
    writes = OwnWrites()
    writes.note(cm("a", "9"), OWNER)
    writes.note(cm("a", "8"), OWNER)
    assert writes.echo_of(modified(cm("a", "9"))) == OWNER


def test_the_last_writer_of_an_object_is_the_one_named() -> None:
    writes = OwnWrites()
    writes.note(cm("shared", "3"), OTHER)
    writes.note(cm("shared", "4"), OWNER)
    assert writes.echo_of(modified(cm("shared", "4"))) == OWNER


def test_objects_without_a_name_or_resource_version_are_not_noted() -> None:
    writes = OwnWrites()
    writes.note({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, OWNER)
    writes.note({"kind": "Status"}, OWNER)
    writes.note(None, OWNER)
    assert len(writes) == 0


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_age"):
        OwnWrites(max_age=0)
    with pytest.raises(ValueError, match="max_entries"):
        OwnWrites(max_entries=0)


async def test_only_writes_made_while_recording_are_noted_and_tasks_it_starts_inherit_it() -> None:
    writes = OwnWrites()
    note_written(cm("before", "1"))
    release = asyncio.Event()

    async def late_writer() -> None:
        note_written(cm("in-task", "2"))
        await release.wait()
        note_written(cm("after-return", "3"))

    with writes.recording(OWNER):
        note_written(cm("inside", "4"))
        task = asyncio.create_task(late_writer())
        await asyncio.sleep(0)
    release.set()
    await task
    note_written(cm("after", "5"))
    assert writes.echo_of(modified(cm("inside", "4"))) == OWNER
    assert writes.echo_of(modified(cm("in-task", "2"))) == OWNER
    assert len(writes) == 0


async def test_recordings_of_two_concurrent_reconciles_stay_apart() -> None:
    writes = OwnWrites()

    async def reconcile(request: Request, name: str) -> None:
        with writes.recording(request):
            await asyncio.sleep(0)
            note_written(cm(name, "1"))
            await asyncio.sleep(0)

    await asyncio.gather(reconcile(OWNER, "mine"), reconcile(OTHER, "theirs"))
    assert writes.echo_of(modified(cm("mine", "1"))) == OWNER
    assert writes.echo_of(modified(cm("theirs", "1"))) == OTHER


def test_a_recording_lists_what_it_noted() -> None:
    writes = OwnWrites()
    with writes.recording(OWNER) as recording:
        note_written(cm("a", "7"))
        note_written({"kind": "Status"})
    assert recording.noted == [(("", "ConfigMap", "ns", "a"), "7")]


@pytest.mark.parametrize(
    ("cached", "kept"),
    [("7", False), ("8", False), ("6", True), (None, True)],
    ids=["at-that-version", "newer", "older", "not-cached"],
)
def test_a_note_whose_event_went_by_unheld_is_dropped_once_a_cache_shows_it(
    cached: str | None, kept: bool
) -> None:
    writes = OwnWrites()
    with writes.recording(OWNER) as recording:
        note_written(cm("a", "7"))
    writes.drop_passed(recording.noted, lambda oid: cached if oid == ("", "ConfigMap", "ns", "a") else None)
    assert len(writes) == (1 if kept else 0)


def test_drop_passed_leaves_a_note_a_later_write_replaced() -> None:
    writes = OwnWrites()
    with writes.recording(OWNER) as first:
        note_written(cm("a", "7"))
    writes.note(cm("a", "9"), OTHER)
    writes.drop_passed(first.noted, lambda oid: "7")
    assert writes.echo_of(modified(cm("a", "9"))) == OTHER
