"""The MCP proxy: what ``agentkube mcp-proxy`` costs over talking to the server directly, against its peers.

    python -m bench.mcp_proxy [--runs 3] [--seconds 4] [--warmup 1] [--workers 32] [--sessions 1000]
                              [--agentkube PATH] [--skip-peers]

(``--agentkube`` measures another build's console script, for an A/B in one run of the same machine.)

One run, one machine, every subject measured the same way in the same run:

- the upstream is ``bench.mcp_upstream``: a bare asyncio HTTP server answering with precomputed JSON
  (both eras: ``server/discover`` at 2026-07-28, ``initialize`` with a ``Mcp-Session-Id`` in the
  session era), so that it is never what a figure measures;
- the subjects: the upstream itself ("direct", spoken to at 2026-07-28: it does the same work in
  either era); agentkube's proxy spoken to at 2026-07-28 (stateless:
  ``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name`` and the ``_meta`` envelope) and in the
  session era (one ``initialize`` per worker, then ``Mcp-Session-Id``); FastMCP's proxy
  (``fastmcp.server.create_proxy(url)``, the documented successor of ``FastMCP.as_proxy``, served with
  ``run(transport="http")``, defaults otherwise: a fresh backend session per request, SSE answers);
  and ``mcp-proxy``. ``mcp-proxy`` has no HTTP-to-HTTP mode: given a URL it bridges that server to
  its own stdio, given a command it serves that command's stdio over SSE and Streamable HTTP. It is
  used the way it works, as two processes: ``mcp-proxy --port P -- mcp-proxy --transport
  streamablehttp URL`` (the front spawns the bridge as its stdio server); both count as the subject.
  Peers speak only the session era and are driven with session-era requests; their per-request
  logging is turned down to WARNING (their best case; agentkube logs nothing per call at its
  default level, which it runs at). Each peer lives in its own virtualenv under
  ``~/.cache/agentkube/bench/``, installed from PyPI by this script when missing; a peer that cannot
  be installed or run is reported with the reason and left out.
- the load generator is this process (aiohttp client, keep-alive connections, N concurrent workers
  in a closed loop, each window a warm-up then a measured span; loops bounded in time and count).

Cores (2): the load generator and the upstream share core 0 (``taskset -c 0``); the subject under
test has core 1 to itself (``taskset -c 1``; ``mcp-proxy``'s two processes share it). That is the
fairer split: a proxy is charged only for its own work, never for the upstream's, and every subject
meets the same load core. The direct figure then has the load generator and the upstream on one
core while core 1 idles: it is the most the load core can produce, which is the ceiling a proxy's
throughput is measured against (a ratio of 1 means the proxy keeps up with the load core).

Figures (median of ``--runs`` runs; the runs are interleaved, so drift hits every subject alike):

1. ``tools/call`` of a tiny echo: requests/s and p50/p99 latency with N workers, and p50/p99 with one
   worker (latency without queueing: the added p50 latency goal is judged there);
2. ``tools/list`` of 200 tools: direct and agentkube in both eras;
3. ``tools/call`` returning 1 MiB of text (8 workers): requests/s and p50, direct and agentkube;
4. RSS (all processes of a subject, from /proc) of a fresh instance of each proxy: idle (after start
   and one listing) and with ``--sessions`` session-era sessions open (each: initialize,
   ``notifications/initialized``, one call; 32 at a time, and no longer than ``SESSIONS_WITHIN``).
   agentkube keeps no per-session state in memory (the id is the sealed state), so its figure should
   barely move.

Beside each window: the CPU share the subject used, the load core's, and what processes not started
here took of the subject's core (the machine may be shared: a throughput taken while "others" is
high is low for that reason; such a window is taken again, twice at most and within a minute for
the whole run, and the least disturbed one counts), and the subject's CPU time per answered request,
the figure a shared machine moves least (the cost of one request, whatever the load).

Goals (2 cores): added p50 latency <= 1 ms over direct; throughput >= 1/3 of direct; >= 20x
FastMCP's proxy and >= 3x ``mcp-proxy`` (session era against session era, as the peers speak only
that); RSS <= 80 MiB with 1,000 sessions. A run takes about 5 minutes (FastMCP's proxy opening its
1,000 sessions is 75 s of it). Every process started here runs in its own process group and is ended
at the end (with any descendant that left the group), also on an error, Ctrl-C or SIGTERM. Loopback
only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import operator
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import orjson

from bench.mcp_upstream import BIG_BYTES, MODERN, TOOLS

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "agentkube" / "bench"
AGENTKUBE = str(Path(sys.executable).with_name("agentkube"))
LOOPBACK = "127.0.0.1"
LOAD_CORE, SUBJECT_CORE = 0, 1
SESSION_VERSION = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
BIG_WORKERS = 8
SESSION_WORKERS = 32
MAX_REQUESTS_PER_WORKER = 1_000_000
MAX_ERRORS_PER_WORKER = 100
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
READY_WITHIN = 90.0
NOISY = 0.10
"""A window in which other processes took more than this share of the subject's core is taken again
(up to ``RETRIES`` times, within ``RETRY_SECONDS`` for the whole run); the least disturbed one counts."""
RETRIES = 2
RETRY_SECONDS = 60.0
SESSIONS_WITHIN = 90.0
"""Opening the RSS figure's sessions stops here (FastMCP's proxy opens about a dozen a second)."""
# Pinned so that a figure means the same next month; the cache is reinstalled when they change.
PEER_PACKAGES = {"fastmcp": "fastmcp==4.2.3", "mcp-proxy": "mcp-proxy==0.13.0"}
FASTMCP_SCRIPT = """
import sys
from fastmcp.server import create_proxy
create_proxy(sys.argv[1], name="bench").run(
    transport="http", host="127.0.0.1", port=int(sys.argv[2]), show_banner=False, log_level="WARNING"
)
"""

Era = Literal["modern", "session"]
T = TypeVar("T")


# ---------------------------------------------------------------------------------------- processes


class Processes:
    """Every process this bench starts: each in its own process group, all ended by ``stop_all``."""

    def __init__(self, logs: Path, pin: bool) -> None:
        self.logs = logs
        self.pin = pin
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], core: int) -> subprocess.Popen[bytes]:
        if self.pin:
            argv = ["taskset", "-c", str(core), *argv]
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip
        self.running[name] = process
        return process

    def stop(self, name: str) -> None:
        process = self.running.pop(name, None)
        if process is None:
            return
        # A child may have left the group (the mcp SDK starts stdio servers in a session of their
        # own): its descendants are ended too, by pid, once checked to be the same processes.
        others = {pid: comm for pid, (_, _, comm, _) in _tree(process.pid).items() if pid != process.pid}
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            _signal_pids(others, sig)
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # a child may linger in the group
            os.killpg(process.pid, signal.SIGKILL)
        _signal_pids(others, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("      " + line for line in text.splitlines()[-lines:]) or "      (empty log)"

    def rss_mib(self, name: str) -> tuple[float, int]:
        """Resident memory of ``name`` and every process it started, and how many processes that is."""
        tree = _tree(self.running[name].pid)
        total = 0
        for pid in tree:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024, len(tree)

    def cpu_seconds(self, name: str) -> float:
        """CPU time (user + system) used so far by ``name`` and every process it started."""
        return sum(cpu for _, _, _, cpu in _tree(self.running[name].pid).values())


_TICK = os.sysconf("SC_CLK_TCK")


def _stats() -> dict[int, tuple[int, int, str, float]]:
    """pid -> (parent pid, process group, command name, CPU seconds) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            cpu = (int(rest[11]) + int(rest[12])) / _TICK
            found[int(entry.name)] = (int(rest[1]), int(rest[2]), comm, cpu)
    return found


