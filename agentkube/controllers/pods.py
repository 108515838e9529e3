"""Pods: what the pods of a workload's Deployment say is wrong with them.

A Deployment only says ``MinimumReplicasUnavailable``; why is on its Pods, in what the kubelet writes
there: a container waiting with ``CreateContainerConfigError`` (``secret "x" not found``), a
``CrashLoopBackOff`` whose last termination carries the exit code and, with ``terminationMessagePolicy:
FallbackToLogsOnError`` (set by ``workload.deployment``), the tail of the program's own log, a pod the
scheduler cannot place. ``pod_problem`` picks the first such problem for the ``Available`` condition.

What a caller may rely on:

- ``POD_SELECTOR`` selects the pods of every agentkube workload (``app.kubernetes.io/managed-by``);
  the workload controllers watch Pods with it, so the operator caches only its own pods.
- ``pod_summary`` is the cache transform of that watch: metadata (name, namespace, uid,
  resourceVersion, labels, owner references, deletion) and the parts of the status ``pod_problem``
  reads, with every timestamp, container id and restart count left out. A cached Pod therefore
  changes only when something ``pod_problem`` could report changes, and ``PodChanged`` lets only
  those updates through: probe bookkeeping and restarts that look the same never wake a reconcile.
- ``pod_problem(deployment, pods)`` is pure. It looks at the pods the Deployment's selector matches
  that are neither being deleted nor finished (``Succeeded``/``Failed``: an evicted pod lingers after
  its replacement runs), in name order, and returns the first problem as a ``Problem`` (a CamelCase
  reason, a message naming the pod, the container and what is wrong), or None. A failing one of any
  pod comes before a container that merely is not ready, which counts only while the Deployment is
  not available (a pod of a healthy rolling update is briefly not ready; that is no problem). The
  reasons, in the order they are looked for:

  - the kubelet's waiting reason (``CreateContainerConfigError``, ``ImagePullBackOff``,
    ``ErrImagePull``, ``CreateContainerError``, ...) with its message; ``ContainerCreating`` and
    ``PodInitializing`` are the normal way to start and are no problem;
  - ``CrashLoopBackOff`` for a container that is not ready and is failing: waiting in back-off,
    exited just now, or running again after a failed exit. The whole restart cycle has one reason
    and one message (``exit 1: <log tail>``, the newest termination), so a crash loop is one status
    write, not three per restart;
  - the scheduler's reason (``Unschedulable``) with its message, for a pod it could not place;
  - ``ContainerNotReady`` for a container that runs and is not ready (its readiness probe fails; the
    pod's events show the probe's answers, which the Pod status does not keep).

  A kubelet reason that is not a valid condition reason becomes ``ContainerWaiting`` (or
  ``PodUnschedulable``); the message still quotes it. Messages are cut to ``DETAIL_MAX`` characters
  per detail: a log tail keeps its last lines (the error is at the end), any other text its start.

Limits: init containers are not looked at (our pods have none); the log tail is the program's own
output, which never holds a secret value (the data plane does not log them), and nothing else from
the container is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agentkube.controllers.children import LABEL_MANAGED_BY
from agentkube.controllers.kinds import POD
from agentkube.controllers.status import Problem
from agentkube.runtime.conditions import find_status_condition, validate_condition
from agentkube.runtime.informer import Event, EventType

__all__ = [
    "CRASH_LOOP",
    "DETAIL_MAX",
    "NOT_READY",
    "POD_SELECTOR",
    "PodChanged",
    "pod_problem",
    "pod_summary",
]

POD_SELECTOR = f"{LABEL_MANAGED_BY}=agentkube"

CRASH_LOOP = "CrashLoopBackOff"
NOT_READY = "ContainerNotReady"
DETAIL_MAX = 1024
"""Characters kept of one detail (a waiting message, a log tail) in a condition message."""

# How every container starts; not a problem however long it takes (a slow image pull says so itself).
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
_FINISHED = frozenset({"Succeeded", "Failed"})
_KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "ownerReferences",
)


# ------------------------------------------------------------------------------------------- cache


def _state(state: Mapping[str, Any] | None) -> dict[str, Any]:
    """A container state without its timestamps and container id."""
    state = state or {}
    if "waiting" in state:
        waiting = state["waiting"] or {}
        return {"waiting": {k: waiting[k] for k in ("reason", "message") if waiting.get(k)}}
    if "terminated" in state:
        terminated = state["terminated"] or {}
        kept = ("exitCode", "signal", "reason", "message")
        return {"terminated": {k: terminated[k] for k in kept if terminated.get(k) is not None}}
    if "running" in state:
        return {"running": {}}
    return {}


def pod_summary(obj: dict[str, Any]) -> dict[str, Any]:
    """The cache transform of the Pod watch: what ``pod_problem`` reads, nothing that moves by itself."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    summary: dict[str, Any] = {k: status[k] for k in ("phase",) if status.get(k)}
    summary["conditions"] = [
        {k: c[k] for k in ("type", "status", "reason", "message") if c.get(k)}
        for c in status.get("conditions") or ()
    ]
    summary["containerStatuses"] = [
        {
            "name": s.get("name"),
            "ready": bool(s.get("ready")),
            "state": _state(s.get("state")),
            "lastState": _state(s.get("lastState")),
        }
        for s in status.get("containerStatuses") or ()
    ]
    return {
        "apiVersion": obj.get("apiVersion", POD.api_version),
        "kind": obj.get("kind", POD.kind),
        "metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta},
        "status": summary,
    }


