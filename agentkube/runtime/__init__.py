"""agentkube.runtime: a reconciler framework for Kubernetes operators in Python.

Everything an operator needs is importable from here; the modules behind it each hold one noun, in the
order of the path of one change: ``client`` -> ``reflector`` -> ``store`` -> ``informer`` -> ``cache``
-> ``predicate`` / ``handler`` -> ``workqueue`` (``ratelimiter``) -> ``controller`` -> ``reconcile``,
wired by ``builder`` and run by ``manager`` (with ``leaderelection`` and ``probes``); reconcilers
report through ``conditions`` and ``events``, clean up through ``finalizers``; ``webhook`` serves
admission and conversion webhooks.

    manager = Manager(client, ManagerOptions(leader_election=True))
    (manager.controller("widgets")
        .for_kind(GVK("example.com", "v1", "Widget"), predicates=[GenerationChanged()])
        .owns(GVK("apps", "v1", "Deployment"))
        .complete(reconcile))
    await manager.run()

The metrics live in ``agentkube.runtime.metrics`` (``metrics.REGISTRY``).
"""

from __future__ import annotations

from agentkube.runtime.builder import Builder
from agentkube.runtime.cache import (
    INDEX_NAMESPACE,
    INDEX_OWNER_UID,
    Cache,
    KindOptions,
    NamespacedInformers,
    NotCached,
    UncachedReader,
)
from agentkube.runtime.client import Client, Resource
from agentkube.runtime.conditions import (
    find_status_condition,
    is_status_condition_false,
    is_status_condition_present_and_equal,
    is_status_condition_true,
    remove_status_condition,
    set_status_condition,
    validate_condition,
)
from agentkube.runtime.controller import DEFAULT_EXPECTED_ERRORS, Controller, Source
from agentkube.runtime.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KindNotServed,
    NotFound,
    RequestTimeout,
    ServerError,
    ServerUnreachable,
    TooManyRequests,
    Unauthorized,
    WatchStalled,
    is_retryable,
    retry_after,
)
from agentkube.runtime.events import EventRecorder
from agentkube.runtime.finalizers import Finalizer, FinalizerFunc, has_finalizer
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    EventHandler,
    MapFunc,
)
from agentkube.runtime.informer import Event, EventType, Informer
from agentkube.runtime.leaderelection import LeaderElectionLost, LeaderElector
from agentkube.runtime.logging import configure_logging, get_logger, reconcile_context
from agentkube.runtime.manager import Manager, ManagerOptions, Runnable
from agentkube.runtime.predicate import (
    AnnotationsChanged,
    GenerationChanged,
    LabelsChanged,
    Predicate,
    ResourceVersionChanged,
    and_,
    not_,
    or_,
)
from agentkube.runtime.ratelimiter import (
    BucketRateLimiter,
    ExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from agentkube.runtime.reconcile import ReconcileFunc, Reconciler, Request, Result, TerminalError
from agentkube.runtime.reflector import strip_managed_fields
from agentkube.runtime.store import Indexer, Store
from agentkube.runtime.webhook import Admission, AdmissionRequest, WebhookServer
from agentkube.runtime.workqueue import LOW_PRIORITY, NORMAL_PRIORITY, RateLimitingQueue, ShutDown

__all__ = [
    "DEFAULT_EXPECTED_ERRORS",
    "GVK",
    "INDEX_NAMESPACE",
    "INDEX_OWNER_UID",
    "LOW_PRIORITY",
    "NORMAL_PRIORITY",
    "Admission",
    "AdmissionRequest",
    "AlreadyExists",
    "AnnotationsChanged",
    "ApiError",
    "BadRequest",
    "BucketRateLimiter",
    "Builder",
    "Cache",
    "Client",
    "Conflict",
    "Controller",
    "EnqueueRequestForObject",
    "EnqueueRequestForOwner",
    "EnqueueRequestsFromMapFunc",
    "Event",
    "EventHandler",
    "EventRecorder",
    "EventType",
    "ExponentialFailureRateLimiter",
    "Finalizer",
    "FinalizerFunc",
    "Forbidden",
    "GenerationChanged",
    "Gone",
    "Indexer",
    "Informer",
    "Invalid",
    "KindNotServed",
    "KindOptions",
    "LabelsChanged",
    "LeaderElectionLost",
    "LeaderElector",
    "Manager",
    "ManagerOptions",
    "MapFunc",
    "MaxOfRateLimiter",
    "NamespacedInformers",
    "NotCached",
    "NotFound",
    "ObjectKey",
    "Predicate",
    "RateLimiter",
    "RateLimitingQueue",
    "ReconcileFunc",
    "Reconciler",
    "Request",
    "RequestTimeout",
    "Resource",
    "ResourceVersionChanged",
    "Result",
    "Runnable",
    "ServerError",
    "ServerUnreachable",
    "ShutDown",
    "Source",
    "Store",
    "TerminalError",
    "TooManyRequests",
    "Unauthorized",
    "UncachedReader",
    "WatchStalled",
    "WebhookServer",
    "and_",
    "configure_logging",
    "default_controller_rate_limiter",
    "find_status_condition",
    "get_logger",
    "has_finalizer",
    "is_retryable",
    "is_status_condition_false",
    "is_status_condition_present_and_equal",
    "is_status_condition_true",
    "not_",
    "or_",
    "reconcile_context",
    "remove_status_condition",
    "retry_after",
    "set_status_condition",
    "strip_managed_fields",
    "validate_condition",
]
