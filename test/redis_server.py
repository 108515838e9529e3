"""A real redis-server for tests: on a free loopback port, with a password, no persistence, in a tmp dir.

`hack/install-redis.sh` makes the binary available (Debian's packages unpacked into a cache, no
system install); `redis_bin_dir()` runs it once per test process (the script itself takes
`AGENTKUBE_REDIS_BIN` when that names a directory holding redis-server, and is fast once cached).
When it yields no binary, `require_redis()` skips the calling test with the script's own reason.

`RedisServer` starts the server, waits (with a deadline) until it answers an authenticated PING,
and can be stopped and started again on the same port, for tests of a store outage. The password
travels in a config file readable by the test's user only, never on a command line.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["REDIS_BIN_ENV", "RedisServer", "redis_bin_dir", "require_redis", "running_redis"]

REDIS_BIN_ENV = "AGENTKUBE_REDIS_BIN"
ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "hack" / "install-redis.sh"
LOOPBACK = "127.0.0.1"
_START_SECONDS = 10.0
_STOP_SECONDS = 10.0


@functools.cache
def redis_bin_dir() -> Path | str:
    """The directory holding redis-server, or why there is none (the install script's last words)."""
    try:
        done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{INSTALL_SCRIPT.name} did not run: {error}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or f"exit {done.returncode}"
        return f"{INSTALL_SCRIPT.name} could not provide redis-server: {tail}"
    return Path(lines[-1])


def require_redis() -> Path:
    """The redis-server binary; skips the test, saying why, when the install script has none."""
    found = redis_bin_dir()
    if isinstance(found, str):
        pytest.skip(found)
    return found / "redis-server"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process; ``url`` and ``password`` are what a client needs."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.password = secrets.token_urlsafe(18)
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.log = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        conf = workdir / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text(
            f"bind {LOOPBACK}\nport {self.port}\nrequirepass {self.password}\nsave ''\n"
            f'appendonly no\ndir "{workdir}"\nlogfile "{self.log}"\ndaemonize no\nprotected-mode yes\n'
        )
        self._conf = conf

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers an authenticated PING."""
        assert not self.running, "redis-server is already running"
        self._process = subprocess.Popen(
            [str(self.binary), str(self._conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + _START_SECONDS
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer within {_START_SECONDS:g} s: {self._log_tail()}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL past the deadline) and return once it is gone."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_SECONDS)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as conn:
                conn.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                reply = b""
                while b"+PONG" not in reply and not reply.startswith(b"-"):
                    chunk = conn.recv(1024)
                    if not chunk:
                        return False
                    reply += chunk
                return b"+PONG" in reply
        except OSError:
            return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text().splitlines()[-5:])
        return "(no log)"


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    """A started ``RedisServer`` in ``workdir`` (skipping the test when there is no redis-server),
    stopped when the block ends."""
    server = RedisServer(require_redis(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