def _tree(root: int) -> dict[int, tuple[int, int, str, float]]:
    """``root``, the members of its process group, and all their descendants."""
    stats = _stats()
    members = {pid for pid, (_, group, _, _) in stats.items() if pid == root or group == root}
    while True:
        more = {pid for pid, (parent, _, _, _) in stats.items() if parent in members} - members
        if not more:
            return {pid: stats[pid] for pid in members if pid in stats}
        members |= more


def _signal_pids(pids: dict[int, str], sig: signal.Signals) -> None:
    for pid, comm in pids.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == comm:  # not a recycled pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a data-plane dependency
        return asyncio.run(coro)
    return uvloop.run(coro)


# -------------------------------------------------------------------------------------------- peers


def _venv(peer: str) -> Path:
    return CACHE / f"venv-{peer}"


def ensure_peer(peer: str) -> str | None:
    """Install ``peer`` into its own virtualenv unless it is there already; None, or why it is not."""
    venv, package = _venv(peer), PEER_PACKAGES[peer]
    stamp = venv / "bench-installed.txt"
    if stamp.is_file() and stamp.read_text().strip() == package:
        return None
    started = time.monotonic()
    print(f"  installing {package} into {venv} ...", flush=True)
    try:
        if not (venv / "bin" / "python").exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
            )
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             package],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        return f"pip install {package} failed: {' / '.join(tail)}"
    except (subprocess.TimeoutExpired, OSError) as e:
        return f"installing {package} failed: {e}"
    stamp.write_text(package + "\n")
    print(f"  installed {package} in {time.monotonic() - started:.1f} s", flush=True)
    return None


