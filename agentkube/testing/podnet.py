"""Pod networking for the local node: a network namespace per Pod, and Services reached by name.

The local node (``agentkube.testing.kubelet``) runs each Pod's containers as local processes. Two
replicas listen on the same container port, so every Pod gets a network namespace of its own, held
open by a small sandbox process; and Pods, tests and a user's shell reach Services by their
in-cluster names through a forward HTTP proxy on the node that resolves them through EndpointSlices.
The programs in the Pods stay unaware of all this: they honour ``HTTP_PROXY``/``HTTPS_PROXY``/
``NO_PROXY``, which the kubelet sets from ``PodSandbox.egress_env``.

    node                                                  Pod: user + network namespace, only lo
    ServiceRouter / kubelet --- DIR/pod.sock, DIR/ports/P.sock ---> sandbox --> 127.0.0.1:P  container
    ServiceRouter proxy <------ the proxy's Unix socket ---------- sandbox <-- 127.0.0.1:15001 (HTTP_PROXY)

Unix sockets live in the file system, not in a network namespace, so they are the doors between the
node and its Pods; nothing needs root, a bridge, veth pairs or iptables.

``PodSandbox`` (node side):
- ``await PodSandbox.start(directory, ports, proxy_socket)`` runs ``unshare --user --map-root-user
  --net`` around ``python -m agentkube.testing.podnet sandbox`` and returns once the namespace exists,
  its ``lo`` is up and every relay listens. It raises ``PodSandboxError`` with unshare's own message
  and the likely fix when no namespace can be made (user namespaces disabled, util-linux missing).
- ``enter(argv)`` is the argv that runs a program inside the Pod's user, network and PID namespaces
  with the caller's own credentials (``nsenter --preserve-credentials``); it works as root and as an
  unprivileged user, as long as the kernel allows unprivileged user namespaces. The sandbox is the
  first process of the Pod's PID namespace, so when it goes, everything the Pod runs goes too.
- ``open_connection(port)`` is a stream to the Pod's ``127.0.0.1:port``, any port; it raises
  ``OSError`` (``ConnectionRefusedError`` when nothing listens there) as a TCP connect would.
- ``socket_path(port)`` is a Unix socket spliced to that port, for each port given to ``start`` (for
  tools like ``curl --unix-socket``). Connecting to it always succeeds; a refused inner connection
  shows as an immediate close.
- The sandbox dies with the process that started it (parent-death signal), exits when its stdin
  closes or on SIGTERM, and ignores SIGINT (the kubelet decides when Pods stop). ``stop()`` leaves no
  process and no socket file, and may be called any number of times.

``ServiceRouter`` (node side) is the node's view of Services, EndpointSlices and Pods, fed with the
plain dicts the API server returns. It serves:
- a forward HTTP proxy on a Unix socket (the sandboxes' egress) and on a loopback TCP port (for tests
  and shells): ``CONNECT host:port`` and absolute-form ``GET http://host:port/path`` requests. Hosts
  ``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc``, ``<svc>.<ns>`` (when that Service exists) and
  a Service's ``clusterIP`` go to a ready endpoint of the Service, round-robin; a Pod IP goes to that
  Pod; any other host is dialled from the node, so Pods reach servers on the host's loopback.
- a loopback TCP listener per Service port (a NodePort on 127.0.0.1): ``local_address()``,
  ``local_addresses()``, announced through ``on_change``.

Limits, said plainly:
- TCP only (UDP and SCTP Service ports are ignored), HTTP/1.x through the proxy. An absolute-form
  request is one request per connection: the proxy sends ``Connection: close`` both ways and splices
  bytes without parsing bodies, so keep-alive clients open a new connection per request. No upgrade
  (WebSocket) through absolute-form; use ``CONNECT`` for that.
- Through the proxy, ``127.0.0.1`` and ``localhost`` are the node's loopback, not the Pod's own: that
  is how Pods reach a test's servers. A container reaches its own ports by connecting without the
  proxy (the kubelet's ``NO_PROXY`` is empty, so a proxy-aware client inside a Pod calling its own
  ``localhost`` reaches the node instead).
- A Pod IP is a name the router knows, not an address bound in the namespace: inside a Pod only
  ``lo`` exists, so a program that binds its Pod IP, or connects to an IP without the proxy, fails.
- Single-label names (``http://<svc>:<port>``, the Pod's namespace implied) and headless Services'
  per-Pod names do not resolve.
- The router and sandboxes are asyncio objects of one event loop; call them from that loop only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import functools
import ipaddress
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from agentkube.testing.controlplane import _die_with_parent

__all__ = [
    "DEFAULT_EGRESS_PORT",
    "POD_CIDR",
    "PodConnector",
    "PodSandbox",
    "PodSandboxError",
    "ServiceRouter",
    "children_of",
    "main",
    "program_pid",
]

log = structlog.get_logger(__name__)

DEFAULT_EGRESS_PORT = 15001
# The addresses the local node gives its Pods; a host in it that is no known Pod is refused rather
# than dialled from the node (where it would hang until a timeout).
POD_CIDR = "10.244.0.0/16"

POD_SOCKET = "pod.sock"  # the node's door to any port of the Pod: one line "<port>\n", one answer line
PORTS_DIR = "ports"  # DIR/ports/<port>.sock: plain splices to declared ports

CONNECT_TIMEOUT = 10.0
HEAD_TIMEOUT = 30.0
HEAD_LIMIT = 64 * 1024
_LINGER = 2.0  # how long a refused request's body is read and dropped before the connection closes
_CHUNK = 64 * 1024
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]

# linux/sockios.h and linux/if.h
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: name, then the ifr_flags member of a 24-byte union

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PodSandboxError(RuntimeError):
    """A Pod's sandbox could not be made or started; the message says why and what would fix it, fit
    for the Pod's status."""


