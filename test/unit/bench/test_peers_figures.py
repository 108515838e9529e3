"""The arithmetic of bench.peers: which API server writes count, per object, and the medians."""

from __future__ import annotations

import json

from bench.peers.children import children_of
from bench.peers.figures import Run, median_run, per_object, ratio, writes_by_category


def _sample(verb: str, resource: str, value: int, subresource: str = "", code: str = "200") -> str:
    return (
        f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",group="",'
        f'resource="{resource}",scope="resource",subresource="{subresource}",verb="{verb}",version="v1"}} '
        f"{value}"
    )


METRICS = "\n".join(
    [
        "# HELP apiserver_request_total Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        _sample("APPLY", "configmaps", 10),
        _sample("APPLY", "configmaps", 2, code="409"),
        _sample("GET", "configmaps", 1000),
        _sample("WATCH", "deployments", 7),
        _sample("APPLY", "deployments", 10),
        _sample("POST", "services", 10),
        _sample("PATCH", "mcps", 10, subresource="status"),
        _sample("PATCH", "mcps", 3),
        _sample("POST", "mcps", 10),
        _sample("POST", "events", 20),
        _sample("PUT", "leases", 99),
        _sample("POST", "ipaddresses", 10),
        _sample("POST", "endpoints", 1),
        _sample("DELETE", "secrets", 4),
    ]
)


def test_counts_writes_of_every_code_by_what_they_wrote() -> None:
    counts = writes_by_category(METRICS)
    assert counts["configmap"] == 12
    assert counts["deployment"] == 10
    assert counts["service"] == 10
    assert counts["status"] == 10
    assert counts["mcp"] == 3
    assert counts["event"] == 20
    assert counts["secret"] == 4
    assert counts["other"] == 1


def test_leaves_out_reads_the_bench_creates_leases_and_cluster_ips() -> None:
    counts = writes_by_category(METRICS)
    assert sum(counts.values()) == 12 + 10 + 10 + 10 + 3 + 20 + 4 + 1


def test_per_object_is_the_difference_over_n_in_every_category() -> None:
    first = per_object({"configmap": 2}, {"configmap": 12, "event": 5}, 5)
    assert first["configmap"] == 2.0
    assert first["event"] == 1.0
    assert first["deployment"] == 0.0


def test_ratio_is_none_without_a_reference() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


def test_median_run_takes_each_figure_apart_and_keeps_a_missing_rest_missing() -> None:
    runs = [
        Run("kopf", 10, seconds=s, first={"configmap": c, "event": 1.0}, cpu_seconds=cpu, peak_rss_mib=rss)
        for s, c, cpu, rss in [(3.0, 1.0, 9.0, 100.0), (1.0, 3.0, 7.0, 90.0), (2.0, 2.0, 8.0, 95.0)]
    ]
    median = median_run(runs)
    assert (median.seconds, median.cpu_seconds, median.peak_rss_mib) == (2.0, 8.0, 95.0)
    assert median.first["configmap"] == 2.0
    assert median.object_writes == 2.0
    assert median.events == 1.0
    assert median.rest is None and median.rest_writes is None
    assert median.cpu_ms_per_object == 800.0


def test_children_carry_no_owner_reference_and_name_their_mcp() -> None:
    children = children_of(7)
    assert [c["kind"] for c in children][:3] == ["ConfigMap", "Deployment", "Service"]
    for child in children:
        assert "ownerReferences" not in child["metadata"]
        assert child["metadata"]["namespace"] == "bench"
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "mcp-00007"
    assert json.loads(json.dumps(children)) == children