# ----------------------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class Subject:
    """Something to send MCP requests to: where, in which era, and which process group it is."""

    label: str
    url: str
    era: Era
    process: str


def start_upstream(processes: Processes) -> str:
    port = _free_port()
    argv = [sys.executable, "-m", "bench.mcp_upstream", "--port", str(port)]
    processes.start("upstream", argv, LOAD_CORE)
    url = f"http://{LOOPBACK}:{port}/mcp"
    _run(_until_ready(processes, "upstream", lambda http: _probe_modern(http, url)))
    return url


def start_agentkube(processes: Processes, name: str, upstream: str, command: str = AGENTKUBE) -> str:
    port, metrics = _free_port(), _free_port()
    config = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCPProxyConfig",
        "name": f"bench/{name}",
        "listen": {"port": port},
        "metrics": {"port": metrics},
        "limits": {"graceSeconds": 1},
        "upstreams": [{"kind": "http", "name": "bench", "url": upstream, "transport": "streamable-http"}],
    }
    path = processes.logs / f"{name}.json"
    path.write_bytes(orjson.dumps(config))
    argv = [command, "mcp-proxy", "--config", str(path), "--host", LOOPBACK]
    processes.start(name, argv, SUBJECT_CORE)

    async def listed(http: aiohttp.ClientSession) -> bool:
        async with http.get(f"http://{LOOPBACK}:{port}/readyz") as resp:
            if resp.status != 200:
                return False
        async with http.get(f"http://{LOOPBACK}:{metrics}/metrics") as resp:
            text = await resp.text()
        return f'agentkube_mcp_upstream_items{{kind="tools",upstream="bench"}} {TOOLS:.1f}' in text

    _run(_until_ready(processes, name, listed))
    return f"http://{LOOPBACK}:{port}/mcp"


def start_fastmcp(processes: Processes, name: str, upstream: str) -> str:
    port = _free_port()
    python = str(_venv("fastmcp") / "bin" / "python")
    processes.start(name, [python, "-c", FASTMCP_SCRIPT, upstream, str(port)], SUBJECT_CORE)
    url = f"http://{LOOPBACK}:{port}/mcp"
    _run(_until_ready(processes, name, lambda http: _probe_session(http, url)))
    return url


def start_mcp_proxy(processes: Processes, name: str, upstream: str) -> str:
    port = _free_port()
    binary = str(_venv("mcp-proxy") / "bin" / "mcp-proxy")
    bridge = [binary, "--log-level", "WARNING", "--transport", "streamablehttp", upstream]
    argv = [binary, "--host", LOOPBACK, "--port", str(port), "--log-level", "WARNING", "--", *bridge]
    processes.start(name, argv, SUBJECT_CORE)
    url = f"http://{LOOPBACK}:{port}/mcp"
    _run(_until_ready(processes, name, lambda http: _probe_session(http, url)))
    return url


async def _until_ready(
    processes: Processes, name: str, probe: Callable[[aiohttp.ClientSession], Coroutine[Any, Any, bool]]
) -> None:
    deadline = time.monotonic() + READY_WITHIN
    last = "never answered"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while time.monotonic() < deadline:
            if processes.running[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {processes.running[name].returncode}")
            try:
                if await probe(http):
                    return
                last = "not ready yet"
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.1)  # a poll interval against a deadline
    raise RuntimeError(f"{name} not ready within {READY_WITHIN:g} s ({last})")


async def _probe_modern(http: aiohttp.ClientSession, url: str) -> bool:
    body = _request(0, "server/discover", {"_meta": ENVELOPE})
    headers = _modern_headers("server/discover", None)
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status == 200


async def _probe_session(http: aiohttp.ClientSession, url: str) -> bool:
    headers = await open_session(http, url)
    await close_session(http, url, headers)
    return True


# ---------------------------------------------------------------------------------- the MCP client


