"""The Deployment settings MCP and LLMGateway share: port, replicas and what users set on pods."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agentkube.api.core import ResourceRequirements, Tolerations
from agentkube.api.kind import AGE_COLUMN, URL_COLUMN, PrinterColumn
from agentkube.api.meta import AnnotationMap, LabelMap, ObjectStatus
from agentkube.api.model import ApiModel, Rule, cel_list

__all__ = [
    "DEFAULT_RESOURCES",
    "RESERVED_LABELS",
    "WORKLOAD_COLUMNS",
    "PodMetadata",
    "WorkloadSpec",
    "WorkloadStatus",
]

# What a container gets when spec.resources is omitted (documented on the field).
DEFAULT_RESOURCES = ResourceRequirements(
    requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"}
)

# The labels agentkube puts on every child; the first two select the pods of a Deployment, so a user
# value would detach the pods from their Service.
RESERVED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)


class PodMetadata(ApiModel):
    """Extra labels and annotations for the pods agentkube runs."""

    labels: LabelMap = Field(
        default_factory=dict,
        description="Labels added to the pods. The app.kubernetes.io/name, instance, managed-by and "
        "part-of labels are set by agentkube and may not be given here.",
    )
    annotations: AnnotationMap = Field(
        default_factory=dict, description="Annotations added to the pods, e.g. for a service mesh or scraper."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.labels) || !self.labels.exists(k, k in {cel_list(RESERVED_LABELS)})",
            holds=lambda m: not any(k in RESERVED_LABELS for k in m.labels),
            field=".labels",
            reason="FieldValueForbidden",
            message="app.kubernetes.io/name, instance, managed-by and part-of are set by agentkube",
        ),
    )


class WorkloadSpec(ApiModel):
    """Fields of every kind that agentkube runs as a Deployment behind a Service."""

    port: int = Field(
        8080, ge=1, le=65535, description="Port the Service and the container listen on. Defaults to 8080."
    )
    replicas: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Number of pods, kept at this value by agentkube; with 2 or more a "
        "PodDisruptionBudget keeps one available during node drains, and 0 stops the workload and "
        "keeps its configuration. Leave it unset to let a HorizontalPodAutoscaler (or kubectl scale) "
        "own the Deployment's replicas: agentkube then never sets them, the Deployment starts with 1, "
        "and no PodDisruptionBudget is made.",
    )
    resources: ResourceRequirements | None = Field(
        None,
        description="CPU and memory of the container. When omitted, agentkube requests "
        f"{DEFAULT_RESOURCES.requests['cpu']} CPU and {DEFAULT_RESOURCES.requests['memory']} memory "
        f"and limits memory to {DEFAULT_RESOURCES.limits['memory']}.",
    )
    pod_metadata: PodMetadata | None = Field(None, description="Extra labels and annotations for the pods.")
    node_selector: LabelMap = Field(
        default_factory=dict, description="Pods run only on nodes that carry all of these labels."
    )
    tolerations: Tolerations = Field(
        default_factory=list, description="Taints the pods tolerate, as in a Pod's spec.tolerations."
    )


class WorkloadStatus(ObjectStatus):
    """Status of a kind agentkube runs as a Deployment behind a Service."""

    url: str | None = Field(None, max_length=2048, description="In-cluster URL clients connect to.")
    replicas: int | None = Field(None, ge=0, description="Pods of the current Deployment.")
    ready_replicas: int | None = Field(None, ge=0, description="Pods that pass their readiness probe.")
    ready: str | None = Field(
        None,
        max_length=32,
        description="readyReplicas of spec.replicas, as <ready>/<desired> (e.g. 1/2), as kubectl shows a "
        "Deployment's READY.",
    )


# How ``kubectl get`` shows a workload kind. READY is ready/desired pods, as for a Deployment (a
# printer column is one JSONPath, so the controller writes the pair as one string, status.ready);
# STATUS is the Ready condition's reason: Ready, or what keeps the object from being ready.
WORKLOAD_COLUMNS = (
    PrinterColumn("Ready", "string", ".status.ready", "Ready pods of those desired, as ready/desired."),
    PrinterColumn(
        "Status",
        "string",
        '.status.conditions[?(@.type=="Ready")].reason',
        "Ready, or the reason the object is not ready.",
    ),
    URL_COLUMN,
    AGE_COLUMN,
)
