"""The LLM gateway: what ``agentkube llm-gateway`` costs over talking to the model server directly,
against LiteLLM's proxy.

    python -m bench.llm_gateway [--runs 3] [--seconds 4] [--warmup 1] [--connections 32]
                                [--rate 200] [--rate-seconds 5] [--rss-requests 10000]
                                [--agentkube PATH] [--skip-litellm]

(``--agentkube`` measures another build's console script, for an A/B in one run of the same machine.)

One run, one machine, every subject measured the same way in the same run:

- the upstream is ``bench.llm_upstream``: a bare asyncio HTTP server answering one fixed Chat
  Completion, or one fixed SSE stream of 16 content chunks (plus role, finish, usage and ``[DONE]``),
  so that it is never what a figure measures;
- the subjects: the upstream itself ("direct"); agentkube's gateway (``provider: openai`` with the
  upstream as ``endpoint``, ``auth.mode: apikey`` with one client, defaults otherwise: it logs its one
  line per request at its default level, info, as it runs in a cluster); LiteLLM's proxy
  (``litellm[proxy]`` ``LITELLM_VERSION``, the newest release whose ``proxy`` extra installs from the
  registry here: pip finds no install for 1.108.8 to 1.109.3, 1.109.3 pinning a
  ``litellm-proxy-extras`` it does not serve, nor for 1.110, which needs ``litellm-proxy``), one
  worker, a master key (it refuses to start without one, so both gateways check a bearer key), no
  callbacks, ``LITELLM_TELEMETRY_DISABLED``, ``LITELLM_LOG=ERROR``, spend and error logs off, the
  packaged model cost map (no fetch). LiteLLM lives in its own virtualenv at
  ``~/.cache/agentkube/bench/litellm``, installed from PyPI by this script when missing; when it
  cannot be installed or run the reason is printed and it is left out.
- load generators, both on the load core: ``wrk`` (Debian's package; when not on PATH it is fetched
  with ``apt-get download`` and unpacked with ``dpkg -x`` into ``~/.cache/agentkube/bench/wrk``, with
  the libraries it lacks, no root needed) for saturation, one thread, ``--connections`` keep-alive
  connections, a Lua script for the POST body; and, since wrk has no fixed-rate mode, an open-loop
  client in this process (aiohttp on uvloop) that starts requests on a fixed schedule whatever the
  answers do, for latency and time to first token.

Cores (2): the load generators and the upstream share core 0 (``taskset -c 0``); the gateway under
test has core 1 to itself (``taskset -c 1``). So a gateway is charged only for its own work, never
the upstream's, and "direct" is the upstream with the load generator on one core: the most the load
core can produce, the ceiling a gateway's throughput is measured against. The saturation figures
also show "direct (core 1)": a second upstream alone on core 1, what one core of the fake server
does (info). Beside each saturation window the load core's busy share is printed: well under 100%
while a gateway is measured means the load core and the upstream had headroom.

Figures (median of ``--runs`` runs; the runs are interleaved, each runs every figure for every
subject, so drift hits every subject alike):

1. saturation, non-streaming chat completions: wrk's requests/s (and its p50), and the subject's
   CPU time per request;
2. saturation, streaming (``stream: true``, ``stream_options.include_usage``): wrk's requests/s,
   each a whole stream;
3. latency at a fixed ``--rate`` (200 req/s) for ``--rate-seconds`` after a 1 s warm-up at that
   rate, non-streaming: p50/p99 from the request's start to the whole answer; the added latency is
   the subject's minus direct's. A subject that cannot keep the rate queues: while ``MAX_IN_FLIGHT``
   of its answers are pending the schedule's starts are skipped (counted and printed), so its
   figures are those of a queue that long, and "served" says how many answers per second it gave;
4. the same for streams: time to first token (the first SSE event whose ``delta.content`` is not
   empty) p50/p99, and the whole stream's p50;
5. RSS (all processes of a subject, from /proc) of each gateway, started fresh: after one request of
   each kind, then after ``--rss-requests`` non-streaming ones (32 at a time; the goals are judged
   here), and for agentkube after as many streams again (is any growth a warm-up or a leak? LiteLLM
   streams about 15 a second here, so it is spared that step). Those instances then serve the load
   figures, and their RSS after all of it is printed too.

Beside each window: what processes not started here took of core 1 (the machine may be shared: a
window taken while "others" exceeds ``NOISY`` is taken again, twice at most and within a minute for
the whole run, and the least disturbed one counts), and the errors (non-2xx, wrong or cut answers).

Goals (2 cores): added p50 <= 1 ms and added p99 <= 5 ms at 200 req/s; saturation >= 20x LiteLLM's
and >= 1/5 of direct; RSS after the requests <= 1/4 of LiteLLM's, and flat: grown by <= 10% over the
requests. A run takes about 8 minutes, LiteLLM's share of it most (it serves under 100 requests/s
here: 10,000 requests are 2-3 minutes, and its 200 req/s windows queue and drain for a while).
Every process started here runs in its own process group and is ended at the end, also on an
error, Ctrl-C or SIGTERM. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.llm_upstream import CONTENT, MODEL
from bench.mcp_proxy import Processes, _core_busy, _free_port, _run, _terminate

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "agentkube" / "bench"
AGENTKUBE = str(Path(sys.executable).with_name("agentkube"))
LOOPBACK = "127.0.0.1"
LOAD_CORE, SUBJECT_CORE = 0, 1
LITELLM_VERSION = "1.108.7"
LITELLM_PACKAGE = f"litellm[proxy]=={LITELLM_VERSION}"
CLIENT_KEY = "sk-bench-client-0123456789abcdef"
UPSTREAM_KEY = "sk-bench-upstream-0123456789abcdef"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"}
CHAT_PATH = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
    {"role": "user", "content": "Say hello to the benchmark, and tell it which model you are."},
]
BODY = orjson.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 64})
STREAM_BODY = orjson.dumps(
    {"model": MODEL, "messages": MESSAGES, "max_tokens": 64, "stream": True,
     "stream_options": {"include_usage": True}}
)  # fmt: skip
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)
READY_WITHIN = 120.0
DRAIN_WITHIN = 30.0
"""After a fixed-rate window's last start, how long its answers are waited for (then: errors)."""
MAX_IN_FLIGHT = 128
"""A fixed-rate window skips its starts while this many are unanswered: the subject cannot keep the
rate (it is saturated) and more would only lengthen the queue it drains afterwards."""
RSS_WORKERS = 32
NOISY = 0.10
RETRIES = 2
RETRY_SECONDS = 60.0
FLAT = 0.10
"""RSS counts as flat when it grew by at most this share over the requests."""
WRK_SCRIPT = """-- written by bench.llm_gateway
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = [[{body}]]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH {{"requests":%d,"us":%d,"errors":%d,"status":%d,"p50":%d,"p99":%d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""
LITELLM_CONFIG = """# written by bench.llm_gateway
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {upstream}/v1
      api_key: {upstream_key}
