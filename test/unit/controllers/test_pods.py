"""What the pods of a workload say is wrong: the problem picked, the condition it makes, and the cache
copy that keeps probe bookkeeping from waking anyone."""

from __future__ import annotations

import copy
from typing import Any

from agentkube.controllers.pods import (
    DETAIL_MAX,
    PodChanged,
    pod_problem,
    pod_summary,
)
from agentkube.controllers.status import (
    Problem,
    accepted_condition,
    available_condition,
    ready_condition,
)
from agentkube.runtime.conditions import validate_condition
from agentkube.runtime.reflector import Event, EventType

SELECTOR = {"app.kubernetes.io/name": "mcp-proxy", "app.kubernetes.io/instance": "github-tools"}
CONFIG_ERROR = "agentkube mcp-proxy: config.yaml: upstreams[0].url: not a URL"


def deployment(available: str | None = "False") -> dict[str, Any]:
    status: dict[str, Any] = {}
    if available is not None:
        message = "Deployment does not have minimum availability."
        if available == "True":
            message = "Deployment has minimum availability."
        status["conditions"] = [{"type": "Available", "status": available, "message": message}]
    return {
        "metadata": {"name": "github-tools", "namespace": "team-a"},
        "spec": {"selector": {"matchLabels": SELECTOR}},
        "status": status,
    }


