"""agentkube beside controller-runtime and kopf, converging the same N MCPs, and the floor beneath them.

    python -m bench.peers [--n 1000] [--rounds 3] [--sync-period 36000] [--rest 30]

Four contenders, interleaved (agentkube, controller-runtime, kopf, floor, agentkube, ...), each on a
fresh control plane (``agentkube.testing.ControlPlane`` with our MCP and LLMGateway CRDs) and in a
process of its own:

- agentkube: the manager of ``bench.converge`` (MCP and LLMGateway controllers, warning-level logs);
- controller-runtime: ``bench/peers/controller-runtime`` (Go, built here with the machine's Go into
  ``~/.cache/agentkube/bench/controller-runtime/``), ``MaxConcurrentReconciles`` equal to agentkube's
  ``MAX_CONCURRENT_RECONCILES``;
- kopf: ``bench/peers/kopf_operator.py`` run by kopf from its own virtual environment
  (``~/.cache/agentkube/bench/kopf``, made here on first use), ``--quiet`` (warnings, as agentkube),
  a thread pool of the same size;
- floor: ``bench/peers/floor.py``, the same writes by a bare client, no controller.

All four write the same children (``bench.peers.children``: agentkube's pure builders). Once an
operator is ready, the N MCPs of ``bench.converge`` are created (32 in flight; the floor creates its
own), and for each contender this prints:

- seconds from the first create until every MCP is Accepted at its generation (an informer);
- write requests per MCP, counted by the API server (``bench.peers.figures``), from the first create
  until no write came for 2 s (first convergence; an operator still writing 30 s after converging
  is cut there and marked), and over the at-rest window after it (``--rest`` seconds);
- the operator's CPU seconds from ready to settled (and per MCP), over the rest window, and to start;
  its peak RSS (``/proc`` of its process tree; the floor's from ``wait4``);
- the ratio of each figure to agentkube's, and of converge time to the floor's.

The resync period (``--sync-period``) is the same for agentkube and controller-runtime:
controller-runtime's default, 10 h, unless given (agentkube's default is none, kopf has no resync),
so by default no resync falls in a run and "at rest" is a world where nothing changes. A short one
shows what a resync costs, but mind the load: at N=1000 on 2 cores a 30 s resync keeps the
controller-runtime peer re-applying without pause (it never gets through one resync's reconciles
before the next), and then its convergence time says more about the resync than about the
framework. Owned-object events at rest (Deployment status from a kube-controller-manager) are not
part of this benchmark: like ``bench.converge``, it runs the API server alone.

``uptime`` is printed before each run, every run as it ends, then the medians. Not a test: figures
from a loaded machine are noise, and the goals of issue 15 are read off a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agentkube.controllers.workload import MAX_CONCURRENT_RECONCILES
from agentkube.runtime.client import Client
from agentkube.testing import ControlPlane
from bench.converge import IN_FLIGHT, ROOT, _free_port, _mcp, watch_convergence
from bench.peers.children import write_children
from bench.peers.connection import Connection
from bench.peers.figures import Run, median_run, per_object, ratio, read_usage, writes_by_category

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentkube" / "bench"
CRDS = [ROOT / "config" / "crd" / "bases" / f"agentkube.io_{p}.yaml" for p in ("mcps", "llmgateways")]
KOPF_REQUIREMENTS = ("kopf==1.45.2", "kubernetes==37.0.2")
OPERATORS = ("agentkube", "controller-runtime", "kopf", "floor")
QUIET = 2.0
"""Seconds without a write after which the first convergence counts as settled."""
SETTLE_LIMIT = 30.0
"""Seconds after converging at most spent waiting for QUIET; past them the run is marked unsettled."""
READY_TIMEOUT = 120.0


def say(text: str) -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------- the contenders


def build_controller_runtime_peer() -> Path:
    """The Go peer's binary, built with the machine's Go (``hack/go.sh``) unless a build of the same
    sources is cached."""
    source = HERE / "controller-runtime"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((source / name).read_bytes())
    binary = CACHE / "controller-runtime" / digest.hexdigest()[:16] / "mcp-peer"
    if binary.exists():
        return binary
    go = subprocess.run(["bash", str(ROOT / "hack" / "go.sh")], check=True, capture_output=True, text=True)
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    say(f"building the controller-runtime peer into {binary.parent} (minutes on a cold Go cache) ...")
    started = time.perf_counter()
    staged = binary.with_suffix(".tmp")
    subprocess.run([go.stdout.strip(), "build", "-o", str(staged), "."], cwd=source, env=env, check=True)
    staged.rename(binary)
    for stale in binary.parent.parent.iterdir():
        if stale != binary.parent:
            shutil.rmtree(stale, ignore_errors=True)  # builds of sources since changed
    say(f"built the controller-runtime peer in {time.perf_counter() - started:.0f} s")
    return binary


def kopf_venv() -> Path:
    """kopf's virtual environment, made with ``KOPF_REQUIREMENTS`` unless it is there already."""
    venv = CACHE / "kopf"
    marker = venv / ("installed-" + "-".join(KOPF_REQUIREMENTS).replace("==", "-"))
    if marker.exists():
        return venv
    say(f"installing {' '.join(KOPF_REQUIREMENTS)} into {venv} ...")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *KOPF_REQUIREMENTS], check=True)
    marker.touch()
    return venv