litellm_settings:
  callbacks: []
  success_callback: []
  failure_callback: []
  turn_off_message_logging: true
  set_verbose: false
general_settings:
  master_key: {client_key}
  disable_spend_logs: true
  disable_error_logs: true
"""
LITELLM_ENV = {
    "LITELLM_TELEMETRY_DISABLED": "true",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOG": "ERROR",
}


DIRECT, DIRECT_C1, AGENTKUBE_LABEL, LITELLM = "direct", "direct (core 1)", "agentkube", "LiteLLM"
COLUMNS = (DIRECT, DIRECT_C1, AGENTKUBE_LABEL, LITELLM)


# -------------------------------------------------------------------------------------------- tools


def _run_quiet(argv: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _failure(e: BaseException) -> str:
    if isinstance(e, subprocess.CalledProcessError):
        tail = (e.stderr or e.stdout or "").strip().splitlines()[-3:]
        return f"{' '.join(map(str, e.cmd))[:80]} failed: {' / '.join(tail)}"
    return f"{type(e).__name__}: {e}"


def ensure_wrk() -> tuple[str | None, str]:
    """The wrk to run (on PATH, or Debian's unpacked into the cache), or None and why not."""
    found = shutil.which("wrk")
    if found:
        return found, f"{found} (on PATH)"
    home = CACHE / "wrk"
    wrapper = home / "bin" / "wrk"
    stamp = home / "bench-installed.txt"
    if stamp.is_file() and wrapper.exists() and _wrk_version(str(wrapper)):
        return str(wrapper), f"{wrapper} ({stamp.read_text().strip()})"
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        return None, "wrk is not on PATH and there is no apt-get/dpkg to fetch Debian's; install wrk"
    print(f"  fetching Debian's wrk into {home} ...", flush=True)
    try:
        return _unpack_wrk(home, wrapper, stamp)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, RuntimeError) as e:
        return None, f"could not unpack Debian's wrk: {_failure(e)}"


def _installed(package: str) -> bool:
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True
    )
    return query.stdout == "installed"