def pod(name: str, *containers: dict[str, Any], phase: str = "Running", **meta: Any) -> dict[str, Any]:
    """A Pod of the Deployment, as the API server returns it (timestamps and ids included)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "resourceVersion": "10",
            "labels": {**SELECTOR, "pod-template-hash": "7d9f", "app.kubernetes.io/managed-by": "agentkube"},
            "managedFields": [{"manager": "kubelet"}],
            **meta,
        },
        "spec": {"containers": [{"name": "mcp-proxy", "image": "agentkube"}]},
        "status": {
            "phase": phase,
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                },
            ],
            "containerStatuses": list(containers),
        },
    }


def container(
    state: dict[str, Any], last: dict[str, Any] | None = None, *, ready: bool = False, restarts: int = 0
) -> dict[str, Any]:
    return {
        "name": "mcp-proxy",
        "image": "agentkube",
        "imageID": "sha256:abc",
        "containerID": f"local://{restarts}",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
        "lastState": last or {},
    }


def waiting(reason: str, message: str | None = None) -> dict[str, Any]:
    return {"waiting": {"reason": reason, **({"message": message} if message else {})}}


def terminated(code: int, message: str | None = None, reason: str = "Error") -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": code,
            "reason": reason,
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:01Z",
            "containerID": "local://1",
            **({"message": message} if message else {}),
        }
    }


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:02Z"}}


def test_missing_secret_at_the_pod_names_pod_container_and_kubelet_message() -> None:
    pods = [
        pod(
            "github-tools-7d9f-abcde",
            container(waiting("CreateContainerConfigError", 'secret "x" not found')),
        )
    ]
    assert pod_problem(deployment(), pods) == Problem(
        "CreateContainerConfigError",
        "pod team-a/github-tools-7d9f-abcde: container mcp-proxy: "
        'CreateContainerConfigError: secret "x" not found',
    )


def test_crash_loop_shows_the_exit_and_the_programs_last_log_lines() -> None:
    crashed = container(
        waiting("CrashLoopBackOff", "back-off 10s restarting failed container"), terminated(1, CONFIG_ERROR)
    )
    problem = pod_problem(deployment(), [pod("github-tools-7d9f-abcde", crashed)])
    assert problem == Problem(
        "CrashLoopBackOff",
        f"pod team-a/github-tools-7d9f-abcde: container mcp-proxy: CrashLoopBackOff: exit 1: {CONFIG_ERROR}",
    )


def test_every_step_of_a_restart_cycle_is_the_same_problem() -> None:
    backing_off = container(
        waiting("CrashLoopBackOff", "back-off 40s"), terminated(1, CONFIG_ERROR), restarts=3
    )
    starting_again = container(RUNNING, terminated(1, CONFIG_ERROR), restarts=4)
    just_exited = container(terminated(1, CONFIG_ERROR), terminated(1, CONFIG_ERROR), restarts=4)
    problems = {pod_problem(deployment(), [pod("p", c)]) for c in (backing_off, starting_again, just_exited)}
    assert len(problems) == 1
    (problem,) = problems
    assert problem is not None and problem.reason == "CrashLoopBackOff"


def test_a_termination_other_than_error_is_named_and_a_back_off_without_one_keeps_its_message() -> None:
    oom = container(waiting("CrashLoopBackOff"), terminated(137, reason="OOMKilled"))
    assert pod_problem(deployment(), [pod("p", oom)]) == Problem(
        "CrashLoopBackOff", "pod team-a/p: container mcp-proxy: CrashLoopBackOff: exit 137 (OOMKilled)"
    )
    bare = container(waiting("CrashLoopBackOff", "back-off 10s"))
    assert pod_problem(deployment(), [pod("p", bare)]) == Problem(
        "CrashLoopBackOff", "pod team-a/p: container mcp-proxy: CrashLoopBackOff: back-off 10s"
    )


def test_starting_containers_and_ready_ones_are_no_problem() -> None:
    states: list[dict[str, Any]] = [
        waiting("ContainerCreating"),
        waiting("PodInitializing"),
        {"waiting": {}},
        {},
    ]
    for state in states:
        assert pod_problem(deployment(), [pod("p", container(state))]) is None
    # Restarted once long ago, ready now: nothing to report.
    healthy = container(RUNNING, terminated(137, reason="OOMKilled"), ready=True, restarts=1)
    assert pod_problem(deployment(), [pod("p", healthy)]) is None
    assert pod_problem(deployment(), []) is None


def test_a_running_container_that_is_not_ready_counts_only_while_the_deployment_is_unavailable() -> None:
    pods = [pod("p", container(RUNNING))]
    problem = pod_problem(deployment("False"), pods)
    assert problem is not None and problem.reason == "ContainerNotReady"
    assert problem.message.startswith("pod team-a/p: container mcp-proxy: running but not ready")
    assert pod_problem(deployment(None), pods) == problem
    assert pod_problem(deployment("True"), pods) is None


def test_a_failing_pod_comes_before_an_unready_one_and_pods_are_judged_in_name_order() -> None:
    unready = pod("a", container(RUNNING))
    config = pod(
        "b", container(waiting("CreateContainerConfigError", "couldn't find key token in Secret team-a/x"))
    )
    image = pod("c", container(waiting("ImagePullBackOff", 'Back-off pulling image "agentkube"')))
    for order in ([unready, config, image], [image, config, unready]):
        problem = pod_problem(deployment(), order)
        assert problem is not None and problem.reason == "CreateContainerConfigError"
        assert "pod team-a/b:" in problem.message


def test_a_failing_pod_is_reported_even_while_the_deployment_is_available() -> None:
    # A rollout whose new pods cannot start: the old ones serve, the Deployment stays available.
    broken = pod("new", container(waiting("CrashLoopBackOff"), terminated(2, CONFIG_ERROR)))
    fine = pod("old", container(RUNNING, ready=True))
    problem = pod_problem(deployment("True"), [fine, broken])
    assert problem is not None and problem.reason == "CrashLoopBackOff"


def test_pods_of_others_being_deleted_or_finished_are_not_looked_at() -> None:
    bad = container(waiting("CreateContainerConfigError", 'secret "x" not found'))
    other = pod("other", bad)
    other["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    leaving = pod("leaving", bad, deletionTimestamp="2026-01-01T00:00:00Z")
    evicted = pod("evicted", bad, phase="Failed")
    assert pod_problem(deployment(), [other, leaving, evicted]) is None
    unselective = deployment()
    unselective["spec"]["selector"] = {}
    assert pod_problem(unselective, [pod("p", bad)]) is None


def test_an_unschedulable_pod_says_what_the_scheduler_said() -> None:
    pending = pod("p", phase="Pending")
    pending["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
        }
    ]
    assert pod_problem(deployment(), [pending]) == Problem(
        "Unschedulable", "pod team-a/p: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."
    )


def test_a_kubelet_reason_the_api_server_would_refuse_is_replaced_and_quoted() -> None:
    problem = pod_problem(deployment(), [pod("p", container(waiting("Not Camel-Case", "odd runtime")))])
    assert problem == Problem(
        "ContainerWaiting", "pod team-a/p: container mcp-proxy: Not Camel-Case: odd runtime"
    )
    validate_condition(available_condition(deployment(), 1, problem))


def test_a_long_log_tail_keeps_its_last_lines_and_other_text_its_start() -> None:
    lines = [f'{{"event": "line {i}", "level": "info"}}' for i in range(200)] + [CONFIG_ERROR]
    crashed = container(waiting("CrashLoopBackOff"), terminated(1, "\n".join(lines) + "\n"))
    problem = pod_problem(deployment(), [pod("p", crashed)])
    assert problem is not None
    detail = problem.message.partition("exit 1: ")[2]
    assert len(detail) <= DETAIL_MAX
    assert detail.startswith("... | ") and detail.endswith(f'line 199", "level": "info"}} | {CONFIG_ERROR}')
    assert "\n" not in problem.message

    one_long_line = container(waiting("CrashLoopBackOff"), terminated(1, "E" * 5000))
    detail = pod_problem(deployment(), [pod("p", one_long_line)]).message.partition("exit 1: ")[2]  # type: ignore[union-attr]
    assert len(detail) == DETAIL_MAX and detail.endswith("...")

    long_wait = container(waiting("ErrImagePull", "rpc error: " + "x" * 5000))
    message = pod_problem(deployment(), [pod("p", long_wait)]).message  # type: ignore[union-attr]
    detail = message.partition("ErrImagePull: ")[2]
    assert detail.startswith("rpc error: ") and len(detail) == DETAIL_MAX


def test_summary_keeps_what_is_judged_and_drops_what_moves_by_itself() -> None:
    crashed = container(waiting("CrashLoopBackOff", "back-off 20s"), terminated(1, CONFIG_ERROR), restarts=2)
    full = pod("p", crashed)
    summary = pod_summary(copy.deepcopy(full))
    assert pod_problem(deployment(), [summary]) == pod_problem(deployment(), [full])
    assert "managedFields" not in summary["metadata"] and "spec" not in summary
    (status,) = summary["status"]["containerStatuses"]
    assert status == {
        "name": "mcp-proxy",
        "ready": False,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": CONFIG_ERROR}},
    }
    assert summary["status"]["conditions"] == [{"type": "PodScheduled", "status": "True"}]

    # The kubelet's next write: a new resourceVersion, restart count, container id and times.
    later = copy.deepcopy(full)
    later["metadata"]["resourceVersion"] = "11"
    later["status"]["containerStatuses"][0].update(restartCount=3, containerID="local://3")
    later["status"]["containerStatuses"][0]["lastState"]["terminated"]["finishedAt"] = "2026-01-01T00:05:00Z"
    later["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:05:00Z"
    changed = PodChanged()
    assert not changed(Event(EventType.MODIFIED, pod_summary(later), summary))
    recovered = copy.deepcopy(later)
    recovered["status"]["containerStatuses"][0].update(ready=True, state=RUNNING)
    assert changed(Event(EventType.MODIFIED, pod_summary(recovered), summary))
    assert changed(Event(EventType.ADDED, summary))
    assert changed(Event(EventType.DELETED, summary, summary))


def test_available_takes_the_pod_problem_while_down_and_names_it_while_up() -> None:
    problem = Problem(
        "CrashLoopBackOff", f"pod team-a/p: container mcp-proxy: CrashLoopBackOff: exit 1: {CONFIG_ERROR}"
    )
    down = available_condition(deployment("False"), 3, problem)
    assert (down["status"], down["reason"], down["observedGeneration"]) == ("False", "CrashLoopBackOff", 3)
    assert down["message"] == f"Deployment team-a/github-tools is not available: {problem.message}"
    ready = ready_condition(accepted_condition([], 3), down, 3)
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "CrashLoopBackOff",
        down["message"],
    )

    up = available_condition(deployment("True"), 3, problem)
    assert (up["status"], up["reason"]) == ("True", "DeploymentAvailable")
    assert up["message"] == (
        "Deployment team-a/github-tools is available: Deployment has minimum availability; "
        f"but {problem.message}"
    )
    assert ready_condition(accepted_condition([], 3), up, 3)["status"] == "True"

    unknown = available_condition(deployment(None), 3, problem)
    assert (unknown["status"], unknown["reason"]) == ("Unknown", "CrashLoopBackOff")
    assert available_condition(None, 3, problem)["reason"] == "DeploymentNotFound"

    plain = available_condition(deployment("False"), 3, None)
    assert (plain["reason"], plain["message"]) == (
        "DeploymentUnavailable",
        "Deployment team-a/github-tools is not available: Deployment does not have minimum availability.",
    )
    for condition in (down, up, unknown, plain):
        validate_condition(condition)
