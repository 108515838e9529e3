"""The event recorder against a real API server: one Event per repeated occurrence, never blocking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.events import EventRecorder
from agentkube.runtime.gvk import GVK

pytestmark = pytest.mark.integration

EVENT = GVK("events.k8s.io", "v1", "Event")
CM = GVK("", "v1", "ConfigMap")


@pytest.fixture
async def recorder(client: Client) -> AsyncIterator[EventRecorder]:
    rec = EventRecorder(client, "agentkube.io/test-controller", "test-replica")
    yield rec
    await rec.close()


async def a_configmap(client: Client, namespace: str, name: str = "subject") -> dict[str, Any]:
    return await client.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}
    )


async def events_about(client: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    items, _ = await client.list(EVENT, namespace, field_selector=f"regarding.name={name}")
    return items


async def test_five_repeats_make_one_event_with_series_count_five(
    client: Client, namespace: str, recorder: EventRecorder
) -> None:
    subject = await a_configmap(client, namespace)
    for _ in range(5):
        recorder.warning(subject, "SecretNotFound", 'Secret "pat" not found', action="Reconcile")
        await recorder.flush()  # each repeat reaches the server on its own: create, then 4 patches
    (event,) = await events_about(client, namespace, "subject")
    assert event["series"]["count"] == 5
    assert event["series"]["lastObservedTime"] >= event["eventTime"]
    assert event["type"] == "Warning"
    assert event["reason"] == "SecretNotFound"
    assert event["note"] == 'Secret "pat" not found'
    assert event["action"] == "Reconcile"
    assert event["reportingController"] == "agentkube.io/test-controller"
    assert event["reportingInstance"] == "test-replica"
    assert event["regarding"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "namespace": namespace,
        "name": "subject",
        "uid": subject["metadata"]["uid"],
    }


async def test_a_burst_of_repeats_is_written_as_one_event_in_few_requests(
    client: Client, namespace: str, recorder: EventRecorder
) -> None:
    subject = await a_configmap(client, namespace)
    host = client.host.split("://", 1)[1]

    def writes() -> float:
        labels = [{"code": c, "method": m, "host": host} for c, m in (("201", "POST"), ("200", "PATCH"))]
        return sum(metrics.REGISTRY.get_sample_value("rest_client_requests_total", lb) or 0 for lb in labels)

    before = writes()
    for _ in range(200):
        recorder.warning(subject, "ReconcileFailed", "upstream refused the connection")
    await recorder.flush()
    (event,) = await events_about(client, namespace, "subject")
    assert event["series"]["count"] == 200
    assert writes() - before <= 3


async def test_different_notes_make_different_events(
    client: Client, namespace: str, recorder: EventRecorder
) -> None:
    subject = await a_configmap(client, namespace)
    recorder.normal(subject, "Applied", "applied revision 1")
    recorder.normal(subject, "Applied", "applied revision 2")
    await recorder.flush()
    events = await events_about(client, namespace, "subject")
    assert sorted(e["note"] for e in events) == ["applied revision 1", "applied revision 2"]
    assert all("series" not in e for e in events)
    assert all(e["action"] == "Applied" for e in events)  # the reason stands in for a missing action


async def test_a_repeat_after_the_window_starts_a_new_event(client: Client, namespace: str) -> None:
    recorder = EventRecorder(client, "test-controller", series_window=0.2)
    try:
        subject = await a_configmap(client, namespace)
        recorder.normal(subject, "Synced", "in sync")
        await recorder.flush()
        await asyncio.sleep(0.3)  # let the window lapse: time passing is what is being tested
        recorder.normal(subject, "Synced", "in sync")
        await recorder.flush()
        assert len(await events_about(client, namespace, "subject")) == 2
    finally:
        await recorder.close()


async def test_notes_are_cut_to_one_kibibyte(client: Client, namespace: str, recorder: EventRecorder) -> None:
    subject = await a_configmap(client, namespace)
    recorder.warning(subject, "TooChatty", "é" * 2000)  # 4000 bytes of UTF-8
    await recorder.flush()
    (event,) = await events_about(client, namespace, "subject")
    assert len(event["note"].encode()) <= 1024
    assert event["note"].startswith("é" * 500) and event["note"].endswith("...")


async def test_events_about_cluster_scoped_objects_go_to_default(
    client: Client, recorder: EventRecorder
) -> None:
    cluster_scoped = await client.get(GVK("", "v1", "Namespace"), "default")
    marker = f"marker {time.monotonic_ns()}"
    recorder.normal(cluster_scoped, "Observed", marker)
    await recorder.flush()
    items, _ = await client.list(EVENT, "default", field_selector="regarding.name=default")
    assert any(e["note"] == marker and e["regarding"]["kind"] == "Namespace" for e in items)


async def test_api_failures_are_logged_not_raised_and_recording_goes_on(
    client: Client, namespace: str, recorder: EventRecorder
) -> None:
    # An object in a namespace that does not exist: the Event cannot be created there.
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "namespace": "no-such-ns"},
    }
    recorder.warning(ghost, "Haunted", "nobody is here")
    await recorder.flush()
    subject = await a_configmap(client, namespace)
    recorder.normal(subject, "StillWorking", "after a failure")
    await recorder.flush()
    assert [e["reason"] for e in await events_about(client, namespace, "subject")] == ["StillWorking"]


async def test_event_never_blocks_even_when_the_queue_is_full(client: Client, namespace: str) -> None:
    recorder = EventRecorder(client, "test-controller", queue_size=5)
    try:
        subject = await a_configmap(client, namespace)
        started = time.monotonic()
        for i in range(100):  # no await in between: the writer cannot drain the queue meanwhile
            recorder.normal(subject, "Flood", f"note {i}")
        assert time.monotonic() - started < 0.5
        await recorder.flush()
        notes = {e["note"] for e in await events_about(client, namespace, "subject")}
        assert notes == {f"note {i}" for i in range(5)}  # the rest were dropped, with a warning
    finally:
        await recorder.close()


def test_invalid_type_and_reporting_controller_are_rejected() -> None:
    with pytest.raises(ValueError, match="reporting_controller"):
        EventRecorder(object(), "not a qualified name!")  # type: ignore[arg-type]
    recorder = EventRecorder(object(), "ok")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="type"):
        recorder.event(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "Error", "R", "n"
        )  # type: ignore[arg-type]
