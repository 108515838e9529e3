"""What bench.peers measures, and the arithmetic on it (pure, but for the /proc readers at the end).

Writes are counted on the API server's side, the same way for every operator:
``apiserver_request_total`` from its ``/metrics``, write verbs only, grouped by what was written.
Left out: the bench's own creates of the MCPs (``POST mcps``; the floor's too, which makes them
itself), Leases (the API server's own identity heartbeat and any leader election) and IPAddresses
(the API server's own record of each ClusterIP it allocates, one per Service created, whoever
creates it), which are no part of an operator's work. Whatever else is written lands in ``other``
(the API server's own occasional writes, such as its Endpoints, land there too: noise of a write or
two per window, whatever the N).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "CATEGORIES",
    "ProcessUsage",
    "Run",
    "median_run",
    "per_object",
    "ratio",
    "read_usage",
    "writes_by_category",
]

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})

CATEGORIES = (
    "configmap",
    "deployment",
    "service",
    "networkpolicy",
    "status",
    "secret",
    "mcp",
    "event",
    "other",
)
"""What a write was to: the children, the MCP's status, a Secret, the MCP itself (kopf's
annotations), an Event, anything else."""

_RESOURCES = {
    "configmaps": "configmap",
    "deployments": "deployment",
    "services": "service",
    "networkpolicies": "networkpolicy",
    "secrets": "secret",
    "events": "event",
}
_LEFT_OUT = frozenset({"leases", "ipaddresses"})


def _category(verb: str, resource: str, subresource: str) -> str | None:
    if resource in _LEFT_OUT:
        return None
    if resource == "mcps":
        if subresource == "status":
            return "status"
        return None if verb == "POST" and not subresource else "mcp"
    return _RESOURCES.get(resource, "other")


def writes_by_category(metrics_text: str) -> Counter[str]:
    """Write requests the API server has answered, by ``CATEGORIES`` (cumulative since it started)."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            if labels.get("verb") not in WRITE_VERBS:
                continue
            category = _category(labels["verb"], labels.get("resource", ""), labels.get("subresource", ""))
            if category is not None:
                counts[category] += int(sample.value)
    return counts


def per_object(before: Mapping[str, int], after: Mapping[str, int], n: int) -> dict[str, float]:
    """Writes per MCP between two ``writes_by_category`` readings, for every category."""
    return {c: (after.get(c, 0) - before.get(c, 0)) / n for c in CATEGORIES}


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


@dataclass
class Run:
    """One operator converging N MCPs on a fresh control plane."""

    operator: str
    n: int
    seconds: float
    """From the first create until every MCP is Accepted at its generation."""
    first: dict[str, float] = field(default_factory=dict)
    """Writes per MCP by category, from the first create until the writes settle."""
    settled: bool = True
    """Whether the writes did settle (else ``first`` was cut off, and holds later writes too)."""
    rest: dict[str, float] | None = None
    """Writes per MCP by category over the at-rest window (None for the floor, which has no rest)."""
    cpu_seconds: float = 0.0
    """The operator's CPU seconds (process tree, user + system) from ready to settled."""
    cpu_rest_seconds: float | None = None
    startup_cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def object_writes(self) -> float:
        return sum(v for k, v in self.first.items() if k != "event")

    @property
    def events(self) -> float:
        return self.first.get("event", 0.0)

    @property
    def rest_writes(self) -> float | None:
        return None if self.rest is None else sum(self.rest.values())

    @property
    def cpu_ms_per_object(self) -> float:
        return 1000 * self.cpu_seconds / self.n


def median_run(runs: Sequence[Run]) -> Run:
    """The median of each figure over ``runs`` (of one operator and N)."""

    def med(values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    def med_counts(counts: Iterable[dict[str, float] | None]) -> dict[str, float] | None:
        present = [c for c in counts if c is not None]
        if not present:
            return None
        return {k: statistics.median(c.get(k, 0.0) for c in present) for k in CATEGORIES}

    values: dict[str, object] = {"operator": runs[0].operator, "n": runs[0].n}
    for f in fields(Run):
        if f.name in values:
            continue
        if f.name == "settled":
            values[f.name] = all(r.settled for r in runs)
            continue
        column = [getattr(r, f.name) for r in runs]
        values[f.name] = med_counts(column) if f.name in ("first", "rest") else med(column)
    values["first"] = values["first"] or {}
    return Run(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ /proc


@dataclass(frozen=True)
class ProcessUsage:
    cpu_seconds: float
    """User + system CPU of the tree's live processes, and of the children they have reaped."""
    peak_rss_mib: float
    """Sum of each live process's peak resident set (``VmHWM``)."""


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def read_usage(pid: int) -> ProcessUsage:
    """CPU seconds and peak RSS of process ``pid`` and its descendants, read from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu, rss_kib = 0.0, 0
    for p in _tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue  # gone since the tree was read
        # Fields 14-17 of stat (utime, stime, cutime, cstime); the split starts at field 3.
        cpu += sum(int(v) for v in stat[11:15]) / ticks
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                rss_kib += int(line.split()[1])
    return ProcessUsage(cpu_seconds=cpu, peak_rss_mib=rss_kib / 1024)