@dataclass(frozen=True)
class Contender:
    """How to start one operator and tell when it is ready."""

    command: list[str]
    env: dict[str, str]
    ready_url: str | None


def contender(
    name: str, kubeconfig: str, children: Path, n: int, sync_period: float, peer: Callable[[], Path]
) -> Contender:
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    if name == "agentkube":
        command = [
            sys.executable,
            "-m",
            "bench.converge",
            "--manager",
            kubeconfig,
            str(port),
            str(sync_period),
        ]
        return Contender(command, env, f"http://127.0.0.1:{port}/readyz")
    if name == "controller-runtime":
        command = [
            str(peer()),
            f"--children={children}",
            f"--health-probe-bind-address=127.0.0.1:{port}",
            f"--metrics-bind-address=127.0.0.1:{_free_port()}",
            f"--max-concurrent-reconciles={MAX_CONCURRENT_RECONCILES}",
            f"--sync-period={sync_period}s",
        ]
        return Contender(command, env, f"http://127.0.0.1:{port}/readyz")
    if name == "kopf":
        command = [
            str(kopf_venv() / "bin" / "kopf"),
            "run",
            "--standalone",
            "--all-namespaces",
            "--quiet",
            f"--liveness=http://127.0.0.1:{port}/healthz",
            str(HERE / "kopf_operator.py"),
        ]
        env |= {"BENCH_PEER_CHILDREN": str(children), "BENCH_PEER_WORKERS": str(MAX_CONCURRENT_RECONCILES)}
        return Contender(command, env, f"http://127.0.0.1:{port}/healthz")
    if name == "floor":
        command = [sys.executable, "-m", "bench.peers.floor", kubeconfig, str(children), str(n)]
        return Contender(command, env, None)
    raise ValueError(f"unknown operator {name!r}; one of {', '.join(OPERATORS)}")


# ------------------------------------------------------------------------------------- measuring


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the operator exited ({process.returncode}) before it was ready; see {log}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"the operator was not ready within {READY_TIMEOUT:.0f} s; see {log}")


class _Writes:
    """The API server's write counters, read through a bare connection."""

    def __init__(self, connection: Connection, session: aiohttp.ClientSession) -> None:
        self._connection = connection
        self._session = session

    async def read(self) -> dict[str, int]:
        return dict(writes_by_category(await self._connection.metrics(self._session)))

    async def settled(self, limit: float = SETTLE_LIMIT) -> tuple[dict[str, int], bool]:
        """The counters once no write came for ``QUIET`` seconds, and True; or after ``limit``
        seconds of writes, and False."""
        last = await self.read()
        started = quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < QUIET:
            if time.monotonic() - started > limit:
                return last, False
            await asyncio.sleep(0.25)
            now = await self.read()
            if now != last:
                last, quiet_since = now, time.monotonic()
        return last, True


