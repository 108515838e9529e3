"""The official MCP conformance suite's server scenarios, run against a target, held to a baseline.

Three suite runs (`SUITE_RUNS`): the newest 0.1.x with every scenario, and the 0.2 prerelease once
per spec revision it can require (`--requirements 2025-11-25`, `--requirements 2026-07-28`). Each
must pass every scenario except those `conformance-expected-failures.yaml` lists for that target and
run; a listed scenario that passes fails the test too, so the list cannot go stale.

Two targets (`TARGETS`), the same fixture server (`conformance_server.py`) both times:

- `direct`: the fixture itself. Its list is what the fixture lacks.
- `proxy`: the fixture behind `agentkube mcp-proxy` (one http upstream, no prefix, no filter, so every
  name the suite asks for is the fixture's own). Its list holds the direct failures plus what the proxy
  loses on the way; every scenario that passes directly and fails here must be listed, naming what the
  proxy lacks.

`run_suite` and `assert_matches_baseline` take a URL and nothing else; `target_url` maps a target to
its URL, starting the proxy only for the tests that need it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from test.e2e.peers import (
    ROOT,
    HttpPeer,
    PeerCommand,
    free_port,
    node22,
    node_bin,
    peers_dir,
    start_http_peer,
)
from test.e2e.proxy_harness import RunningProxy, http_upstream, run_proxy

__all__ = [
    "EXPECTED_FAILURES",
    "SUITE_RUNS",
    "TARGETS",
    "ScenarioResult",
    "SuiteRun",
    "assert_matches_baseline",
    "expected_failures",
    "run_suite",
]

pytestmark = pytest.mark.e2e

EXPECTED_FAILURES = Path(__file__).with_name("conformance-expected-failures.yaml")
# The suite names each result directory `server-<scenario>-<ISO time with : and . as ->`.
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
_RUNNING = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.MULTILINE)
_DETAIL_CHARS = 600


@dataclass(frozen=True)
class SuiteRun:
    """One invocation of the suite: which installed series, and which revision's requirements."""

    series: Literal["0.1", "0.2"]
    requirements: str | None = None

    @property
    def id(self) -> str:
        return self.series if self.requirements is None else f"{self.series}/{self.requirements}"

    def __str__(self) -> str:
        # The test id: no "/", so `-k 0.2-2026-07-28` and node ids stay plain.
        return self.id.replace("/", "-")


SUITE_RUNS = [SuiteRun("0.1"), SuiteRun("0.2", "2025-11-25"), SuiteRun("0.2", "2026-07-28")]
TARGETS = ["direct", "proxy"]


@dataclass(frozen=True)
class ScenarioResult:
    """The suite's verdict on one scenario: passed when none of its checks failed (the suite's own ✓).

    `detail` names the failed checks with their messages, or counts the checks of a pass (warnings
    and skips included, since a pass made of skips exercised little).
    """

    passed: bool
    detail: str


def _verdict(checks: list[dict[str, Any]]) -> ScenarioResult:
    counts: dict[str, int] = {}
    for check in checks:
        counts[str(check.get("status"))] = counts.get(str(check.get("status")), 0) + 1
    failures = [check for check in checks if check.get("status") == "FAILURE"]
    if failures:
        detail = "; ".join(
            f"{check.get('id')}: {check.get('errorMessage') or '(no message)'}" for check in failures
        )
        return ScenarioResult(False, detail[:_DETAIL_CHARS])
    summary = ", ".join(f"{count} {status.lower()}" for status, count in sorted(counts.items()))
    warnings = "; ".join(
        f"{check.get('id')}: {check.get('errorMessage') or '(no message)'}"
        for check in checks
        if check.get("status") == "WARNING"
    )
    detail = f"{summary} ({warnings})" if warnings else summary
    return ScenarioResult(True, (detail or "no checks")[:_DETAIL_CHARS])


