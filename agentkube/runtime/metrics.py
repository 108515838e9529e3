"""Every Prometheus metric the runtime exports, in one registry of its own.

What a caller may rely on:

- Names and label sets are exactly controller-runtime's (and client-go's for ``rest_client_*`` and
  ``leader_election_*``), so dashboards and alerts written for Go operators work unchanged.
- ``REGISTRY`` is a private ``CollectorRegistry``, not prometheus_client's global one: serve it with
  ``prometheus_client.generate_latest(REGISTRY)``, or add your own collectors to it, or mount both.
- Nothing here creates label children: a labelled series appears once its owner first touches it
  (the controller pre-initialises its own ``controller`` labels to 0, as controller-runtime does).
- ``agentkube_*`` metrics are our additions and never share a name with controller-runtime's.

prometheus_client appends ``_total`` to counter names on exposition, so counters are declared without
it; the exposed name is the one in each comment.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_WORKERS",
    "CACHE_OBJECTS",
    "CACHE_TRANSFORM_FAILURES",
    "EVENT_LOOP_LAG",
    "LEADER_ELECTION_STATUS",
    "MAX_CONCURRENT_RECONCILES",
    "RECONCILE_ERRORS",
    "RECONCILE_PANICS",
    "RECONCILE_TIME",
    "RECONCILE_TOTAL",
    "REGISTRY",
    "REST_CLIENT_REQUESTS",
    "TERMINAL_RECONCILE_ERRORS",
    "WATCH_STALLS",
    "WORKQUEUE_ADDS",
    "WORKQUEUE_DEPTH",
    "WORKQUEUE_LONGEST_RUNNING",
    "WORKQUEUE_QUEUE_DURATION",
    "WORKQUEUE_RETRIES",
    "WORKQUEUE_UNFINISHED_WORK",
    "WORKQUEUE_WORK_DURATION",
    "watch_event_loop_lag",
]

REGISTRY = CollectorRegistry(auto_describe=True)

# Reconcile durations: fine steps below a second, where healthy reconciles live, coarse up to a
# minute, where stuck ones show up. Same boundaries as controller-runtime so histograms aggregate
# across Go and Python operators.
_RECONCILE_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0,
    30.0, 40.0, 50.0, 60.0,
)  # fmt: skip
# Work-queue latencies span ten nanoseconds (an idle queue) to a thousand seconds (a backed-off key).
_QUEUE_BUCKETS = tuple(1e-8 * 10**i for i in range(12))

# controller_runtime_reconcile_total{controller,result}; result is success|error|requeue|requeue_after.
RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile",
    "Reconciliations per controller and outcome.",
    ["controller", "result"],
    registry=REGISTRY,
)
# controller_runtime_reconcile_errors_total{controller}
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors",
    "Reconciliations per controller that ended in an error.",
    ["controller"],
    registry=REGISTRY,
)
# controller_runtime_terminal_reconcile_errors_total{controller}
TERMINAL_RECONCILE_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors",
    "Reconciliations per controller that ended in a terminal error (not retried).",
    ["controller"],
    registry=REGISTRY,
)
# controller_runtime_reconcile_panics_total{controller}
RECONCILE_PANICS = Counter(
    "controller_runtime_reconcile_panics",
    "Reconciliations per controller that raised an unexpected exception.",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Time spent in one reconciliation, per controller.",
    ["controller"],
    buckets=_RECONCILE_BUCKETS,
    registry=REGISTRY,
)
MAX_CONCURRENT_RECONCILES = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Configured maximum of concurrent reconciliations per controller.",
    ["controller"],
    registry=REGISTRY,
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Workers currently running a reconciliation, per controller.",
    ["controller"],
    registry=REGISTRY,
)

WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth",
    "Keys waiting in the work queue.",
    ["name", "controller"],
    registry=REGISTRY,
)
# workqueue_adds_total{name,controller}
WORKQUEUE_ADDS = Counter(
    "workqueue_adds",
    "Adds handled by the work queue.",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "Seconds a key waits in the work queue before a worker takes it.",
    ["name", "controller"],
    buckets=_QUEUE_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "Seconds a worker spends on one key taken from the work queue.",
    ["name", "controller"],
    buckets=_QUEUE_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_UNFINISHED_WORK = Gauge(
    "workqueue_unfinished_work_seconds",
    "Seconds of work in progress not yet observed by work_duration; a steady rise means stuck workers.",
    ["name", "controller"],
    registry=REGISTRY,
)
WORKQUEUE_LONGEST_RUNNING = Gauge(
    "workqueue_longest_running_processor_seconds",
    "Seconds the longest-running worker of the queue has been busy with its current key.",
    ["name", "controller"],
    registry=REGISTRY,
)
# workqueue_retries_total{name,controller}
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries",
    "Rate-limited re-adds handled by the work queue.",
    ["name", "controller"],
    registry=REGISTRY,
)

LEADER_ELECTION_STATUS = Gauge(
    "leader_election_master_status",
    "1 while this process holds the named lease, 0 while it stands by.",
    ["name"],
    registry=REGISTRY,
)
# rest_client_requests_total{code,method,host}; code is the HTTP status or "<error>".
REST_CLIENT_REQUESTS = Counter(
    "rest_client_requests",
    "HTTP requests to the API server by status code, method and host.",
    ["code", "method", "host"],
    registry=REGISTRY,
)

CACHE_OBJECTS = Gauge(
    "agentkube_cache_objects",
    'Objects held by the informer cache, per kind ("group/version/Kind", or "v1/Kind" for core).',
    ["kind"],
    registry=REGISTRY,
)
# agentkube_cache_transform_failures_total{kind}: objects dropped because the transform raised.
CACHE_TRANSFORM_FAILURES = Counter(
    "agentkube_cache_transform_failures",
    "Objects the informer cache dropped because its transform raised on them, per kind.",
    ["kind"],
    registry=REGISTRY,
)
# agentkube_watch_stalls_total{kind}: watches ended because no byte (not even a bookmark) arrived in time.
WATCH_STALLS = Counter(
    "agentkube_watch_stalls",
    "Watches restarted because the connection went silent past the inactivity timeout, per kind.",
    ["kind"],
    registry=REGISTRY,
)
EVENT_LOOP_LAG = Gauge(
    "agentkube_event_loop_lag_seconds",
    "How late the event loop last woke a timer; high values mean something blocks the loop.",
    registry=REGISTRY,
)


async def watch_event_loop_lag(interval: float = 1.0) -> None:
    """Measure event-loop lag every ``interval`` seconds into ``EVENT_LOOP_LAG``, until cancelled.

    The lag is how much later than asked a sleep returns: time the loop spent running something else
    that did not yield (a blocking call, a long CPU-bound callback).
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval!r}")
    while True:
        started = time.monotonic()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.set(max(0.0, time.monotonic() - started - interval))