async def _measure(plane: ControlPlane, name: str, spec: Contender, n: int, rest: float, log: Path) -> Run:
    kubeconfig = str(plane.kubeconfig)
    connection = Connection.from_kubeconfig(kubeconfig)
    async with connection.session() as session, await Client.from_kubeconfig(kubeconfig) as client:
        writes = _Writes(connection, session)
        informer, done = await watch_convergence(plane, client, n)
        watching = asyncio.create_task(informer.run())
        with log.open("wb") as log_file:
            pipe = subprocess.PIPE if spec.ready_url is None else None
            # Popen returns at once; the process is only ever waited on in a thread.
            process = subprocess.Popen(  # noqa: ASYNC220
                spec.command, cwd=ROOT, env=spec.env, stdin=pipe, stdout=pipe or log_file, stderr=log_file
            )
            try:
                await informer.wait_for_sync()
                if spec.ready_url is not None:
                    await _wait_ready(spec.ready_url, process, log)
                else:
                    assert process.stdout is not None
                    said = await asyncio.to_thread(process.stdout.readline)
                    if said.strip() != b"ready":
                        raise RuntimeError(f"the floor did not start ({said!r}); see {log}")
                startup = read_usage(process.pid)
                before, _ = await writes.settled()
                if spec.ready_url is None:
                    assert process.stdin is not None
                    process.stdin.write(b"go\n")
                    process.stdin.close()
                    started = time.perf_counter()
                else:
                    started = time.perf_counter()
                    slots = asyncio.Semaphore(IN_FLIGHT)

                    async def create(i: int) -> None:
                        async with slots:
                            await client.create(_mcp(i))

                    await asyncio.gather(*(create(i) for i in range(n)))
                await done.wait()
                seconds = time.perf_counter() - started
                first, quiet = await writes.settled()
                if spec.ready_url is None:
                    _, status, usage = await asyncio.to_thread(os.wait4, process.pid, 0)
                    process.returncode = os.waitstatus_to_exitcode(status)
                    return Run(
                        operator=name,
                        n=n,
                        seconds=seconds,
                        first=per_object(before, first, n),
                        settled=quiet,
                        cpu_seconds=usage.ru_utime + usage.ru_stime - startup.cpu_seconds,
                        startup_cpu_seconds=startup.cpu_seconds,
                        peak_rss_mib=usage.ru_maxrss / 1024,
                    )
                settled = read_usage(process.pid)
                # A fixed window is the measurement here (writes at rest per unit of time), not a wait.
                await asyncio.sleep(rest)
                rested = await writes.read()
                final = read_usage(process.pid)
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.to_thread(process.wait, 60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
    return Run(
        operator=name,
        n=n,
        seconds=seconds,
        first=per_object(before, first, n),
        settled=quiet,
        rest=per_object(first, rested, n),
        cpu_seconds=settled.cpu_seconds - startup.cpu_seconds,
        cpu_rest_seconds=final.cpu_seconds - settled.cpu_seconds,
        startup_cpu_seconds=startup.cpu_seconds,
        peak_rss_mib=final.peak_rss_mib,
    )


def run_one(name: str, n: int, children: Path, sync_period: float, rest: float, logs: Path, peer: Any) -> Run:
    with ControlPlane(crd_paths=CRDS) as plane:
        assert plane.kubeconfig is not None
        spec = contender(name, str(plane.kubeconfig), children, n, sync_period, peer)
        log = logs / f"{name}-{time.strftime('%H%M%S')}.log"
        return asyncio.run(_measure(plane, name, spec, n, rest, log))


# ------------------------------------------------------------------------------------- printing


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _breakdown(counts: dict[str, float]) -> str:
    shown = [f"{c} {v:.2f}" for c, v in counts.items() if v]
    return ", ".join(shown) or "none"


def line(run: Run) -> str:
    rest = "" if run.rest is None else f"; at rest {_fmt(run.rest_writes)} ({_breakdown(run.rest)})"
    cpu_rest = "" if run.cpu_rest_seconds is None else f", at rest {run.cpu_rest_seconds:.2f} s"
    startup = "" if run.rest is None else f", startup {run.startup_cpu_seconds:.2f} s"
    unsettled = "" if run.settled else f" [still writing {SETTLE_LIMIT:.0f} s after converging: cut there]"
    return (
        f"{run.operator} N={run.n}: converged in {run.seconds:.2f} s; writes per MCP: first "
        f"{run.object_writes:.2f} objects + {run.events:.2f} Events ({_breakdown(run.first)})"
        f"{unsettled}{rest}; "
        f"CPU {run.cpu_seconds:.2f} s ({run.cpu_ms_per_object:.1f} ms/MCP){cpu_rest}{startup}; "
        f"peak RSS {run.peak_rss_mib:.0f} MiB"
    )


def _x(run: Run, reference: Run | None, figure: Callable[[Run], float | None]) -> str:
    return _fmt(ratio(figure(run), None if reference is None else figure(reference)))


def table(medians: list[Run]) -> str:
    """The medians side by side, with ratios to agentkube (``x ak``) and to the floor (``x floor``)."""
    by_name = {r.operator: r for r in medians}
    ours, floor = by_name.get("agentkube"), by_name.get("floor")

    def seconds(r: Run) -> float:
        return r.seconds

    def writes(r: Run) -> float:
        return r.object_writes + r.events

    def cpu(r: Run) -> float:
        return r.cpu_seconds

    def rss(r: Run) -> float:
        return r.peak_rss_mib

    rows = [
        f"{'operator':<19}{'seconds':>8}{'x ak':>6}{'x floor':>8}{'writes':>7}{'events':>7}{'x ak':>6}"
        f"{'x floor':>8}{'at rest':>8}{'CPU s':>7}{'ms/MCP':>7}{'x ak':>6}{'RSS MiB':>8}{'x ak':>6}"
    ]
    for r in medians:
        rows.append(
            f"{r.operator:<19}{r.seconds:>8.2f}{_x(r, ours, seconds):>6}{_x(r, floor, seconds):>8}"
            f"{r.object_writes:>7.2f}{r.events:>7.2f}{_x(r, ours, writes):>6}{_x(r, floor, writes):>8}"
            f"{_fmt(r.rest_writes):>8}{r.cpu_seconds:>7.2f}{r.cpu_ms_per_object:>7.1f}{_x(r, ours, cpu):>6}"
            f"{r.peak_rss_mib:>8.0f}{_x(r, ours, rss):>6}"
        )
    rows.append(
        "writes/events: per MCP on first convergence (x: writes + events); at rest: per MCP over the "
        "window; CPU: ready to settled; the floor's CPU and RSS are a Python client's, not a floor"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="MCPs to converge (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every contender (default 3)")
    parser.add_argument(
        "--sync-period",
        type=float,
        default=36000.0,
        help="agentkube's and controller-runtime's resync seconds (default 36000, controller-runtime's)",
    )
    parser.add_argument("--rest", type=float, default=30.0, help="at-rest window in seconds (default 30)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=OPERATORS,
        default=list(OPERATORS),
        help="contenders to run (default all)",
    )
    args = parser.parse_args()

    from agentkube.runtime.logging import configure_logging

    configure_logging("warning", "console")
    peer_binary: list[Path] = []

    def peer() -> Path:
        if not peer_binary:
            peer_binary.append(build_controller_runtime_peer())
        return peer_binary[0]

    if "controller-runtime" in args.only:
        peer()
    if "kopf" in args.only:
        kopf_venv()
    say(
        f"bench.peers: {os.cpu_count()} CPUs; N={args.n}; rounds: {args.rounds}; workers: "
        f"{MAX_CONCURRENT_RECONCILES}; sync period {args.sync_period:.0f} s; at-rest window {args.rest:.0f} s"
    )
    runs: dict[str, list[Run]] = {name: [] for name in args.only}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        children = write_children(Path(tmp) / "children.json", args.n)
        logs = CACHE / "peers-logs"
        logs.mkdir(parents=True, exist_ok=True)
        for round_ in range(args.rounds):
            for name in args.only:
                uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
                say(f"round {round_ + 1} {name}: uptime {uptime}")
                run = run_one(name, args.n, children, args.sync_period, args.rest, logs, peer)
                runs[name].append(run)
                say(f"  {line(run)}")
    medians = [median_run(r) for r in runs.values() if r]
    say(f"medians of {args.rounds} round(s):")
    for run in medians:
        say(f"  {line(run)}")
    say(table(medians))


if __name__ == "__main__":
    main()
