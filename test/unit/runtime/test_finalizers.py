"""The finalizer helper's decisions that need no API server: names, what runs when, error handling."""

from __future__ import annotations

from typing import Any, cast

import pytest

from agentkube.runtime.client import Client
from agentkube.runtime.finalizers import Finalizer, has_finalizer
from agentkube.runtime.reconcile import Result, TerminalError

OURS = "example.com/cleanup"


class NoClient:
    """Stands where a client goes in cases that must make no request at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no API request expected, got client.{name}")


def finalizer() -> Finalizer:
    return Finalizer(cast(Client, NoClient()), OURS)


def obj(*, finalizers: list[str] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "1"}
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


class Calls:
    def __init__(self, cleanup_outcome: Result | BaseException | None = None) -> None:
        self.applied = 0
        self.cleaned = 0
        self.cleanup_outcome = cleanup_outcome

    async def apply(self, o: dict[str, Any]) -> Result | None:
        self.applied += 1
        return Result(requeue_after=60)

    async def cleanup(self, o: dict[str, Any]) -> Result | None:
        self.cleaned += 1
        if isinstance(self.cleanup_outcome, BaseException):
            raise self.cleanup_outcome
        return self.cleanup_outcome


@pytest.mark.parametrize(
    "name",
    [
        "cleanup",
        "example.com/",
        "/cleanup",
        "Example.com/cleanup",
        "localhost/cleanup",
        "example.com/" + "x" * 64,
    ],
)
def test_finalizer_names_must_be_domain_qualified(name: str) -> None:
    with pytest.raises(ValueError, match="domain-qualified"):
        Finalizer(cast(Client, NoClient()), name)


def test_a_valid_name_is_accepted_and_has_finalizer_reads_the_list() -> None:
    Finalizer(cast(Client, NoClient()), "agentkube.io/tool-gateway_cleanup.v1")
    assert has_finalizer(obj(finalizers=["x.io/a", OURS]), OURS)
    assert not has_finalizer(obj(), OURS)


async def test_a_missing_object_runs_nothing() -> None:
    calls = Calls()
    assert await finalizer().reconcile(None, apply=calls.apply, cleanup=calls.cleanup) is None
    assert (calls.applied, calls.cleaned) == (0, 0)


async def test_present_finalizer_runs_apply_without_a_write_and_returns_its_result() -> None:
    calls = Calls()
    result = await finalizer().reconcile(obj(finalizers=[OURS]), apply=calls.apply, cleanup=calls.cleanup)
    assert result == Result(requeue_after=60)
    assert (calls.applied, calls.cleaned) == (1, 0)


async def test_deleted_without_our_finalizer_runs_nothing() -> None:
    calls = Calls()
    deleting = obj(finalizers=["other.io/x"], deleting=True)
    assert await finalizer().reconcile(deleting, apply=calls.apply, cleanup=calls.cleanup) is None
    assert (calls.applied, calls.cleaned) == (0, 0)


async def test_an_unfinished_cleanup_keeps_the_finalizer_and_returns_its_result() -> None:
    calls = Calls(Result(requeue_after=5))
    deleting = obj(finalizers=[OURS], deleting=True)
    assert await finalizer().reconcile(deleting, apply=calls.apply, cleanup=calls.cleanup) == Result(
        requeue_after=5
    )
    assert (calls.applied, calls.cleaned) == (0, 1)


async def test_a_failing_cleanup_raises_for_the_controller_to_retry() -> None:
    calls = Calls(OSError("backend down"))
    deleting = obj(finalizers=[OURS], deleting=True)
    with pytest.raises(OSError, match="backend down"):
        await finalizer().reconcile(deleting, apply=calls.apply, cleanup=calls.cleanup)


@pytest.mark.parametrize(
    "error",
    [TerminalError("bucket policy forbids delete"), ExceptionGroup("many", [TerminalError("t"), OSError()])],
)
async def test_a_terminal_cleanup_error_cannot_stop_the_retries(error: BaseException) -> None:
    calls = Calls(error)
    deleting = obj(finalizers=[OURS], deleting=True)
    assert await finalizer().reconcile(deleting, apply=calls.apply, cleanup=calls.cleanup) == Result(
        requeue=True
    )
    assert calls.cleaned == 1