def run_suite(
    suite_dir: Path, url: str, requirements: str | None = None, *, timeout: float = 600.0
) -> dict[str, ScenarioResult]:
    """Run every server scenario of the conformance suite installed in `suite_dir` against `url`.

    With `requirements` (a spec revision, 0.2 and later) exactly the scenarios that revision
    requires run, plus those the suite reports without scoring; without it, `--suite all`. Results
    are read from the `checks.json` each scenario writes (the suite's machine-readable output); a
    scenario the suite started but that wrote none counts as failed. Raises `RuntimeError` when the
    suite ran no scenario at all.
    """
    cli = [
        str(node22()),
        str(node_bin("@modelcontextprotocol/conformance", "conformance", install=suite_dir)),
    ]
    with tempfile.TemporaryDirectory(prefix="agentkube-conformance-") as out:
        selection = ["--requirements", requirements] if requirements else ["--suite", "all"]
        done = subprocess.run(
            [*cli, "server", "--url", url, *selection, "--output-dir", out],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        results: dict[str, ScenarioResult] = {}
        for entry in sorted(Path(out).iterdir()):
            match = _RESULT_DIR.match(entry.name)
            if match is None or not (entry / "checks.json").is_file():
                continue
            results[match["scenario"]] = _verdict(json.loads((entry / "checks.json").read_text()))
    for started in _RUNNING.findall(done.stdout):
        results.setdefault(started, ScenarioResult(False, "the suite wrote no checks.json (see its output)"))
    if not results:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise RuntimeError(
            f"the conformance suite in {suite_dir} ran no scenario (exit {done.returncode}):\n{output}"
        )
    return results


def expected_failures(
    run: SuiteRun, target: str = "direct", path: Path = EXPECTED_FAILURES
) -> dict[str, str]:
    """Scenario -> reason, for one suite run against one target, from the expected-failures file."""
    baseline = yaml.safe_load(path.read_text()) or {}
    runs = baseline.get(target)
    if not isinstance(runs, dict):
        raise AssertionError(f"{path.name} has no entry for target {target!r}; add `{target}: {{}}`")
    entries = runs.get(run.id)
    if entries is None:
        raise AssertionError(
            f"{path.name} has no entry for suite run {run.id!r} under {target!r}; add `{run.id!r}: {{}}`"
        )
    return {str(scenario): str(reason) for scenario, reason in entries.items()}


def assert_matches_baseline(
    run: SuiteRun, results: Mapping[str, ScenarioResult], expected: Mapping[str, str], target: str = "direct"
) -> None:
    """Fail naming every difference between what the suite found and what the baseline says."""
    where = f"{target}: {run.id!r}"
    problems = []
    for scenario, result in sorted(results.items()):
        if not result.passed and scenario not in expected:
            problems.append(f"{scenario} FAILED: {result.detail}")
        elif result.passed and scenario in expected:
            problems.append(f"{scenario} now passes: remove it from {EXPECTED_FAILURES.name} under {where}")
    for scenario in sorted(set(expected) - set(results)):
        problems.append(f"{scenario} is listed under {where} but the suite no longer runs it: remove it")
    passed = sum(result.passed for result in results.values())
    summary = f"suite {run.id} against {target}: {passed} of {len(results)} scenarios passed"
    assert not problems, summary + "\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpPeer]:
    port = free_port()
    cmd = PeerCommand((sys.executable, "-m", "test.e2e.conformance_server", "--port", str(port)))
    log = tmp_path_factory.mktemp("conformance-server") / "server.log"
    with start_http_peer(cmd, port, "/mcp", cwd=ROOT, log_path=log) as peer:
        yield peer


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, fixture_server: HttpPeer) -> Iterator[RunningProxy]:
    """The fixture behind the proxy: one upstream, no prefix, no filter (the suite names the tools)."""
    work = tmp_path_factory.mktemp("conformance-proxy")
    with run_proxy(work, [http_upstream("conformance", fixture_server.url)]) as proxy:
        yield proxy


@pytest.fixture
def target_url(target: str, request: pytest.FixtureRequest) -> str:
    if target == "direct":
        return str(request.getfixturevalue("fixture_server").url)
    if target == "proxy":
        return str(request.getfixturevalue("proxied").url)
    raise AssertionError(f"unknown conformance target {target!r}")


@pytest.mark.parametrize("run", SUITE_RUNS, ids=str)
@pytest.mark.parametrize("target", TARGETS)
def test_server_scenarios_match_the_baseline(run: SuiteRun, target: str, target_url: str) -> None:
    results = run_suite(peers_dir() / f"conformance-{run.series}", target_url, run.requirements)
    passed = sum(result.passed for result in results.values())
    print(f"conformance {run.id} against {target}: {passed} of {len(results)} scenarios passed")
    for scenario, result in sorted(results.items()):
        if result.passed and "warning" in result.detail:
            print(f"  passed with warnings: {scenario}: {result.detail}")
    assert_matches_baseline(run, results, expected_failures(run, target), target)