class PodConnector(Protocol):
    """What the router needs of a Pod: a stream to one of its ports (``PodSandbox`` is one)."""

    async def open_connection(self, port: int) -> Streams: ...


# ------------------------------------------------------------------------------------------ relaying


async def _pump(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    head: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None = None,
) -> None:
    if head is not None:
        await head(src, dst)
    while data := await src.read(_CHUNK):
        dst.write(data)
        await dst.drain()
    # Half-close travels on: a client that shuts down its sending side still gets its answer.
    if dst.can_write_eof():
        dst.write_eof()


async def _splice(
    a: Streams,
    b: Streams,
    *,
    b_to_a_head: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None = None,
) -> None:
    """Copy bytes both ways until both directions end or either fails; then close both."""
    tasks = [
        asyncio.create_task(_pump(a[0], b[1])),
        asyncio.create_task(_pump(b[0], a[1], b_to_a_head)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        a[1].close()
        b[1].close()


class _Connections:
    """The connection handlers a server runs, so that stopping it ends them too (Python 3.11's
    ``Server.close`` leaves accepted connections running)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def handler(
        self, serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            try:
                await serve(reader, writer)
            except asyncio.CancelledError:
                # Ended by close(). Not re-raised: Python 3.11's stream server logs a cancelled
                # handler task as an error ("Exception in callback ... CancelledError").
                pass
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                pass  # a peer went away or never spoke: nothing to tell anyone
            except Exception as error:  # pragma: no cover - a bug; one connection must not end the rest
                print(f"podnet: connection handler failed: {error!r}", file=sys.stderr)
            finally:
                if task is not None:
                    self._tasks.discard(task)
                writer.close()

        return run

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------------------------------- Unix sockets


def _short_name(path: Path) -> tuple[str, int | None]:
    """A name for ``path`` that fits ``sun_path``: itself, or the same file through an ``O_PATH``
    descriptor of its directory (``/proc/self/fd/N/name``) when the path is too long."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return str(path), None
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def _listen_unix(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)  # a socket left by a killed predecessor
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name, fd = _short_name(path)
    try:
        sock.bind(name)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    finally:
        if fd is not None:
            os.close(fd)
    return sock


async def _open_unix(path: Path, *, limit: int = 2**16) -> Streams:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    name, fd = _short_name(path)
    try:
        await asyncio.get_running_loop().sock_connect(sock, name)
    except BaseException:
        sock.close()
        raise
    finally:
        if fd is not None:
            os.close(fd)
    return await asyncio.open_unix_connection(sock=sock, limit=limit)


# ------------------------------------------------------------------------------- inside the sandbox


def _bring_up_loopback() -> None:
    """Set ``lo`` up in the current network namespace (a new one starts with it down), through the
    same ioctls ``ip link set lo up`` uses, so no iproute2 is needed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(_IFREQ, b"lo", 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))


def _http_error(status: int, reason: str, message: str) -> bytes:
    body = (message.replace("\r", " ").replace("\n", " ") + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _connect_inside(port: int) -> Streams:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT)


async def _serve_pod_door(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await asyncio.wait_for(reader.readline(), HEAD_TIMEOUT)
    try:
        port = int(line)
        if not 0 < port < 65536:
            raise ValueError(port)
    except ValueError:
        writer.write(b"22 not a port number\n")
        return
    try:
        inner = await _connect_inside(port)
    except TimeoutError:
        writer.write(b"110 connection timed out\n")
        return
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        writer.write(f"{error.errno or 111} {reason}\n".encode())
        return
    writer.write(b"0\n")
    await _splice((reader, writer), inner)


async def _serve_port(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        inner = await _connect_inside(port)
    except OSError:
        return  # the peer sees the connection close, as near to "refused" as a Unix socket gets
    await _splice((reader, writer), inner)


async def _serve_egress(proxy: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        outer = await _open_unix(proxy)
    except OSError as error:
        writer.write(
            _http_error(502, "Bad Gateway", f"the node's forward proxy at {proxy} does not answer: {error}")
        )
        return
    await _splice((reader, writer), outer)


async def _run_sandbox(directory: Path, ports: Sequence[int], egress_port: int, proxy: Path) -> None:
    _die_with_parent()
    _bring_up_loopback()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    connections = _Connections()
    (directory / PORTS_DIR).mkdir(parents=True, exist_ok=True)
    doors = {directory / POD_SOCKET: _serve_pod_door}
    for port in ports:
        doors[directory / PORTS_DIR / f"{port}.sock"] = functools.partial(_serve_port, port)
    servers = [
        await asyncio.start_unix_server(connections.handler(serve), sock=_listen_unix(path))
        for path, serve in doors.items()
    ]
    servers.append(
        await asyncio.start_server(
            connections.handler(functools.partial(_serve_egress, proxy)), "127.0.0.1", egress_port
        )
    )

    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def until_stdin_closes() -> None:
        while await stdin.read(4096):
            pass
        stop.set()

    watcher = asyncio.create_task(until_stdin_closes())
    print("ready", flush=True)
    os.dup2(2, 1)  # nobody reads stdout after "ready": a stray print must not fill that pipe
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        for server in servers:
            server.close()
        await connections.close()
        for path in doors:
            path.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentkube.testing.podnet sandbox ...``: the process that holds a Pod's network
    namespace (``PodSandbox.start`` runs it under ``unshare``; it is not meant to be run by hand)."""
    parser = argparse.ArgumentParser(prog="python -m agentkube.testing.podnet")
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser("sandbox", help="relay a Pod's network namespace (run inside it)")
    sandbox.add_argument("--dir", required=True, type=Path, help="where the Unix sockets go")
    sandbox.add_argument("--ports", default="", help="comma-separated ports to give DIR/ports/P.sock")
    sandbox.add_argument("--egress-port", type=int, default=DEFAULT_EGRESS_PORT)
    sandbox.add_argument("--proxy-socket", required=True, type=Path, help="the node's forward proxy")
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",") if p.strip()]
    try:
        asyncio.run(_run_sandbox(args.dir, ports, args.egress_port, args.proxy_socket))
    except OSError as error:
        print(f"pod sandbox: {error}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------- node side


class PodSandbox:
    """One Pod's network namespace, seen from the node. Make one with ``await PodSandbox.start(...)``."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        directory: Path,
        ports: tuple[int, ...],
        egress_port: int,
        nsenter: str,
        stderr: deque[str],
    ) -> None:
        self._process = process
        self.directory = directory
        self.ports = ports
        self.egress_port = egress_port
        self._nsenter = nsenter
        self._stderr = stderr
        self._drain: asyncio.Task[None] | None = None
        self._stopped = False
        self._stop_lock = asyncio.Lock()
        self._inner_pid = process.pid

    @classmethod
    async def start(
        cls,
        directory: str | os.PathLike[str],
        ports: Iterable[int],
        proxy_socket: str | os.PathLike[str],
        *,
        egress_port: int = DEFAULT_EGRESS_PORT,
        ready_within: float = 15.0,
    ) -> PodSandbox:
        """Make the namespace and return once it relays.

        directory: where the sandbox puts ``pod.sock`` and ``ports/<port>.sock`` (made if missing;
            ``stop()`` removes what it put there, and the directory if that leaves it empty).
        ports: the ports to give a ``socket_path`` (``open_connection`` reaches any port anyway).
        proxy_socket: the node's forward proxy (``ServiceRouter.proxy_socket``), where the Pod's
            egress on ``127.0.0.1:<egress_port>`` goes.
        """
        unshare, nsenter = shutil.which("unshare"), shutil.which("nsenter")
        if unshare is None or nsenter is None:
            missing = "unshare" if unshare is None else "nsenter"
            raise PodSandboxError(
                f"cannot create a network namespace: {missing} is not on PATH; install util-linux"
            )
        path, port_list = _sandbox_dir(directory), tuple(sorted({int(p) for p in ports}))
        # A PID namespace too, whose first process is the sandbox: when it dies (with the node, by its
        # parent-death signal) the kernel kills every process of the Pod, whatever they started.
        argv = [unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--"]
        argv += [sys.executable, "-m", "agentkube.testing.podnet", "sandbox", "--dir", str(path)]
        argv += ["--ports", ",".join(map(str, port_list)), "--egress-port", str(egress_port)]
        argv += ["--proxy-socket", str(_absolute(proxy_socket))]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                preexec_fn=_die_with_parent,
            )
        except OSError as error:
            raise PodSandboxError(f"cannot create a network namespace: {unshare}: {error}") from error
        assert process.stdout is not None and process.stderr is not None
        stderr: deque[str] = deque(maxlen=40)
        sandbox = cls(process, path, port_list, egress_port, nsenter, stderr)
        try:
            line = await asyncio.wait_for(process.stdout.readline(), ready_within)
        except TimeoutError:
            await sandbox._kill()
            raise PodSandboxError(
                f"pod sandbox in {path} did not report ready within {ready_within:g} s: {sandbox.log_tail()}"
            ) from None
        if line.strip() != b"ready":
            await sandbox._kill()
            raise _start_failure(argv, path, sandbox.log_tail())
        sandbox._drain = asyncio.create_task(_collect(process.stderr, stderr))
        inner = _only_child(process.pid)
        if inner is None:
            await sandbox._kill()
            raise PodSandboxError(f"pod sandbox in {path}: cannot find the process unshare started")
        sandbox._inner_pid = inner
        return sandbox

    @property
    def pid(self) -> int:
        """The sandbox process (as the node sees it), the first of the Pod's PID namespace: its
        ``/proc/<pid>/ns/{net,pid}`` are the Pod's namespaces."""
        return self._inner_pid

    @property
    def returncode(self) -> int | None:
        """None while the sandbox runs; a sandbox that exits on its own has lost the Pod's network."""
        return self._process.returncode

    async def wait(self) -> int:
        """Wait for the sandbox to exit and return its exit code."""
        return await self._process.wait()

    def log_tail(self) -> str:
        """The sandbox's last lines of stderr (it writes nothing there while all is well)."""
        return " | ".join(self._stderr) or "(no output)"

    @property
    def egress_env(self) -> dict[str, str]:
        """The proxy variables, both spellings, that send a container's HTTP(S) to the node's proxy."""
        proxy = f"http://127.0.0.1:{self.egress_port}"
        env = {"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": ""}
        return {**env, **{k.lower(): v for k, v in env.items()}}

    def enter(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside the Pod's user, network and PID namespaces, with the
        caller's uid and gid (root inside the user namespace). The mount namespace and file system are
        the node's own. nsenter forks into the PID namespace and waits: the pid a caller starts is
        nsenter's, which exits with the program's status, and ``program_pid()`` is the program's.
        Signal the program, not nsenter (which dies of a SIGTERM at once, without waiting)."""
        return [
            self._nsenter,
            f"--target={self.pid}",
            "--user",
            "--net",
            "--pid",
            "--preserve-credentials",
            "--",
            *argv,
        ]

    def socket_path(self, port: int) -> Path:
        """The Unix socket spliced to the Pod's ``127.0.0.1:port``, for a port given to ``start``."""
        if port not in self.ports:
            raise ValueError(
                f"pod sandbox in {self.directory} has no socket for port {port} (it has {list(self.ports)}); "
                "open_connection() reaches any port"
            )
        return self.directory / PORTS_DIR / f"{port}.sock"

    async def open_connection(self, port: int) -> Streams:
        """Streams to the Pod's ``127.0.0.1:port``. Raises ``OSError`` with the errno the connect inside
        the Pod got (``ConnectionRefusedError`` when nothing listens), or when the sandbox is gone."""
        try:
            reader, writer = await asyncio.wait_for(_open_unix(self.directory / POD_SOCKET), CONNECT_TIMEOUT)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise ConnectionRefusedError(
                error.errno, f"pod sandbox {self.pid} is not running ({self.directory / POD_SOCKET})"
            ) from error
        try:
            writer.write(b"%d\n" % port)
            answer = await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT)
        except BaseException:
            writer.close()
            raise
        if answer == b"0\n":
            return reader, writer
        writer.close()
        code, _, message = answer.decode(errors="replace").strip().partition(" ")
        errno = int(code) if code.isdigit() else 111
        raise OSError(errno, f"pod port {port}: {message or 'connection closed by the sandbox'}")

    async def stop(self, grace: float = 5.0) -> None:
        """End the sandbox (stdin closed, then SIGKILL after ``grace`` seconds) and remove its socket files.
        Processes started through ``enter`` are the caller's to stop; they keep the namespace alive
        but lose the doors to the node."""
        async with self._stop_lock:
            if self._stopped:
                return
            if self._process.returncode is None:
                if self._process.stdin is not None:
                    self._process.stdin.close()
                try:
                    await asyncio.wait_for(self._process.wait(), grace)
                except TimeoutError:
                    await self._kill()
            if self._drain is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._drain
            self._remove_files()
            self._stopped = True

    async def _kill(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()
        if self._drain is None and self._process.stderr is not None:
            # Not yet drained: what it said before it died is the error's substance.
            with contextlib.suppress(OSError, TimeoutError):
                data = await asyncio.wait_for(self._process.stderr.read(), 1.0)
                self._stderr.extend(data.decode(errors="replace").splitlines())
        self._remove_files()

    def _remove_files(self) -> None:
        (self.directory / POD_SOCKET).unlink(missing_ok=True)
        ports = self.directory / PORTS_DIR
        for port in self.ports:
            (ports / f"{port}.sock").unlink(missing_ok=True)
        for empty in (ports, self.directory):
            with contextlib.suppress(OSError):
                empty.rmdir()


def children_of(pid: int) -> list[int]:
    """The direct children of process ``pid`` (from ``/proc``; empty when it has none or is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _only_child(pid: int) -> int | None:
    children = children_of(pid)
    return children[0] if len(children) == 1 else None


def program_pid(nsenter_pid: int) -> int | None:
    """The program a process started through ``PodSandbox.enter`` runs: nsenter's one child, or None
    once it has exited."""
    return _only_child(nsenter_pid)


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(path).absolute()


def _sandbox_dir(directory: str | os.PathLike[str]) -> Path:
    path = _absolute(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _collect(stream: asyncio.StreamReader, lines: deque[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace").rstrip())


def _start_failure(argv: Sequence[str], directory: Path, output: str) -> PodSandboxError:
    command = " ".join(argv[:4])
    if "unshare failed" in output:
        return PodSandboxError(
            f"cannot create a network namespace: {command}: {output}; the kernel must allow "
            "unprivileged user namespaces (sysctls user.max_user_namespaces, "
            "kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
        )
    if output.startswith("unshare:"):
        # Typically "failed to execute <python>": inside the namespace only the caller's own files
        # and world-accessible ones can be reached, so a Python under another user's 0700 home fails.
        return PodSandboxError(f"cannot create a network namespace: {command}: {output}")
    return PodSandboxError(f"pod sandbox in {directory} exited before it was ready: {output}")


# ------------------------------------------------------------------------------------- proxy requests


class _BadRequest(Exception):
    """A request the proxy cannot act on: answered 400 with the message."""


@dataclass(frozen=True)
class _ProxyRequest:
    method: str
    host: str
    port: int
    head: bytes  # what goes to the origin before the body: the rewritten request head; b"" for CONNECT


# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own; Transfer-Encoding and Content-Length stay,
# because the body passes through byte for byte in the framing the client chose.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "upgrade",
    }
)


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as error:  # pragma: no cover - latin-1 decodes any byte
        raise _BadRequest("request head is not text") from error
    lines = text.split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise _BadRequest("empty request")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or any(c in name for c in ' \t"(),/;<=>?@[\\]{}'):
            raise _BadRequest(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return lines[0], headers


def _host_port(authority: str, default: int | None) -> tuple[str, int]:
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _BadRequest(f"malformed host {authority!r}")
        host, rest = authority[1:end], authority[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _BadRequest(f"malformed host {authority!r}")
            port_text = rest[1:]
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    if not port_text:
        if default is None:
            raise _BadRequest(f"CONNECT needs host:port, got {authority!r}")
        return _checked_host(host, authority), default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _BadRequest(f"bad port in {authority!r}")
    return _checked_host(host, authority), int(port_text)


def _checked_host(host: str, authority: str) -> str:
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise _BadRequest(f"malformed host {authority!r}")
    return host.lower().rstrip(".")


def _parse_proxy_request(head: bytes) -> _ProxyRequest:
    """Read a forward-proxy request head (up to and including the blank line).

    ``CONNECT host:port`` gives the target alone; an absolute-form ``http://`` request gives the head
    to send the origin: origin-form target, ``Host`` from the URL (RFC 9112 3.2.2), hop-by-hop and
    proxy headers dropped (and those named in ``Connection``), ``Connection: close`` added.
    """
    request_line, headers = _split_head(head)
    parts = request_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise _BadRequest(f"malformed request line {request_line[:120]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise _BadRequest(f"unsupported protocol version {version[:20]!r}")
    if not method.isalpha() or not method.isupper():
        raise _BadRequest(f"malformed method {method[:20]!r}")
    if method == "CONNECT":
        host, port = _host_port(target, None)
        return _ProxyRequest(method, host, port, b"")
    if target.startswith("/") or target == "*":
        raise _BadRequest(
            f"{method} {target[:80]} is not a proxy request: send an absolute URL "
            "(GET http://host:port/path) or CONNECT host:port"
        )
    url = urlsplit(target)
    if url.scheme.lower() != "http" or not url.netloc:
        raise _BadRequest(f"cannot proxy {target[:80]!r}: only http:// URLs (use CONNECT for https)")
    host, port = _host_port(url.netloc.rpartition("@")[2], 80)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    kept = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP and n.lower() not in named]
    authority = url.netloc.rpartition("@")[2]
    lines = [f"{method} {path} {version}", f"Host: {authority}"]
    lines += [f"{n}: {v}" for n, v in kept if n.lower() != "host"]
    lines.append("Connection: close")
    return _ProxyRequest(method, host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def _close_response_head(head: bytes) -> tuple[bytes, bool]:
    """The origin's response head as the client gets it, and whether it was the final one: hop-by-hop
    headers dropped and ``Connection: close`` added, so a keep-alive client does not send a second
    request down a connection the origin will close. Interim (1xx) heads pass unchanged; a head that
    does not parse passes unchanged as the final one."""
    try:
        status_line, headers = _split_head(head)
    except _BadRequest:
        return head, True
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return head, True
    status = int(parts[1])
    if 100 <= status < 200 and status != 101:
        return head, False
    if status == 101:
        return head, True
    named = {t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")}
    kept = [f"{n}: {v}" for n, v in headers if n.lower() not in _HOP_BY_HOP and n.lower() not in named]
    return ("\r\n".join([status_line, *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1"), True


async def _forward_response_head(origin: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await origin.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as partial:
            client.write(partial.partial)
            return
        except asyncio.LimitOverrunError:
            return  # an enormous head: the rest of the pump passes it through as it is
        rewritten, final = _close_response_head(head)
        client.write(rewritten)
        if final:
            return


# ---------------------------------------------------------------------------------------- the router


class _Unavailable(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}
_REASONS |= {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_CLUSTER_SUFFIXES = (".svc.cluster.local", ".svc")


async def _refuse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int, message: str
) -> None:
    """Answer with an error, then read what the client still sends (a request body) for a moment
    before the connection closes: closing with unread data resets the connection, and the client
    would see the reset instead of the answer."""
    writer.write(_http_error(status, _REASONS[status], message))
    with contextlib.suppress(OSError):
        writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LINGER):
                while await reader.read(_CHUNK):
                    pass


def _service_port(service: Mapping[str, Any], port: int) -> Mapping[str, Any] | None:
    for entry in (service.get("spec") or {}).get("ports") or []:
        if entry.get("port") == port and (entry.get("protocol") or "TCP") == "TCP":
            return entry  # type: ignore[no-any-return]
    return None


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "connection timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


ServiceKey = tuple[str, str]
ListenerKey = tuple[str, str, int]


class ServiceRouter:
    """The node's Services, EndpointSlices and Pods, and the proxy and listeners that reach them.

    Feed it with ``update_service``/``delete_service``/``update_slice``/``delete_slice`` (the objects
    as the API server returns them, from informer handlers: all are plain, synchronous calls) and
    ``add_pod``/``remove_pod``. Routing reads the latest state on each new connection; established
    connections are left alone when a Service or endpoint goes (as conntrack does for kube-proxy).

    Endpoints are chosen as kube-proxy does: for a Service port, the EndpointSlices labelled
    ``kubernetes.io/service-name`` with a port of the same name give the target port; endpoints whose
    ``conditions.ready`` is true or unset are used, round-robin; when there is none, those both serving
    and terminating. When the chosen endpoint refuses, the next one is tried, so a Pod that just went
    does not fail a request another can serve.

    proxy_socket: where the Unix-socket proxy listens (the sandboxes' egress). Default: a fresh
        private directory, removed on ``stop()``.
    proxy_port: the loopback TCP port of the same proxy. Default 0: a free port.
    prefer_service_ports: give a Service port's listener ``127.0.0.1:<service port>`` when it is free,
        a free port otherwise (what a person at a shell wants). Default False: free ports only (what
        parallel tests want).
    pod_cidr: the Pods' addresses. A host in it that is no known Pod is refused, never dialled.
    on_change: called without arguments once ``start()`` has opened the proxy and after the set of
        listeners changes; read ``proxy_address`` and ``local_addresses()`` there. An exception in it
        is logged, not raised.
    """

    def __init__(
        self,
        proxy_socket: str | os.PathLike[str] | None = None,
        *,
        proxy_port: int = 0,
        prefer_service_ports: bool = False,
        pod_cidr: str = POD_CIDR,
        on_change: Callable[[], None] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._socket_arg = Path(proxy_socket).absolute() if proxy_socket is not None else None
        self._socket_path: Path | None = self._socket_arg
        self._private_dir: Path | None = None
        self._proxy_port = proxy_port
        self._prefer_service_ports = prefer_service_ports
        self._pod_cidr = ipaddress.ip_network(pod_cidr)
        self._on_change = on_change
        self._connect_timeout = connect_timeout

        self._services: dict[ServiceKey, Mapping[str, Any]] = {}
        self._cluster_ips: dict[str, ServiceKey] = {}
        self._slices: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._pods: dict[str, PodConnector] = {}
        self._turns: dict[ListenerKey, int] = {}

        self._connections = _Connections()
        self._proxy_servers: list[asyncio.Server] = []
        self._proxy_address: str | None = None
        self._listeners: dict[ListenerKey, tuple[asyncio.Server, str]] = {}
        self._wanted = 0  # generations of listener work asked for and done
        self._done = 0
        self._work = asyncio.Event()
        self._settled = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Listen: the proxy on its Unix socket and TCP port, and a listener per Service port known."""
        if self._worker is not None:
            return
        if self._socket_arg is None:
            self._private_dir = Path(tempfile.mkdtemp(prefix="agentkube-node-"))
            self._socket_path = self._private_dir / "proxy.sock"
        assert self._socket_path is not None
        self._socket_path.parent.mkdir(parents=True, exist_ok=True)
        serve = self._connections.handler(self._serve_proxy)
        unix = await asyncio.start_unix_server(serve, sock=_listen_unix(self._socket_path), limit=HEAD_LIMIT)
        tcp = await asyncio.start_server(serve, "127.0.0.1", self._proxy_port, limit=HEAD_LIMIT)
        self._proxy_servers = [unix, tcp]
        self._proxy_address = f"127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
        self._worker = asyncio.create_task(self._sync_listeners_forever())
        self._ask_listeners()
        self._notify()

    async def stop(self) -> None:
        """Close the proxy and every listener, end the connections through them, remove the socket
        (and the private directory). Idempotent; ``on_change`` is not called. ``start()`` may follow
        and serves what the router knows."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
            async with self._settled:
                self._settled.notify_all()
        servers = [*self._proxy_servers, *(server for server, _ in self._listeners.values())]
        self._proxy_servers, self._listeners = [], {}
        for server in servers:
            server.close()
        await self._connections.close()
        for server in servers:
            await server.wait_closed()
        if self._socket_path is not None and self._proxy_address is not None:
            self._socket_path.unlink(missing_ok=True)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
        self._proxy_address = None

    async def __aenter__(self) -> ServiceRouter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def proxy_address(self) -> str:
        """``127.0.0.1:<port>`` of the TCP proxy; raises ``RuntimeError`` before ``start()``."""
        if self._proxy_address is None:
            raise RuntimeError("ServiceRouter.proxy_address: the router is not running; await start() first")
        return self._proxy_address

    @property
    def proxy_url(self) -> str:
        """``http://127.0.0.1:<port>``: what ``HTTP_PROXY`` or aiohttp's ``proxy=`` takes."""
        return f"http://{self.proxy_address}"

    @property
    def proxy_socket(self) -> Path:
        """The Unix socket of the proxy: the given path, or (default) one in a private directory made
        by ``start()``; raises ``RuntimeError`` before that."""
        if self._socket_path is None:
            raise RuntimeError(
                "ServiceRouter.proxy_socket: no path given and not started; await start() first"
            )
        return self._socket_path

    # ---------------------------------------------------------------------------------- the world

    def update_service(self, service: Mapping[str, Any]) -> None:
        """Add or replace a Service (its listeners follow soon after; ``await listeners_synced()``)."""
        meta = service.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        self._forget_cluster_ip(key)
        self._services[key] = service
        cluster_ip = (service.get("spec") or {}).get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            self._cluster_ips[str(cluster_ip)] = key
        self._ask_listeners()

    def delete_service(self, namespace: str, name: str) -> None:
        """Forget a Service; its listeners close soon after."""
        key = (namespace, name)
        self._forget_cluster_ip(key)
        for turn in [t for t in self._turns if t[:2] == key]:
            del self._turns[turn]
        if self._services.pop(key, None) is not None:
            self._ask_listeners()

    def update_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        """Add or replace an EndpointSlice (``discovery.k8s.io/v1``)."""
        meta = endpoint_slice.get("metadata") or {}
        self._slices[(str(meta.get("namespace") or "default"), str(meta.get("name")))] = endpoint_slice

    def delete_slice(self, namespace: str, name: str) -> None:
        self._slices.pop((namespace, name), None)

    def add_pod(self, pod_ip: str, pod: PodConnector) -> None:
        """Route ``pod_ip`` (an endpoint address, or a host in a proxied request) to ``pod``."""
        self._pods[pod_ip] = pod

    def remove_pod(self, pod_ip: str) -> None:
        self._pods.pop(pod_ip, None)

    def endpoints(self, namespace: str, name: str, port: int) -> list[tuple[str, int]]:
        """The (address, target port) pairs a connection to the Service port may go to now, sorted."""
        service = self._services.get((namespace, name))
        entry = _service_port(service, port) if service is not None else None
        if entry is None:
            return []
        port_name = entry.get("name") or ""
        ready: set[tuple[str, int]] = set()
        terminating: set[tuple[str, int]] = set()
        for (ns, _), endpoint_slice in self._slices.items():
            labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
            if ns != namespace or labels.get("kubernetes.io/service-name") != name:
                continue
            if endpoint_slice.get("addressType") not in ("IPv4", "IPv6"):
                continue
            target = next(
                (
                    p.get("port")
                    for p in endpoint_slice.get("ports") or []
                    if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"
                ),
                None,
            )
            if not isinstance(target, int):
                continue
            for endpoint in endpoint_slice.get("endpoints") or []:
                addresses = endpoint.get("addresses") or []
                if not addresses:
                    continue
                conditions = endpoint.get("conditions") or {}
                # As kube-proxy reads them: unset ready means ready; serving defaults to ready.
                is_ready = conditions.get("ready") is not False
                serving = conditions.get("serving", is_ready) is not False
                if is_ready and not conditions.get("terminating"):
                    ready.add((str(addresses[0]), target))
                elif serving and conditions.get("terminating"):
                    terminating.add((str(addresses[0]), target))
        return sorted(ready or terminating)

    # -------------------------------------------------------------------------------- listeners

    def local_address(self, namespace: str, name: str, port: int) -> str | None:
        """``127.0.0.1:<port>`` where the Service port is served on the node, or None (not yet, or
        not a TCP port of a known Service)."""
        listener = self._listeners.get((namespace, name, port))
        return listener[1] if listener else None

    def local_addresses(self) -> dict[str, str]:
        """Every Service port served on the node: ``"<namespace>/<name>:<port>"`` ->
        ``"127.0.0.1:<port>"``."""
        return {
            f"{ns}/{name}:{port}": address
            for (ns, name, port), (_, address) in sorted(self._listeners.items())
        }

    async def listeners_synced(self) -> None:
        """Return once the listeners match the Services given so far (at once before ``start()``)."""
        if self._worker is None:
            return
        wanted = self._wanted
        async with self._settled:
            await self._settled.wait_for(lambda: self._done >= wanted or self._worker is None)

    def _ask_listeners(self) -> None:
        self._wanted += 1
        self._work.set()

    def _wanted_listeners(self) -> set[ListenerKey]:
        return {
            (ns, name, int(entry["port"]))
            for (ns, name), service in self._services.items()
            for entry in (service.get("spec") or {}).get("ports") or []
            if (entry.get("protocol") or "TCP") == "TCP" and isinstance(entry.get("port"), int)
        }

    async def _sync_listeners_forever(self) -> None:
        # One worker, level-triggered: it makes the listeners match the Services as they are now, so
        # a burst of updates costs one pass, and a failure is retried on the next change.
        while True:
            await self._work.wait()
            self._work.clear()
            wanted = self._wanted
            try:
                changed = await self._sync_listeners()
            except Exception as error:  # pragma: no cover - keep serving what is open
                log.warning("service listeners not synced", error=repr(error))
                changed = False
            self._done = wanted
            async with self._settled:
                self._settled.notify_all()
            if changed:
                self._notify()

    async def _sync_listeners(self) -> bool:
        wanted = self._wanted_listeners()
        changed = False
        for key in [k for k in self._listeners if k not in wanted]:
            server, _ = self._listeners.pop(key)
            server.close()
            changed = True
        for key in sorted(wanted - set(self._listeners)):
            opened = await self._open_listener(key)
            if opened is not None:
                address = f"127.0.0.1:{opened.sockets[0].getsockname()[1]}"
                self._listeners[key] = (opened, address)
                changed = True
        return changed

    async def _open_listener(self, key: ListenerKey) -> asyncio.Server | None:
        serve = self._connections.handler(functools.partial(self._serve_service_port, key))
        ports = [key[2], 0] if self._prefer_service_ports else [0]
        for port in ports:
            try:
                return await asyncio.start_server(serve, "127.0.0.1", port)
            except OSError as error:
                if port == 0:
                    log.warning(
                        "cannot listen for service", service=f"{key[0]}/{key[1]}:{key[2]}", error=str(error)
                    )
        return None

    def _notify(self) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change()
        except Exception as error:
            log.warning("ServiceRouter on_change failed", error=repr(error))

    def _forget_cluster_ip(self, key: ServiceKey) -> None:
        for ip in [ip for ip, owner in self._cluster_ips.items() if owner == key]:
            del self._cluster_ips[ip]

    # ---------------------------------------------------------------------------------- serving

    async def _serve_service_port(
        self, key: ListenerKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream = await self._dial_service((key[0], key[1]), key[2])
        except _Unavailable as error:
            # Raw TCP: there is no protocol to say why in, so the client sees the connection close.
            log.debug("service connection refused", reason=error.message)
            return
        await _splice((reader, writer), upstream)

    async def _serve_proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.IncompleteReadError as error:
            if error.partial.strip():
                await _refuse(reader, writer, 400, "incomplete request head")
            return
        except asyncio.LimitOverrunError:
            await _refuse(reader, writer, 431, f"request head larger than {HEAD_LIMIT} bytes")
            return
        except TimeoutError:
            await _refuse(reader, writer, 408, f"no complete request head within {HEAD_TIMEOUT:g} s")
            return
        try:
            request = _parse_proxy_request(head)
            upstream = await self._dial(request.host, request.port)
        except _BadRequest as error:
            await _refuse(reader, writer, 400, str(error))
            return
        except _Unavailable as error:
            await _refuse(reader, writer, error.status, error.message)
            return
        if request.method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await _splice((reader, writer), upstream)
        else:
            upstream[1].write(request.head)
            await _splice((reader, writer), upstream, b_to_a_head=_forward_response_head)

    async def _dial(self, host: str, port: int) -> Streams:
        """Streams to what ``host:port`` names from inside the cluster; ``_Unavailable`` says why not."""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            if host in self._pods:
                return await self._dial_endpoint_or_fail(host, port)
            if host in self._cluster_ips:
                return await self._dial_service(self._cluster_ips[host], port)
            if ip in self._pod_cidr:
                raise _Unavailable(502, f"no pod with IP {host} on this node")
            return await self._dial_direct(host, port)
        key = self._service_for_name(host)
        if key is not None:
            return await self._dial_service(key, port)
        if host.endswith(_CLUSTER_SUFFIXES):
            raise _Unavailable(
                503, f"no service answers to {host}: names are <service>.<namespace>.svc[.cluster.local]"
            )
        return await self._dial_direct(host, port)

    def _service_for_name(self, host: str) -> ServiceKey | None:
        for suffix in _CLUSTER_SUFFIXES:
            if host.endswith(suffix):
                labels = host[: -len(suffix)].split(".")
                if len(labels) != 2 or not all(labels):
                    return None
                key = (labels[1], labels[0])
                if key not in self._services:
                    raise _Unavailable(503, f"no service {key[0]}/{key[1]}")
                return key
        labels = host.split(".")
        if len(labels) == 2 and (labels[1], labels[0]) in self._services:
            return (labels[1], labels[0])
        return None

    async def _dial_service(self, key: ServiceKey, port: int) -> Streams:
        service = self._services.get(key)
        if service is None:
            raise _Unavailable(503, f"no service {key[0]}/{key[1]}")
        spec = service.get("spec") or {}
        if spec.get("type") == "ExternalName" and spec.get("externalName"):
            return await self._dial_direct(str(spec["externalName"]).lower().rstrip("."), port)
        if _service_port(service, port) is None:
            raise _Unavailable(503, f"service {key[0]}/{key[1]} has no TCP port {port}")
        candidates = self.endpoints(key[0], key[1], port)
        if not candidates:
            raise _Unavailable(503, f"no ready endpoints for {key[0]}/{key[1]} port {port}")
        turn = self._turns.get((*key, port), 0)
        self._turns[(*key, port)] = turn + 1
        start = turn % len(candidates)
        failures = []
        for address, target in candidates[start:] + candidates[:start]:
            try:
                return await self._dial_endpoint(address, target)
            except (OSError, TimeoutError) as error:
                failures.append(f"{address}:{target}: {_reason(error)}")
        raise _Unavailable(
            502, f"no ready endpoint of {key[0]}/{key[1]} port {port} accepted: {'; '.join(failures)}"
        )

    async def _dial_endpoint(self, address: str, port: int) -> Streams:
        pod = self._pods.get(address)
        if pod is not None:
            return await asyncio.wait_for(pod.open_connection(port), self._connect_timeout)
        try:
            in_pod_cidr = ipaddress.ip_address(address) in self._pod_cidr
        except ValueError:
            in_pod_cidr = False
        if in_pod_cidr:
            raise ConnectionRefusedError(111, f"no pod with IP {address} on this node")
        return await asyncio.wait_for(asyncio.open_connection(address, port), self._connect_timeout)

    async def _dial_endpoint_or_fail(self, address: str, port: int) -> Streams:
        try:
            return await self._dial_endpoint(address, port)
        except TimeoutError as error:
            raise _Unavailable(504, f"pod {address} port {port}: {_reason(error)}") from error
        except OSError as error:
            raise _Unavailable(502, f"pod {address} port {port}: {_reason(error)}") from error

    async def _dial_direct(self, host: str, port: int) -> Streams:
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), self._connect_timeout)
        except TimeoutError as error:
            raise _Unavailable(504, f"cannot connect to {host}:{port}: connection timed out") from error
        except OSError as error:
            raise _Unavailable(502, f"cannot connect to {host}:{port}: {_reason(error)}") from error


if __name__ == "__main__":
    sys.exit(main())