def _request(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def _modern_headers(method: str, name: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": ACCEPT, "MCP-Protocol-Version": MODERN}
    headers["Mcp-Method"] = method
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def messages(content_type: str, data: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a response body, JSON or SSE."""
    if content_type == "text/event-stream":
        found = []
        for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
            lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
            if lines:
                found.append(orjson.loads(b"\n".join(lines)))
        return found
    return [orjson.loads(data)] if data else []


def _result(content_type: str, data: bytes) -> dict[str, Any]:
    for message in messages(content_type, data):
        if "result" in message:
            result: dict[str, Any] = message["result"]
            return result
        if "error" in message:
            raise RuntimeError(f"JSON-RPC error {message['error']}")
    raise RuntimeError(f"no response in {data[:200]!r}")


async def open_session(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """Start a session-era session (initialize, notifications/initialized): the headers of its calls."""
    params = {
        "protocolVersion": SESSION_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "bench.mcp_proxy", "version": "1"},
    }
    base = {"Content-Type": "application/json", "Accept": ACCEPT}
    async with http.post(url, data=_request(0, "initialize", params), headers=base) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"initialize: HTTP {resp.status}: {data[:200]!r}")
        session = resp.headers.get("Mcp-Session-Id")
        result = _result(resp.content_type, data)
    headers = {**base, "MCP-Protocol-Version": str(result.get("protocolVersion") or SESSION_VERSION)}
    if session:
        headers["Mcp-Session-Id"] = session
    note = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    async with http.post(url, data=note, headers=headers) as resp:
        await resp.read()
        if resp.status not in (200, 202):
            raise RuntimeError(f"notifications/initialized: HTTP {resp.status}")
    return headers


async def close_session(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
    if "Mcp-Session-Id" in headers:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.delete(url, headers=headers) as resp:
                await resp.read()


# ---------------------------------------------------------------------------------- load generator


@dataclass(frozen=True)
class Operation:
    """One kind of request the workers repeat, and how to tell its answer is right."""

    method: str
    params: dict[str, Any]
    name: str | None
    check: Callable[[dict[str, Any]], bool]

    def parts(self, era: Era) -> tuple[bytes, bytes]:
        """The body around the request id, encoded once per window."""
        params = {**self.params, "_meta": ENVELOPE} if era == "modern" else self.params
        tail = orjson.dumps({"method": self.method, "params": params})
        return b'{"jsonrpc":"2.0","id":', b"," + tail[1:]


def _text(result: dict[str, Any]) -> str:
    content = result.get("content") or [{}]
    return str(content[0].get("text", "")) if not result.get("isError") else ""


CALL = Operation(
    "tools/call", {"name": "echo", "arguments": {"text": "hello"}}, "echo", lambda r: _text(r) == "hello"
)
LIST = Operation("tools/list", {}, None, lambda r: len(r.get("tools") or ()) == TOOLS)
BIG = Operation("tools/call", {"name": "big", "arguments": {}}, "big", lambda r: len(_text(r)) == BIG_BYTES)


@dataclass
class Window:
    """What one measured span saw."""

    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    subject_cpu: float = float("nan")
    """The subject's share of a core over the measured span (1.0: a whole core)."""
    load_cpu: float = float("nan")
    """This process's and the upstream's share of a core (both run on the load core)."""
    others_cpu: float = float("nan")
    """What processes not started here took of the subject's core (of the load core for direct):
    the machine is shared, and a figure taken while this is high is low for that reason."""

    def fail(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def cpu_per_request_us(self) -> float:
        """The subject's CPU time per answered request: the figure least moved by a shared machine."""
        return self.subject_cpu * self.seconds / len(self.latencies) * 1e6 if self.latencies else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


CpuMeter = Callable[[], tuple[float, float, float]]
"""CPU seconds so far of (the subject, the load core's processes, everything on the subject's core)."""


async def measure(
    subject: Subject, op: Operation, workers: int, warmup: float, seconds: float, cpu: CpuMeter
) -> Window:
    """``workers`` clients in a closed loop for ``warmup`` + ``seconds``; the second span is measured."""
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as http:
        if subject.era == "session":
            sessions = list(await asyncio.gather(*(open_session(http, subject.url) for _ in range(workers))))
        else:
            sessions = [_modern_headers(op.method, op.name)] * workers
        window = Window(seconds)
        warm_end = time.perf_counter() + warmup
        end = warm_end + seconds
        head, tail = op.parts(subject.era)
        direct = subject.process == "upstream"

        async def worker(headers: dict[str, str]) -> None:
            failures = 0
            for i in range(1, MAX_REQUESTS_PER_WORKER + 1):
                started = time.perf_counter()
                if started >= end or failures >= MAX_ERRORS_PER_WORKER:
                    return
                try:
                    async with http.post(subject.url, data=head + b"%d" % i + tail, headers=headers) as resp:
                        data = await resp.read()
                        status, content_type = resp.status, resp.content_type
                except (aiohttp.ClientError, TimeoutError) as e:
                    failures += 1
                    window.fail(f"{type(e).__name__}: {e}")
                    continue
                done = time.perf_counter()
                why = _wrong(op, status, content_type, data, thorough=i == 1)
                if why:
                    failures += 1
                    window.fail(why)
                elif warm_end <= done <= end:
                    window.latencies.append(done - started)

        async def meter() -> None:
            await asyncio.sleep(max(0.0, warm_end - time.perf_counter()))
            before, started = cpu(), time.perf_counter()
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            after, span = cpu(), time.perf_counter() - started
            used = [(a - b) / span for a, b in zip(after, before, strict=True)]
            window.subject_cpu, window.load_cpu, core = used
            window.others_cpu = max(0.0, core - (window.load_cpu if direct else window.subject_cpu))

        try:
            await asyncio.gather(meter(), *(worker(h) for h in sessions))
        finally:
            await asyncio.gather(*(close_session(http, subject.url, h) for h in sessions))
    return window


def _wrong(op: Operation, status: int, content_type: str, data: bytes, *, thorough: bool) -> str:
    """Why an answer is not the expected one ('' when it is); the first of each worker is read whole."""
    if status != 200:
        return f"HTTP {status}: {data[:200]!r}"
    if thorough:
        try:
            return "" if op.check(_result(content_type, data)) else f"unexpected result {data[:200]!r}"
        except (RuntimeError, ValueError) as e:
            return str(e)
    head = data[:256]
    return "" if b'"result":' in head and b'"error":' not in head else f"not a result: {head!r}"


async def open_many(url: str, count: int) -> tuple[int, float]:
    """Up to ``count`` sessions (fewer if ``SESSIONS_WITHIN`` passes), each initialized and used for
    one call, left open: how many, and the seconds it took."""
    head, tail = CALL.parts("session")
    slots = iter(range(count))
    opened = 0
    started = time.perf_counter()
    deadline = started + SESSIONS_WITHIN
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=SESSION_WORKERS), timeout=REQUEST_TIMEOUT
    ) as http:

        async def worker() -> None:
            nonlocal opened
            for i in slots:
                if time.perf_counter() > deadline:
                    return
                headers = await open_session(http, url)
                async with http.post(url, data=head + b"%d" % (i + 1) + tail, headers=headers) as resp:
                    why = _wrong(CALL, resp.status, resp.content_type, await resp.read(), thorough=True)
                if why:
                    raise RuntimeError(f"session {i}: {why}")
                opened += 1

        await asyncio.gather(*(worker() for _ in range(SESSION_WORKERS)))
    return opened, time.perf_counter() - started


async def one_listing(subject: Subject) -> None:
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
        if subject.era == "session":
            headers = await open_session(http, subject.url)
        else:
            headers = _modern_headers("tools/list", None)
        head, tail = LIST.parts(subject.era)
        async with http.post(subject.url, data=head + b"1" + tail, headers=headers) as resp:
            why = _wrong(LIST, resp.status, resp.content_type, await resp.read(), thorough=True)
        await close_session(http, subject.url, headers)
    if why:
        raise RuntimeError(f"tools/list through {subject.label}: {why}")


# ------------------------------------------------------------------------------------------ figures

DIRECT, AK_MODERN, AK_SESSION, FASTMCP, MCP_PROXY = (
    "direct", "agentkube 2026-07-28", "agentkube session", "FastMCP proxy", "mcp-proxy",
)  # fmt: skip
COLUMNS = (DIRECT, AK_MODERN, AK_SESSION, FASTMCP, MCP_PROXY)


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    op: Operation
    workers: int
    subjects: tuple[str, ...]
    scale: float = 1.0
    """Of the window's length: one worker's latencies settle sooner."""


@dataclass
class Results:
    windows: dict[tuple[str, str], list[Window]] = field(default_factory=dict)
    rss: dict[str, tuple[float, float, int, int, float]] = field(default_factory=dict)
    """subject -> (idle MiB, MiB with the sessions, processes, sessions opened, seconds that took)."""
    missing: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    retried: int = 0

    def median(self, key: str, subject: str, value: Callable[[Window], float]) -> float | None:
        windows = self.windows.get((key, subject))
        return statistics.median(value(w) for w in windows) if windows else None


def _figures(workers: int) -> list[Figure]:
    proxies = (DIRECT, AK_MODERN, AK_SESSION)
    return [
        Figure("call", f"tools/call echo, {workers} workers", CALL, workers, COLUMNS),
        Figure("call1", "tools/call echo, 1 worker", CALL, 1, COLUMNS, scale=0.5),
        Figure("list", f"tools/list ({TOOLS} tools), {workers} workers", LIST, workers, proxies),
        Figure("big", f"tools/call 1 MiB result, {BIG_WORKERS} workers", BIG, BIG_WORKERS, proxies),
    ]


def _rss_phase(processes: Processes, upstream: str, args: argparse.Namespace, results: Results) -> None:
    sessions = args.sessions
    starters: dict[str, Callable[[Processes, str, str], str]] = {
        AK_SESSION: functools.partial(start_agentkube, command=args.agentkube),
        FASTMCP: start_fastmcp,
        MCP_PROXY: start_mcp_proxy,
    }
    for label, start in starters.items():
        if label in results.missing:
            continue
        name = f"rss-{label.split()[0].lower()}"
        try:
            url = start(processes, name, upstream)
            _run(one_listing(Subject(label, url, "session", name)))
            idle, _ = processes.rss_mib(name)
            opened, took = _run(open_many(url, sessions))
            loaded, count = processes.rss_mib(name)
            results.rss[label] = (idle, loaded, count, opened, took)
            print(
                f"  RSS {label}: idle {idle:.1f} MiB, {opened} sessions {loaded:.1f} MiB "
                f"({count} process{'es' if count > 1 else ''}; sessions opened in {took:.1f} s)",
                flush=True,
            )
        except (RuntimeError, aiohttp.ClientError, TimeoutError, OSError) as e:
            print(f"  RSS {label}: failed: {e}\n{processes.log_tail(name)}", flush=True)
        finally:
            processes.stop(name)


def _print_window(run: int, key: str, label: str, window: Window, attempt: int) -> None:
    flag = f"  !! {window.errors} errors, first: {window.first_error}" if window.errors else ""
    again = " (again: others were busy)" if attempt else ""
    print(
        f"  run {run} {key:5} {label:21} {window.rps:9,.0f} req/s  "
        f"p50 {window.percentile(0.5):7.2f} ms  p99 {window.percentile(0.99):7.2f} ms  "
        f"cpu: subject {window.subject_cpu:4.0%}, load core {window.load_cpu:4.0%}, "
        f"others {window.others_cpu:4.0%}{again}{flag}",
        flush=True,
    )


def _cpu(processes: Processes, name: str) -> tuple[float, float, float]:
    core = LOAD_CORE if name == "upstream" else SUBJECT_CORE
    load = time.process_time() + processes.cpu_seconds("upstream")
    return processes.cpu_seconds(name), load, _core_busy(core)


def _core_busy(core: int) -> float:
    """Seconds ``core`` has been busy since boot (everything but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith(f"cpu{core} "):
                ticks = [int(v) for v in line.split()[1:]]
                return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICK
    return float("nan")


def _load_phase(
    processes: Processes, upstream: str, args: argparse.Namespace, results: Results
) -> dict[str, Subject]:
    subjects = {DIRECT: Subject(DIRECT, upstream, "modern", "upstream")}
    try:
        url = start_agentkube(processes, "agentkube", upstream, args.agentkube)
        subjects[AK_MODERN] = Subject(AK_MODERN, url, "modern", "agentkube")
        subjects[AK_SESSION] = Subject(AK_SESSION, url, "session", "agentkube")
    except RuntimeError as e:
        print(f"  agentkube could not start: {e}\n{processes.log_tail('agentkube')}", flush=True)
    peers = ((FASTMCP, "fastmcp", start_fastmcp), (MCP_PROXY, "mcp-proxy", start_mcp_proxy))
    for label, name, start in peers:
        if label in results.missing:
            continue
        try:
            subjects[label] = Subject(label, start(processes, name, upstream), "session", name)
        except RuntimeError as e:
            results.missing[label] = f"did not start: {e}"
            print(f"  {label} could not start: {e}\n{processes.log_tail(name)}", flush=True)
            processes.stop(name)
    if "agentkube" in processes.running:
        idle, _ = processes.rss_mib("agentkube")
        results.extra.append(f"agentkube (load instance) RSS before load: {idle:.1f} MiB")
    retry_budget = RETRY_SECONDS
    for run in range(1, args.runs + 1):
        for figure in _figures(args.workers):
            for label in figure.subjects:
                subject = subjects.get(label)
                if subject is None:
                    continue
                warmup, seconds = args.warmup * figure.scale, args.seconds * figure.scale
                cpu = functools.partial(_cpu, processes, subject.process)
                best: Window | None = None
                for attempt in range(1 + RETRIES):
                    window = _run(measure(subject, figure.op, figure.workers, warmup, seconds, cpu))
                    _print_window(run, figure.key, label, window, attempt)
                    if best is None or window.others_cpu < best.others_cpu:
                        best = window
                    if best.others_cpu <= NOISY or retry_budget < warmup + seconds:
                        break
                    retry_budget -= warmup + seconds
                    results.retried += 1
                assert best is not None
                results.windows.setdefault((figure.key, label), []).append(best)
    if "agentkube" in processes.running:
        after, _ = processes.rss_mib("agentkube")
        results.extra.append(f"agentkube (load instance) RSS after all load: {after:.1f} MiB")
    return subjects


# ------------------------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _rss_cell(rss: tuple[float, float, int, int, float] | None, index: int, wanted: int) -> str:
    if rss is None:
        return "-"
    cell = f"{rss[index]:.1f}"
    if index == 1 and rss[3] < wanted:
        cell += f" ({rss[3]} sessions)"  # SESSIONS_WITHIN passed first
    return cell


def report(results: Results, args: argparse.Namespace) -> None:
    workers = args.workers
    rps: Callable[[Window], float] = lambda w: w.rps  # noqa: E731
    p50: Callable[[Window], float] = lambda w: w.percentile(0.5)  # noqa: E731
    p99: Callable[[Window], float] = lambda w: w.percentile(0.99)  # noqa: E731
    rows: list[tuple[str, str, Callable[[Window], float], str]] = [
        (f"tools/call req/s ({workers} workers)", "call", rps, ",.0f"),
        (f"tools/call p50 ms ({workers} workers)", "call", p50, ".2f"),
        (f"tools/call p99 ms ({workers} workers)", "call", p99, ".2f"),
        ("tools/call req/s (1 worker)", "call1", rps, ",.0f"),
        ("tools/call p50 ms (1 worker)", "call1", p50, ".3f"),
        ("tools/call p99 ms (1 worker)", "call1", p99, ".3f"),
        (f"tools/list req/s ({workers} workers)", "list", rps, ",.0f"),
        (f"tools/list p50 ms ({workers} workers)", "list", p50, ".2f"),
        (f"1 MiB call req/s ({BIG_WORKERS} workers)", "big", rps, ",.1f"),
        (f"1 MiB call p50 ms ({BIG_WORKERS} workers)", "big", p50, ".2f"),
        (f"subject CPU % (tools/call, {workers} w.)", "call", lambda w: 100 * w.subject_cpu, ".0f"),
        (f"subject CPU us/request (call, {workers} w.)", "call", lambda w: w.cpu_per_request_us, ",.0f"),
        (f"subject CPU us/request (list, {workers} w.)", "list", lambda w: w.cpu_per_request_us, ",.0f"),
        (f"subject CPU us/request (1 MiB, {BIG_WORKERS} w.)", "big", lambda w: w.cpu_per_request_us, ",.0f"),
        (f"others' CPU % on its core (call, {workers} w.)", "call", lambda w: 100 * w.others_cpu, ".0f"),
    ]
    width = 40
    print()
    print(
        f"medians of {args.runs} runs ({args.seconds:g} s measured after {args.warmup:g} s warm-up each; "
        "1-worker windows half that)"
    )
    print(f"{'figure':{width}}" + "".join(f"{c:>22}" for c in COLUMNS))
    for title, key, value, spec in rows:
        cells = [_fmt(results.median(key, c, value), spec) for c in COLUMNS]
        print(f"{title:{width}}" + "".join(f"{cell:>22}" for cell in cells))
    for index, title in ((0, "RSS MiB idle"), (1, f"RSS MiB, {args.sessions} sessions")):
        cells = [_rss_cell(results.rss.get(c), index, args.sessions) for c in COLUMNS]
        if AK_SESSION in results.rss:
            cells[1] = cells[2]  # one agentkube process serves both eras
        print(f"{title:{width}}" + "".join(f"{cell:>22}" for cell in cells))
    errors = sum(w.errors for ws in results.windows.values() for w in ws)
    noisy = sum(w.others_cpu > NOISY for ws in results.windows.values() for w in ws)
    print(f"(errors over all windows: {errors}; RSS is of fresh instances, all processes of a subject)")
    print(
        f"(windows taken again because other processes were busy: {results.retried}; windows counted "
        f"while others still took > {NOISY:.0%} of the subject's core: {noisy})"
    )
    for line in results.extra:
        print(f"({line})")
    for label, why in results.missing.items():
        print(f"({label}: not measured: {why})")

    def get(key: str, subject: str, value: Callable[[Window], float]) -> float | None:
        return results.median(key, subject, value)

    goals: list[tuple[str, str, bool | None]] = []

    def goal(text: str, figure: float | None, spec: str, met: Callable[[float], bool]) -> None:
        goals.append((text, _fmt(figure, spec), None if figure is None else met(figure)))

    direct_p50 = get("call1", DIRECT, p50)
    for label in (AK_MODERN, AK_SESSION):
        era = label.split()[1]
        added = get("call1", label, p50)
        goal(
            f"added p50 latency <= 1 ms over direct ({era}, 1 worker)",
            None if added is None or direct_p50 is None else added - direct_p50,
            "+.3f",
            lambda v: v <= 1.0,
        )
    direct_n = get("call", DIRECT, p50)
    for label in (AK_MODERN, AK_SESSION):
        loaded = get("call", label, p50)
        goals.append(
            (
                f"  (added p50 under load, {label.split()[1]}, {workers} workers; info)",
                _fmt(None if loaded is None or direct_n is None else loaded - direct_n, "+.2f"),
                None,
            )
        )
    for key, what in (("call", "tools/call"), ("list", "tools/list"), ("big", "1 MiB call")):
        direct = get(key, DIRECT, rps)
        for label in (AK_MODERN, AK_SESSION):
            mine = get(key, label, rps)
            ratio = None if mine is None or not direct else mine / direct
            text = f"{what} throughput >= 1/3 of direct ({label.split()[1]})"
            goal(text, ratio, ".2f", lambda v: v >= 1 / 3)
    ours = get("call", AK_SESSION, rps)
    for peer, times in ((FASTMCP, 20), (MCP_PROXY, 3)):
        theirs = get("call", peer, rps)
        ratio = None if ours is None or not theirs else ours / theirs
        text = f"tools/call throughput >= {times}x {peer} (session era)"
        goal(text, ratio, ".1f", functools.partial(operator.le, times))
    modern = get("call", AK_MODERN, rps)
    for peer in (FASTMCP, MCP_PROXY):
        theirs = get("call", peer, rps)
        goals.append(
            (
                f"  (agentkube 2026-07-28 vs {peer}; info)",
                _fmt(None if modern is None or not theirs else modern / theirs, ".1f"),
                None,
            )
        )
    rss = results.rss.get(AK_SESSION)
    opened = rss[3] if rss else args.sessions
    goal(f"RSS <= 80 MiB with {opened} sessions", rss[1] if rss else None, ".1f", lambda v: v <= 80)

    print()
    print(f"{'goal':70}{'figure':>12}  verdict")
    for text, figure, met in goals:
        verdict = {True: "met", False: "MISSED", None: "" if text.startswith("  (") else "n/a"}[met]
        print(f"{text:70}{figure:>12}  {verdict}")


# --------------------------------------------------------------------------------------------- main


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally that ends every process


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mcp_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each figure (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per window (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per window (default 1)")
    parser.add_argument("--workers", type=int, default=32, help="concurrent workers (default 32)")
    parser.add_argument(
        "--sessions", type=int, default=1000, help="sessions for the RSS figure (default 1000)"
    )
    parser.add_argument(
        "--agentkube", default=AGENTKUBE, help="the agentkube console script to measure (default: the venv's)"
    )
    parser.add_argument("--skip-peers", action="store_true", help="measure agentkube and direct only")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    cores = os.sched_getaffinity(0)
    pin = {LOAD_CORE, SUBJECT_CORE} <= cores
    print(
        f"bench.mcp_proxy: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        + ("load generator and upstream on core 0, subject on core 1" if pin else "NOT pinned (< 2 cores)"),
        flush=True,
    )
    results = Results()
    logs = Path(tempfile.mkdtemp(prefix="agentkube-bench-mcp-"))
    processes = Processes(logs, pin)
    try:
        for peer, label in (("fastmcp", FASTMCP), ("mcp-proxy", MCP_PROXY)):
            why = "--skip-peers" if args.skip_peers else ensure_peer(peer)
            if why:
                results.missing[label] = why
                print(f"  {label}: {why}; going on without it", flush=True)
        if pin:
            os.sched_setaffinity(0, {LOAD_CORE})  # what `taskset -c 0` does, for this process
        upstream = start_upstream(processes)
        _rss_phase(processes, upstream, args, results)
        _load_phase(processes, upstream, args, results)
    except KeyboardInterrupt:
        print("interrupted: ending every process started here", flush=True)
        sys.exit(130)  # through the finally
    finally:
        processes.stop_all()
    report(results, args)
    print(f"\n(total {time.monotonic() - started:.0f} s; logs in {logs}; "
          f"load average {os.getloadavg()[0]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