def _unpack_wrk(home: Path, wrapper: Path, stamp: Path) -> tuple[str, str]:
    # wrk and every library package it needs (transitively) that this machine lacks; an alternative
    # of an or-group may be fetched needlessly, ldd below decides.
    wanted, level = ["wrk"], ["wrk"]
    while level:
        depends = _run_quiet(["apt-cache", "depends", "--no-recommends", "--no-suggests", *level], 60).stdout
        level = []
        for dep in re.findall(r"^\s*\|?(?:Pre)?Depends: <?([^\s>]+)>?$", depends, re.MULTILINE):
            if dep.startswith("lib") and dep not in wanted and not _installed(dep):
                wanted.append(dep)
                level.append(dep)
    staged = Path(tempfile.mkdtemp(prefix=".staged-", dir=home.parent if home.parent.exists() else None))
    try:
        debs, root = staged / "debs", staged / "root"
        debs.mkdir()
        # As root, apt hands the download to its _apt user, who cannot write under root's home.
        sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
        download = ["apt-get", "download", "-q", *sandbox, *wanted]
        try:
            _run_quiet(download, 300, cwd=debs)
        except subprocess.CalledProcessError:
            if os.geteuid() != 0:
                raise
            _run_quiet(["apt-get", "update", "-qq"], 300)  # stale lists: refreshed once, as root
            _run_quiet(download, 300, cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            _run_quiet(["dpkg", "-x", str(deb), str(root)], 60)
        if not (root / "usr" / "bin" / "wrk").exists():
            raise RuntimeError("the wrk package holds no usr/bin/wrk")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        (root).rename(home / "root")
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    libdirs = sorted({str(p.parent) for p in (home / "root").rglob("*.so*")})
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n# Written by bench.llm_gateway: Debian's wrk with the libraries unpacked beside it.\n"
        f'LD_LIBRARY_PATH="{":".join(libdirs)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
        f'exec "{home / "root" / "usr" / "bin" / "wrk"}" "$@"\n'
    )
    wrapper.chmod(0o755)
    version = _wrk_version(str(wrapper))
    if not version:
        ldd = subprocess.run(
            ["ldd", str(home / "root" / "usr" / "bin" / "wrk")], capture_output=True, text=True
        )
        missing = [line.split()[0] for line in ldd.stdout.splitlines() if "not found" in line]
        raise RuntimeError(f"the unpacked wrk does not run (missing libraries: {missing or 'none'})")
    stamp.write_text(version + "\n")
    return str(wrapper), f"{wrapper} ({version}, unpacked now)"


def _wrk_version(wrk: str) -> str:
    try:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].split(" Copyright")[0].strip() if first and first[0].startswith("wrk ") else ""


def ensure_litellm() -> str | None:
    """Install LiteLLM's proxy into its own virtualenv unless it is there already; None, or why not."""
    venv = CACHE / "litellm"
    stamp = venv / "bench-installed.txt"
    if stamp.is_file() and stamp.read_text().strip() == LITELLM_PACKAGE:
        return None
    started = time.monotonic()
    print(f"  installing {LITELLM_PACKAGE} into {venv} (a minute or two) ...", flush=True)
    try:
        if not (venv / "bin" / "python").exists():
            _run_quiet([sys.executable, "-m", "venv", str(venv)], 120)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run_quiet([*pip, LITELLM_PACKAGE], 900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        return f"installing {LITELLM_PACKAGE} failed: {_failure(e)}"
    stamp.write_text(LITELLM_PACKAGE + "\n")
    print(f"  installed {LITELLM_PACKAGE} in {time.monotonic() - started:.0f} s", flush=True)
    return None


# ----------------------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class Subject:
    label: str
    url: str
    """Base URL; requests go to ``url + CHAT_PATH``."""
    process: str


class Lab:
    """The processes of one run and which core each is pinned to."""

    def __init__(self, logs: Path, pin: bool) -> None:
        self.logs = logs
        self.processes = Processes(logs, pin)
        self.cores: dict[str, int] = {}

    def start(self, name: str, argv: list[str], core: int) -> None:
        self.processes.start(name, argv, core)
        self.cores[name] = core

    def stop(self, name: str) -> None:
        self.processes.stop(name)
        self.cores.pop(name, None)

    def cpu(self, name: str) -> float:
        return self.processes.cpu_seconds(name) if name in self.processes.running else 0.0

    def on_core(self, core: int) -> float:
        """CPU seconds so far of every process started here on ``core``."""
        return sum(self.cpu(name) for name, c in self.cores.items() if c == core)


def start_upstream(lab: Lab, name: str, core: int) -> str:
    port = _free_port()
    lab.start(name, [sys.executable, "-m", "bench.llm_upstream", "--port", str(port)], core)
    url = f"http://{LOOPBACK}:{port}"
    _run(_until_ready(lab, name, url))
    return url


def start_agentkube(lab: Lab, name: str, upstream: str, command: str) -> str:
    port, metrics = _free_port(), _free_port()
    config = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "LLMGatewayConfig",
        "name": f"bench/{name}",
        "listen": {"port": port},
        "metrics": {"port": metrics},
        "limits": {"graceSeconds": 1},
        "auth": {"mode": "apikey", "clients": [{"id": "bench", "keyEnv": "BENCH_CLIENT_KEY"}]},
        "upstreams": [
            {"name": "bench", "provider": "openai", "endpoint": f"{upstream}/v1",
             "apiKeyEnv": "BENCH_UPSTREAM_KEY", "models": [MODEL]}
        ],
    }  # fmt: skip
    path = lab.logs / f"{name}.json"
    path.write_bytes(orjson.dumps(config))
    env = ["env", f"BENCH_CLIENT_KEY={CLIENT_KEY}", f"BENCH_UPSTREAM_KEY={UPSTREAM_KEY}"]
    lab.start(name, [*env, command, "llm-gateway", "--config", str(path), "--host", LOOPBACK], SUBJECT_CORE)
    url = f"http://{LOOPBACK}:{port}"
    _run(_until_ready(lab, name, url))
    return url