class PodChanged:
    """Updates pass only when a ``pod_summary`` copy changed beyond its resourceVersion."""

    def __call__(self, event: Event) -> bool:
        if event.type is not EventType.MODIFIED or event.old is None:
            return True
        return _without_version(event.old) != _without_version(event.obj)

    def __repr__(self) -> str:
        return "PodChanged()"


def _without_version(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (pod.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**pod, "metadata": meta}


# ---------------------------------------------------------------------------------------- problems


def _clip(text: str) -> str:
    """A detail's start: messages other than a log tail say what is wrong first."""
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 3] + "..."


def _tail(text: str) -> str:
    """The last lines of a log tail that fit in ``DETAIL_MAX``, one line of text (`` | `` between)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + (3 if kept else 0)
        if size > DETAIL_MAX - 6:
            break
        kept.append(line)
    if not kept:
        return _clip(lines[-1]) if lines else ""
    shown = " | ".join(reversed(kept))
    return shown if len(kept) == len(lines) else "... | " + shown


def _exit(terminated: Mapping[str, Any]) -> str:
    """``exit 1: <log tail>``, ``exit 137 (OOMKilled)``: how a run of the container ended."""
    text = f"exit {terminated.get('exitCode', '?')}"
    reason = terminated.get("reason")
    if reason and reason != "Error":
        text += f" ({reason})"
    message = _tail(str(terminated.get("message") or ""))
    return f"{text}: {message}" if message else text


def _reason(candidate: str | None, fallback: str) -> str:
    """``candidate`` when the API server takes it as a condition reason, else ``fallback``."""
    if candidate:
        try:
            validate_condition({"type": "Available", "status": "False", "reason": candidate})
        except ValueError:
            return fallback
        return candidate
    return fallback


def _failing(label: str, status: Mapping[str, Any]) -> Problem | None:
    """What is wrong with one container that cannot start or keeps failing, or None."""
    if status.get("ready"):
        return None
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated")
    where = f"{label}: container {status.get('name')}"
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason")
        if not reason or reason in _STARTING:
            return None
        if reason != CRASH_LOOP:
            message = _clip(str(waiting.get("message") or ""))
            return Problem(
                _reason(reason, "ContainerWaiting"),
                f"{where}: {reason}" + (f": {message}" if message else ""),
            )
        detail = _exit(last) if last is not None else _clip(str(waiting.get("message") or ""))
        return Problem(CRASH_LOOP, f"{where}: {CRASH_LOOP}" + (f": {detail}" if detail else ""))
    newest = state.get("terminated")
    if newest is None and "running" in state and last is not None and last.get("exitCode") not in (0, None):
        newest = last
    if newest is not None:
        return Problem(CRASH_LOOP, f"{where}: {CRASH_LOOP}: {_exit(newest)}")
    return None


def _unscheduled(label: str, status: Mapping[str, Any]) -> Problem | None:
    scheduled = find_status_condition(status.get("conditions"), "PodScheduled")
    if scheduled is None or scheduled.get("status") != "False":
        return None
    reason = scheduled.get("reason") or "Unschedulable"
    message = _clip(str(scheduled.get("message") or ""))
    return Problem(
        _reason(reason, "PodUnschedulable"), f"{label}: {reason}" + (f": {message}" if message else "")
    )


def _not_ready(label: str, status: Mapping[str, Any]) -> Problem | None:
    if status.get("ready") or "running" not in (status.get("state") or {}):
        return None
    return Problem(
        NOT_READY,
        f"{label}: container {status.get('name')}: running but not ready: its readiness probe does not"
        " pass (the pod's events show the probe's answers)",
    )


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    # Our Deployments select by matchLabels only (``children.selector_labels``).
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def pod_problem(deployment: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> Problem | None:
    """The first problem of ``deployment``'s pods (see the module docstring), or None.

    pods: candidates, e.g. every cached pod of the namespace; those the Deployment's selector matches
        count. Full Pods or ``pod_summary`` copies alike.
    """
    selector = (deployment.get("spec") or {}).get("selector") or {}
    live = sorted(
        (
            p
            for p in pods
            if _selects(selector, p["metadata"].get("labels") or {})
            and not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in _FINISHED
        ),
        key=lambda p: str(p["metadata"]["name"]),
    )
    unready: Problem | None = None
    for pod in live:
        meta, status = pod["metadata"], pod.get("status") or {}
        label = f"pod {meta.get('namespace')}/{meta['name']}"
        for container in status.get("containerStatuses") or ():
            problem = _failing(label, container)
            if problem is not None:
                return problem
            unready = unready or _not_ready(label, container)
        problem = _unscheduled(label, status)
        if problem is not None:
            return problem
    available = find_status_condition((deployment.get("status") or {}).get("conditions"), "Available")
    if available is not None and available.get("status") == "True":
        return None
    return unready
