"""The shared child pieces: labels, owner references, the desired hash, and when an apply is skipped."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentkube.controllers.children import (
    DESIRED_HASH_ANNOTATION,
    ChildChanges,
    Children,
    child_metadata,
    controller_of,
    desired_hash,
    owner_reference,
    standard_labels,
)
from agentkube.controllers.kinds import CONFIG_MAP, DEPLOYMENT
from agentkube.runtime.cache import Cache
from agentkube.runtime.gvk import ObjectKey
from test.unit.controllers.conftest import served

OWNER = served(
    {"apiVersion": "agentkube.io/v1alpha1", "kind": "MCP", "metadata": {"name": "m", "namespace": "n"}}
)


def test_standard_labels_are_the_four_app_kubernetes_io_labels() -> None:
    assert standard_labels("mcp-proxy", "m") == {
        "app.kubernetes.io/name": "mcp-proxy",
        "app.kubernetes.io/instance": "m",
        "app.kubernetes.io/managed-by": "agentkube",
        "app.kubernetes.io/part-of": "agentkube",
    }


def test_owner_reference_is_a_blocking_controller_reference() -> None:
    assert owner_reference(OWNER) == {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "name": "m",
        "uid": OWNER["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_child_metadata_puts_the_child_beside_its_owner() -> None:
    meta = child_metadata(OWNER, "m-config", "mcp-proxy")
    assert meta["namespace"] == "n"
    assert controller_of({"metadata": meta}) == OWNER["metadata"]["uid"]


def child(data: str = "a", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**child_metadata(OWNER, "m-config", "mcp-proxy"), **meta},
        "data": {"config.yaml": data},
    }


def test_desired_hash_ignores_key_order_and_its_own_annotation_but_not_content() -> None:
    c = child()
    reordered = {k: c[k] for k in reversed(list(c))}
    annotated = copy.deepcopy(c)
    annotated["metadata"]["annotations"] = {DESIRED_HASH_ANNOTATION: "whatever"}
    assert desired_hash(c) == desired_hash(reordered) == desired_hash(annotated)
    assert desired_hash(c) != desired_hash(child("b"))


def test_changes_read_as_one_event() -> None:
    assert not ChildChanges()
    created = ChildChanges(created=["ConfigMap m-config", "Deployment m"])
    assert (created.reason, created.message) == ("Created", "Created ConfigMap m-config, Deployment m")
    mixed = ChildChanges(updated=["Deployment m"], deleted=["PodDisruptionBudget m"])
    assert (mixed.reason, mixed.message) == ("Updated", "Updated Deployment m; deleted PodDisruptionBudget m")


# -- when an apply is skipped --------------------------------------------------------------------


class Decide:
    """``Children``' skip decision over a real (not running) cache whose stores the test fills."""

    def __init__(self) -> None:
        self.children = Children(Cache(None), None, None, {CONFIG_MAP: True, DEPLOYMENT: False})  # type: ignore[arg-type]
        self.memory: dict[Any, Any] = {}  # one owner's applied children
        self.key = ObjectKey("n", "m-config")

    def live(self, data: str, rv: int, generation: int | None = None) -> dict[str, Any]:
        obj = child(data)
        obj["metadata"]["annotations"] = {DESIRED_HASH_ANNOTATION: desired_hash(child(data))}
        obj["metadata"]["resourceVersion"] = str(rv)
        if generation is not None:
            obj["metadata"]["generation"] = generation
        return obj

    def applied(self, data: str, rv: int, generation: int | None = None) -> None:
        from agentkube.controllers.children import _Applied

        self.memory[(CONFIG_MAP, self.key)] = _Applied(desired_hash(child(data)), rv, generation)

    def current(self, data: str, live: dict[str, Any] | None, *, informer_rv: int = 0) -> bool:
        self.children._informers[CONFIG_MAP].reflector.resource_version = str(informer_rv)
        return self.children._up_to_date(CONFIG_MAP, self.key, desired_hash(child(data)), live, self.memory)


@pytest.fixture
def decide() -> Decide:
    return Decide()


def test_absent_child_is_applied(decide: Decide) -> None:
    assert not decide.current("a", None)


def test_child_carrying_the_desired_hash_after_a_restart_is_checked_not_trusted(decide: Decide) -> None:
    # None: ``_drifted`` asks the server (a dry-run) whether someone edited it while nobody watched.
    assert decide.current("a", decide.live("a", 10)) is None


def test_child_carrying_another_hash_is_applied(decide: Decide) -> None:
    assert not decide.current("b", decide.live("a", 10))


def test_our_create_not_yet_in_the_cache_is_not_applied_again(decide: Decide) -> None:
    decide.applied("a", 50)
    assert decide.current("a", None, informer_rv=40)


def test_child_deleted_after_the_cache_saw_our_create_is_applied_again(decide: Decide) -> None:
    decide.applied("a", 50)
    assert not decide.current("a", None, informer_rv=60)


def test_cache_older_than_our_update_does_not_cause_a_second_write(decide: Decide) -> None:
    decide.applied("b", 50)
    assert decide.current("b", decide.live("a", 40))


def test_someone_elses_write_to_a_child_without_generation_is_taken_back(decide: Decide) -> None:
    decide.applied("a", 50)
    assert decide.current("a", decide.live("a", 50))
    assert not decide.current("a", decide.live("a", 51))


def test_status_updates_of_a_deployment_are_not_drift_but_spec_edits_are(decide: Decide) -> None:
    decide.applied("a", 50, generation=3)
    assert decide.current("a", decide.live("a", 70, generation=3))
    assert not decide.current("a", decide.live("a", 80, generation=4))


class _Answers:
    """The dry-run answers of a server: the object as the apply would leave it."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.asked: list[dict[str, Any]] = []

    async def apply(self, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        assert kw["dry_run"] is True
        self.asked.append(body)
        return copy.deepcopy(self.answer)


def _check(decide: Decide, live: dict[str, Any], answer: dict[str, Any]) -> list[Any]:
    import asyncio

    decide.children._client = _Answers(answer)
    for informer in decide.children._full.values():  # full copies of our children, for content kinds
        informer.store.upsert(live)
        informer.reflector._synced.set()  # as a listed informer is
    body = copy.deepcopy(live)
    return asyncio.run(decide.children._drifted([(CONFIG_MAP, decide.key, body, live)], decide.memory))


def test_a_child_a_dry_run_would_change_is_applied_again(decide: Decide) -> None:
    live = decide.live("a", 10)
    edited = copy.deepcopy(live)
    edited["data"]["config.yaml"] = "edited by hand"
    decide.children = Children(Cache(None), None, None, {CONFIG_MAP: False})  # type: ignore[arg-type]
    plans = _check(decide, edited, answer=live)
    assert [(gvk, key) for gvk, key, *_ in plans] == [(CONFIG_MAP, decide.key)]
    assert decide.memory == {}


def test_a_matching_copy_becomes_the_baseline_for_later_drift(decide: Decide) -> None:
    live = decide.live("a", 10, generation=1)
    # The server's answer carries managedFields the cache strips; they do not count.
    answer = copy.deepcopy(live)
    answer["metadata"]["managedFields"] = [{"manager": "agentkube-mcp", "operation": "Apply"}]
    assert _check(decide, live, answer) == []
    assert decide.current("a", decide.live("a", 20, generation=1))
    assert not decide.current("a", decide.live("a", 30, generation=2))