def start_litellm(lab: Lab, name: str, upstream: str) -> str:
    port = _free_port()
    path = lab.logs / f"{name}.yaml"
    path.write_text(
        LITELLM_CONFIG.format(
            model=MODEL, upstream=upstream, upstream_key=UPSTREAM_KEY, client_key=CLIENT_KEY
        )
    )
    binary = str(CACHE / "litellm" / "bin" / "litellm")
    env = ["env", *(f"{k}={v}" for k, v in LITELLM_ENV.items())]
    argv = [
        *env,
        binary,
        "--config",
        str(path),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    lab.start(name, argv, SUBJECT_CORE)
    url = f"http://{LOOPBACK}:{port}"
    _run(_until_ready(lab, name, url))
    return url


async def _until_ready(lab: Lab, name: str, url: str) -> None:
    """Until one non-streaming chat completion through ``url`` is answered right."""
    deadline = time.monotonic() + READY_WITHIN
    last = "never answered"
    process = lab.processes.running[name]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
            try:
                async with http.post(url + CHAT_PATH, data=BODY, headers=HEADERS) as resp:
                    why = _wrong_answer(resp.status, await resp.read(), thorough=True)
                if not why:
                    return
                last = why
            except (aiohttp.ClientError, TimeoutError) as e:
                last = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.2)  # a poll interval against a deadline
    raise RuntimeError(f"{name} not ready within {READY_WITHIN:g} s ({last})")


# --------------------------------------------------------------------------------------- answers


def _wrong_answer(status: int, data: bytes, *, thorough: bool) -> str:
    """Why a non-streaming answer is not the fixed completion ('' when it is)."""
    if status != 200:
        return f"HTTP {status}: {data[:200]!r}"
    if not thorough:
        return "" if b'"choices"' in data else f"not a completion: {data[:200]!r}"
    try:
        content = orjson.loads(data)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return f"not a completion: {data[:200]!r}"
    return "" if content == CONTENT else f"unexpected content {content!r}"


def _delta(data: bytes) -> str:
    """The ``delta.content`` of one Chat Completions stream event ('' when it has none)."""
    try:
        chunk = orjson.loads(data)
        choices = chunk.get("choices") or [{}]
        return str((choices[0].get("delta") or {}).get("content") or "")
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        return ""


# ---------------------------------------------------------------------------------------- windows


@dataclass
class Window:
    """What one measured window saw; figures in ms and requests/s, NaN when not measured."""

    rps: float = float("nan")
    p50: float = float("nan")
    p99: float = float("nan")
    ttft50: float = float("nan")
    ttft99: float = float("nan")
    served: float = float("nan")
    """Fixed-rate windows: answers per second actually completed (the rate, unless it queued)."""
    lag99: float = float("nan")
    """Fixed-rate windows: p99 of how late this client started a request against its schedule."""
    skipped: int = 0
    """Fixed-rate windows: measured starts not made, ``MAX_IN_FLIGHT`` answers being pending (the
    subject is saturated; its latencies are then those of a queue that long)."""
    subject_cpu: float = float("nan")
    load_busy: float = float("nan")
    others: float = float("nan")
    cpu_per_request_us: float = float("nan")
    errors: int = 0
    first_error: str = ""

    def fail(self, why: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or why


Meter = tuple[float, float, float, float, float]


def _meter(lab: Lab, subject: Subject) -> Meter:
    """(wall clock, the subject's CPU, all of ours on core 1, core 1 busy, core 0 busy), in seconds."""
    return (
        time.perf_counter(),
        lab.cpu(subject.process),
        lab.on_core(SUBJECT_CORE),
        _core_busy(SUBJECT_CORE),
        _core_busy(LOAD_CORE),
    )


def _charge(window: Window, before: Meter, after: Meter, answered: int) -> None:
    span = after[0] - before[0]
    window.subject_cpu = (after[1] - before[1]) / span
    window.others = max(0.0, ((after[3] - before[3]) - (after[2] - before[2])) / span)
    window.load_busy = (after[4] - before[4]) / span
    if answered:
        window.cpu_per_request_us = (after[1] - before[1]) / answered * 1e6


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def wrk_window(
    lab: Lab, wrk: str, subject: Subject, script: Path, connections: int, warmup: float, seconds: float
) -> Window:
    """wrk against ``subject`` for ``warmup`` s (not counted), then for ``seconds`` s."""
    window = Window()
    url = subject.url + CHAT_PATH
    base = [wrk, "-t1", f"-c{connections}", "--timeout", "30s", "-s", str(script)]
    if warmup > 0:
        subprocess.run([*base, f"-d{warmup:g}s", url], capture_output=True, timeout=warmup + 60)
    before = _meter(lab, subject)
    done = subprocess.run(
        [*base, f"-d{seconds:g}s", url], capture_output=True, text=True, timeout=seconds + 60
    )
    after = _meter(lab, subject)
    found = re.search(r"^BENCH (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        window.fail(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
        return window
    summary = orjson.loads(found.group(1))
    good = summary["requests"] - summary["status"] - summary["errors"]
    window.rps = good / (summary["us"] / 1e6)
    window.p50, window.p99 = summary["p50"] / 1000, summary["p99"] / 1000
    if summary["status"] or summary["errors"]:
        window.errors = summary["status"] + summary["errors"]
        window.first_error = f"{summary['status']} non-2xx answers, {summary['errors']} socket errors (wrk)"
    _charge(window, before, after, good)
    return window


async def fixed_rate(
    lab: Lab, subject: Subject, rate: float, warmup: float, seconds: float, stream: bool
) -> Window:
    """Requests started every 1/``rate`` s for ``warmup`` + ``seconds`` (open loop: a slow answer
    never delays the next start); those started after the warm-up are measured, from their start."""
    window = Window()
    url = subject.url + CHAT_PATH
    latencies: list[float] = []
    firsts: list[float] = []
    lags: list[float] = []
    in_flight = 0
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as http:

        async def one(scheduled: float, measured: bool, thorough: bool) -> None:
            nonlocal in_flight
            in_flight += 1
            started = time.perf_counter()
            try:
                if stream:
                    first, why = await _one_stream(http, url, thorough)
                else:
                    first = None
                    async with http.post(url, data=BODY, headers=HEADERS) as resp:
                        why = _wrong_answer(resp.status, await resp.read(), thorough=thorough)
            except (aiohttp.ClientError, TimeoutError) as e:
                why, first = f"{type(e).__name__}: {e}", None
            done = time.perf_counter()
            in_flight -= 1
            if why:
                window.fail(why)
            elif measured:
                latencies.append(done - started)
                lags.append(started - scheduled)
                if first is not None:
                    firsts.append(first - started)

        await asyncio.gather(*(one(0.0, False, True) for _ in range(8)))  # opens a few connections
        total = int((warmup + seconds) * rate)
        skip = int(warmup * rate)
        tasks = []
        begin = time.perf_counter() + 0.01
        for i in range(total):
            scheduled = begin + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if i == skip:
                before = _meter(lab, subject)
            if in_flight >= MAX_IN_FLIGHT:
                window.skipped += i >= skip
                continue
            tasks.append(asyncio.create_task(one(scheduled, i >= skip, i == skip)))
        if skip >= total:
            before = _meter(lab, subject)
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_WITHIN)
        after = _meter(lab, subject)
        for task in pending:
            task.cancel()
            window.fail(f"not answered within {DRAIN_WITHIN:g} s of the last start")
        await asyncio.gather(*pending, return_exceptions=True)
    window.p50, window.p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    window.ttft50, window.ttft99 = _percentile(firsts, 0.5), _percentile(firsts, 0.99)
    window.lag99 = _percentile(lags, 0.99)
    window.served = len(latencies) / (after[0] - before[0])
    _charge(window, before, after, len(latencies))
    return window


async def _one_stream(http: aiohttp.ClientSession, url: str, thorough: bool) -> tuple[float | None, str]:
    """One streamed completion: when its first token arrived, and why it is wrong ('' when right)."""
    first: float | None = None
    text: list[str] = []
    done = False
    async with http.post(url, data=STREAM_BODY, headers=HEADERS) as resp:
        if resp.status != 200:
            return None, f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
            elif first is None or thorough:
                delta = _delta(data)
                if delta and first is None:
                    first = time.perf_counter()
                text.append(delta)
    if not done or first is None:
        return None, "the stream ended without a token or without [DONE]"
    if thorough and "".join(text) != CONTENT:
        return None, f"the stream spelled {''.join(text)!r}"
    return first, ""


async def closed_loop(url: str, count: int, streams: str) -> int:
    """``count`` requests, ``RSS_WORKERS`` at a time, streamed or not (``streams``: "none", "all",
    "every other"): how many failed."""
    slots = iter(range(count))
    failed = 0
    connector = aiohttp.TCPConnector(limit=RSS_WORKERS)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as http:

        async def worker() -> None:
            nonlocal failed
            for i in slots:
                try:
                    if streams == "all" or (streams == "every other" and i % 2):
                        _, why = await _one_stream(http, url + CHAT_PATH, thorough=False)
                    else:
                        async with http.post(url + CHAT_PATH, data=BODY, headers=HEADERS) as resp:
                            why = _wrong_answer(resp.status, await resp.read(), thorough=False)
                except (aiohttp.ClientError, TimeoutError) as e:
                    why = f"{type(e).__name__}: {e}"
                failed += bool(why)

        await asyncio.gather(*(worker() for _ in range(RSS_WORKERS)))
    return failed


# ----------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    key: str
    subjects: tuple[str, ...]
    measure: Callable[[Subject], Window]


@dataclass
class Results:
    windows: dict[tuple[str, str], list[Window]] = field(default_factory=dict)
    rss: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    """subject -> [(when, MiB)]."""
    missing: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    retried: int = 0

    def median(self, key: str, subject: str, value: Callable[[Window], float]) -> float | None:
        values = [v for w in self.windows.get((key, subject), []) if (v := value(w)) == v]  # no NaN
        return statistics.median(values) if values else None


def _rss_phase(lab: Lab, subjects: dict[str, Subject], args: argparse.Namespace, results: Results) -> None:
    for label in (AGENTKUBE_LABEL, LITELLM):
        subject = subjects.get(label)
        if subject is None:
            continue
        count = args.rss_requests
        steps = [(rss_after(count), count, "none")]
        if label == AGENTKUBE_LABEL:  # LiteLLM streams about 15 a second here: 10,000 would be 11 min
            steps.append((f"+ {count:,} streamed", count, "all"))
        failed = _run(closed_loop(subject.url, 2, "every other"))  # one of each kind (and the probe)
        idle, _ = lab.processes.rss_mib(subject.process)
        points = [(RSS_BEFORE, idle)]
        print(f"  RSS {label}: {RSS_BEFORE} {idle:.1f} MiB", flush=True)
        for when, count, streams in steps:
            started = time.monotonic()
            failed += _run(closed_loop(subject.url, count, streams))
            mib, processes = lab.processes.rss_mib(subject.process)
            points.append((when, mib))
            print(
                f"  RSS {label}: {when} {mib:.1f} MiB ({processes} process"
                f"{'es' if processes > 1 else ''}; {count:,} requests in {time.monotonic() - started:.1f} s"
                f"{f', {failed} failed' if failed else ''})",
                flush=True,
            )
        results.rss[label] = points


RSS_BEFORE = "after 1 chat + 1 stream"


def rss_after(count: int) -> str:
    return f"+ {count:,} chat requests"


def _print_window(run: int, key: str, label: str, window: Window, attempt: int) -> None:
    flag = f"  !! {window.errors} errors, first: {window.first_error}" if window.errors else ""
    again = " (again: others were busy)" if attempt else ""
    if key.startswith("sat"):
        what = f"{window.rps:9,.0f} req/s  p50 {window.p50:8.2f} ms"
    elif key == "ttft":
        what = f"ttft p50 {window.ttft50:7.2f} p99 {window.ttft99:7.2f} ms, whole p50 {window.p50:7.2f} ms"
    else:
        what = f"p50 {window.p50:7.2f} ms  p99 {window.p99:7.2f} ms"
    if key in ("rate", "ttft"):
        what += f"  served {window.served:5.0f}/s  lag p99 {window.lag99:.2f} ms"
        what += f" (SATURATED: {window.skipped} starts skipped)" if window.skipped else ""
    print(
        f"  run {run} {key:8} {label:16} {what}  cpu: subject {window.subject_cpu:4.0%}, "
        f"load core {window.load_busy:4.0%}, others {window.others:4.0%}{again}{flag}",
        flush=True,
    )


def _load_phase(
    lab: Lab, wrk: str | None, subjects: dict[str, Subject], args: argparse.Namespace, results: Results
) -> None:
    scripts = {}
    for name, body in (("chat", BODY), ("stream", STREAM_BODY)):
        scripts[name] = lab.logs / f"wrk-{name}.lua"
        scripts[name].write_text(WRK_SCRIPT.format(key=CLIENT_KEY, body=body.decode()))
    c, w, s = args.connections, args.warmup, args.seconds

    def saturate(script: str) -> Callable[[Subject], Window]:
        assert wrk is not None
        return lambda subject: wrk_window(lab, wrk, subject, scripts[script], c, w, s)

    def steady(stream: bool) -> Callable[[Subject], Window]:
        return lambda subject: _run(fixed_rate(lab, subject, args.rate, 1.0, args.rate_seconds, stream))

    gateways = (DIRECT, AGENTKUBE_LABEL, LITELLM)
    figures = [
        Figure("rate", gateways, steady(False)),
        Figure("ttft", gateways, steady(True)),
    ]
    if wrk is not None:
        figures[:0] = [
            Figure("sat", COLUMNS, saturate("chat")),
            Figure("sat-sse", COLUMNS, saturate("stream")),
        ]
    retry_budget = RETRY_SECONDS
    for run in range(1, args.runs + 1):
        for figure in figures:
            for label in figure.subjects:
                subject = subjects.get(label)
                if subject is None:
                    continue
                best: Window | None = None
                for attempt in range(1 + RETRIES):
                    started = time.monotonic()
                    window = figure.measure(subject)
                    _print_window(run, figure.key, label, window, attempt)
                    if best is None or window.others < best.others:
                        best = window
                    took = time.monotonic() - started
                    if best.others <= NOISY or retry_budget < took:
                        break
                    retry_budget -= took
                    results.retried += 1
                assert best is not None
                results.windows.setdefault((figure.key, label), []).append(best)


# ------------------------------------------------------------------------------------------ report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def report(results: Results, args: argparse.Namespace) -> None:
    rate = f"{args.rate:g} req/s"
    rows: list[tuple[str, str, Callable[[Window], float], str]] = [
        (f"chat req/s, saturation ({args.connections} conns)", "sat", lambda w: w.rps, ",.0f"),
        ("  p50 ms at saturation (wrk)", "sat", lambda w: w.p50, ".2f"),
        ("  subject CPU us/request", "sat", lambda w: w.cpu_per_request_us, ",.0f"),
        ("  load core busy %", "sat", lambda w: 100 * w.load_busy, ".0f"),
        (f"stream req/s, saturation ({args.connections} conns)", "sat-sse", lambda w: w.rps, ",.0f"),
        ("  subject CPU us/stream", "sat-sse", lambda w: w.cpu_per_request_us, ",.0f"),
        ("  load core busy %", "sat-sse", lambda w: 100 * w.load_busy, ".0f"),
        (f"chat p50 ms at {rate}", "rate", lambda w: w.p50, ".3f"),
        (f"chat p99 ms at {rate}", "rate", lambda w: w.p99, ".3f"),
        ("  answers/s served", "rate", lambda w: w.served, ",.0f"),
        (f"stream TTFT p50 ms at {rate}", "ttft", lambda w: w.ttft50, ".3f"),
        (f"stream TTFT p99 ms at {rate}", "ttft", lambda w: w.ttft99, ".3f"),
        ("  whole stream p50 ms", "ttft", lambda w: w.p50, ".3f"),
        ("  streams/s served", "ttft", lambda w: w.served, ",.0f"),
        ("others' CPU % on core 1 (chat saturation)", "sat", lambda w: 100 * w.others, ".0f"),
    ]
    width = 44
    print()
    print(
        f"medians of {args.runs} interleaved runs (saturation: wrk, {args.seconds:g} s after "
        f"{args.warmup:g} s warm-up; {rate}: open loop, {args.rate_seconds:g} s after 1 s warm-up)"
    )
    print(f"{'figure':{width}}" + "".join(f"{c:>17}" for c in COLUMNS))
    for title, key, value, spec in rows:
        cells = [_fmt(results.median(key, c, value), spec) for c in COLUMNS]
        if all(cell == "-" for cell in cells):
            continue
        print(f"{title:{width}}" + "".join(f"{cell:>17}" for cell in cells))
    whens = list(dict.fromkeys(when for points in results.rss.values() for when, _ in points))
    for when in whens:
        cells = ["-"] * len(COLUMNS)
        for label, points in results.rss.items():
            cells[COLUMNS.index(label)] = next((f"{mib:.1f}" for w, mib in points if w == when), "-")
        print(f"{'RSS MiB ' + when:{width}}" + "".join(f"{cell:>17}" for cell in cells))
    errors = sum(w.errors for ws in results.windows.values() for w in ws)
    noisy = sum(w.others > NOISY for ws in results.windows.values() for w in ws)
    print(f"(errors over all counted windows: {errors}; RSS: all processes of a subject, from /proc)")
    print(
        f"(windows taken again because other processes were busy: {results.retried}; windows counted "
        f"while others still took > {NOISY:.0%} of core 1: {noisy})"
    )
    for line in results.extra:
        print(f"({line})")
    for label, why in results.missing.items():
        print(f"({label}: not measured: {why})")

    def get(key: str, label: str, value: Callable[[Window], float]) -> float | None:
        return results.median(key, label, value)

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    goals: list[tuple[str, str, bool | None]] = []

    def goal(text: str, figure: float | None, spec: str, met: Callable[[float], bool] | None) -> None:
        goals.append((text, _fmt(figure, spec), None if figure is None or met is None else met(figure)))

    p50: Callable[[Window], float] = lambda w: w.p50  # noqa: E731
    p99: Callable[[Window], float] = lambda w: w.p99  # noqa: E731
    rps: Callable[[Window], float] = lambda w: w.rps  # noqa: E731
    ak, ll = AGENTKUBE_LABEL, LITELLM
    goal(f"added p50 latency <= 1 ms at {rate}", diff(get("rate", ak, p50), get("rate", DIRECT, p50)),
         "+.3f", lambda v: v <= 1.0)  # fmt: skip
    goal(f"added p99 latency <= 5 ms at {rate}", diff(get("rate", ak, p99), get("rate", DIRECT, p99)),
         "+.3f", lambda v: v <= 5.0)  # fmt: skip
    goal("saturation >= 20x LiteLLM's (chat)", ratio(get("sat", ak, rps), get("sat", ll, rps)), ".1f",
         lambda v: v >= 20)  # fmt: skip
    goal("saturation >= 1/5 of direct (chat)", ratio(get("sat", ak, rps), get("sat", DIRECT, rps)), ".3f",
         lambda v: v >= 0.2)  # fmt: skip
    ours, theirs = results.rss.get(ak), results.rss.get(ll)
    after = rss_after(args.rss_requests)
    mine = next((mib for w, mib in ours or [] if w == after), None)
    other = next((mib for w, mib in theirs or [] if w == after), None)
    goal(
        f"RSS <= 1/4 of LiteLLM's (after {args.rss_requests:,} chat)",
        ratio(mine, other),
        ".3f",
        lambda v: v <= 0.25,
    )
    growth = ratio(diff(mine, ours[0][1]), ours[0][1]) if ours and mine is not None else None
    goal(f"RSS flat: grown <= {FLAT:.0%} over {args.rss_requests:,} chat requests", growth, "+.1%",
         lambda v: v <= FLAT)  # fmt: skip
    if ours and len(ours) > 2:
        streamed = ours[2][1] - ours[1][1]
        goal(
            f"  (RSS growth over {args.rss_requests:,} streams after them, MiB; info)", streamed, "+.1f", None
        )
    ttft50: Callable[[Window], float] = lambda w: w.ttft50  # noqa: E731
    ttft99: Callable[[Window], float] = lambda w: w.ttft99  # noqa: E731
    for label in (ak, ll):
        goal(f"  ({label}: added TTFT p50 ms at {rate}; info)",
             diff(get("ttft", label, ttft50), get("ttft", DIRECT, ttft50)), "+.3f", None)  # fmt: skip
        goal(f"  ({label}: added TTFT p99 ms at {rate}; info)",
             diff(get("ttft", label, ttft99), get("ttft", DIRECT, ttft99)), "+.3f", None)  # fmt: skip
    goal(f"  (LiteLLM: added p50 ms at {rate}; info)", diff(get("rate", ll, p50), get("rate", DIRECT, p50)),
         "+.3f", None)  # fmt: skip
    goal("  (stream saturation vs LiteLLM's; info)", ratio(get("sat-sse", ak, rps), get("sat-sse", ll, rps)),
         ".1f", None)  # fmt: skip
    goal("  (stream saturation vs direct; info)", ratio(get("sat-sse", ak, rps), get("sat-sse", DIRECT, rps)),
         ".3f", None)  # fmt: skip
    goal("  (chat saturation vs direct (core 1); info)",
         ratio(get("sat", ak, rps), get("sat", DIRECT_C1, rps)), ".3f", None)  # fmt: skip
    print()
    print(f"{'goal':62}{'figure':>12}  verdict")
    for text, figure, met in goals:
        verdict = {True: "met", False: "MISSED", None: "" if text.startswith("  (") else "n/a"}[met]
        print(f"{text:62}{figure:>12}  {verdict}")


# -------------------------------------------------------------------------------------------- main


def _start_subjects(
    lab: Lab, upstream: str, args: argparse.Namespace, results: Results
) -> dict[str, Subject]:
    subjects = {DIRECT: Subject(DIRECT, upstream, "upstream")}
    try:
        subjects[DIRECT_C1] = Subject(
            DIRECT_C1, start_upstream(lab, "upstream-c1", SUBJECT_CORE), "upstream-c1"
        )
    except RuntimeError as e:
        results.missing[DIRECT_C1] = str(e)
    starters: list[tuple[str, str, Callable[[], str]]] = [
        (AGENTKUBE_LABEL, "agentkube", lambda: start_agentkube(lab, "agentkube", upstream, args.agentkube)),
        (LITELLM, "litellm", lambda: start_litellm(lab, "litellm", upstream)),
    ]
    for label, name, start in starters:
        if label in results.missing:
            continue
        started = time.monotonic()
        try:
            subjects[label] = Subject(label, start(), name)
            print(f"  {label} ready in {time.monotonic() - started:.1f} s", flush=True)
        except RuntimeError as e:
            results.missing[label] = f"did not start: {e}"
            print(f"  {label} could not start: {e}\n{lab.processes.log_tail(name)}", flush=True)
            lab.stop(name)
    return subjects


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.llm_gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each figure (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds, saturation (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, saturation (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk's connections (default 32)")
    parser.add_argument("--rate", type=float, default=200.0, help="the fixed rate, req/s (default 200)")
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="measured s at the rate (default 5)")
    parser.add_argument(
        "--rss-requests", type=int, default=10_000, help="requests between RSS readings (default 10000)"
    )
    parser.add_argument(
        "--agentkube", default=AGENTKUBE, help="the agentkube console script (default: the venv's)"
    )
    parser.add_argument("--skip-litellm", action="store_true", help="measure agentkube and direct only")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    pin = {LOAD_CORE, SUBJECT_CORE} <= os.sched_getaffinity(0)
    print(
        f"bench.llm_gateway: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        + ("load generators and upstream on core 0, gateway on core 1" if pin else "NOT pinned (< 2 cores)"),
        flush=True,
    )
    results = Results()
    wrk, about = ensure_wrk()
    print(f"  wrk: {about}", flush=True)
    if wrk is None:
        results.missing["saturation figures"] = about
    if args.skip_litellm:
        results.missing[LITELLM] = "--skip-litellm"
    elif why := ensure_litellm():
        results.missing[LITELLM] = why
        print(f"  LiteLLM: {why}; going on without it", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="agentkube-bench-llm-"))
    lab = Lab(logs, pin)
    try:
        if pin:
            os.sched_setaffinity(0, {LOAD_CORE})  # what `taskset -c 0` does, for this process and wrk
        upstream = start_upstream(lab, "upstream", LOAD_CORE)
        subjects = _start_subjects(lab, upstream, args, results)
        _rss_phase(lab, subjects, args, results)
        _load_phase(lab, wrk, subjects, args, results)
        for label in (AGENTKUBE_LABEL, LITELLM):
            if label in subjects:
                mib, _ = lab.processes.rss_mib(subjects[label].process)
                results.extra.append(f"{label} RSS after all the load: {mib:.1f} MiB")
    except KeyboardInterrupt:
        print("interrupted: ending every process started here", flush=True)
        sys.exit(130)  # through the finally
    finally:
        lab.processes.stop_all()
    report(results, args)
    print(f"\n(total {time.monotonic() - started:.0f} s; logs in {logs}; "
          f"load average {os.getloadavg()[0]:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
