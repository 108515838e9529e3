"""A local MCP server the proxy starts as a child process and speaks to over stdin and stdout.

What a caller may rely on:

- The child's environment is exactly its config's ``env`` (each ``value``, or ``valueFromEnv`` read
  from the proxy's environment when the child starts) plus ``PATH``, ``HOME`` and the egress proxy
  variables (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``, either case: a child that fetches what
  it runs, ``npx -y`` or ``uvx``, goes out the way the proxy does) from the proxy's environment.
  Nothing else of the proxy's environment reaches it: that is where the proxy's own secrets live.
  A ``valueFromEnv`` the proxy does not have keeps the child from starting (the log names the
  variable; readiness stays false).
- The child runs in a process group of its own, so ``close()`` (SIGTERM to the whole group, up to
  ``term_seconds`` to exit, then SIGKILL) also ends what it started (``npx`` runs node as a child).
- Messages are newline-delimited JSON-RPC, each line up to ``limits.maxMessageBytes``. A longer
  line, or one that is not JSON, is logged (its size, never its content) and skipped.
- The child's stderr is logged line by line at info level with ``upstream=<name>``, at most about
  20 lines a second; beyond that, one "stderr lines suppressed" line says how many were dropped.
- When the child exits it is started again after a backoff (0.5 s doubling to 30 s, reset once it
  stayed up 60 s); ``up`` is false meanwhile and requests in flight fail with ``UpstreamError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from typing import Final

import orjson
import structlog

from agentkube.dataplane.mcp import config
from agentkube.dataplane.mcp.rpc import LogBudget, PeerUpstream, Send
from agentkube.dataplane.mcp.upstream import Message, UpstreamError

__all__ = ["INHERITED", "StdioUpstream"]

log = structlog.get_logger("agentkube.mcp.stdio")

INHERITED: Final = (
    *("PATH", "HOME"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
)
"""The only variables of the proxy's environment a child gets without its config naming them."""

_MIN_LINE: Final = 16 * 1024 * 1024
_STDERR_LINE_CHARS: Final = 4096


class StdioUpstream(PeerUpstream):
    """One stdio MCP server, restarted when it dies (see the module docstring).

    ``environ`` is the proxy environment the child's ``PATH``, ``HOME`` and ``valueFromEnv`` come from
    (default: ``os.environ``, read at each start of the child).
    """

    def __init__(
        self,
        upstream: config.StdioUpstream,
        limits: config.Limits,
        *,
        environ: Mapping[str, str] | None = None,
        term_seconds: float = 5.0,
    ) -> None:
        super().__init__(upstream.name, limits)
        self.config = upstream
        self._environ = environ
        self._term_seconds = term_seconds
        self._line_limit = max(limits.max_message_bytes, _MIN_LINE)
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (also its process group id), or None."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def environment(self) -> dict[str, str]:
        """The environment the child gets when it starts now; ``UpstreamError`` names a missing variable."""
        environ = self._environ if self._environ is not None else os.environ
        env = {name: environ[name] for name in INHERITED if name in environ}
        for var in self.config.env:
            if var.value is not None:
                env[var.name] = var.value
                continue
            assert var.value_from_env is not None  # the config model requires one of the two
            value = environ.get(var.value_from_env)
            if value is None:
                raise UpstreamError(
                    f"{self.name}: env {var.name}: valueFromEnv {var.value_from_env} is not set in the "
                    "proxy's environment"
                )
            env[var.name] = value
        return env

    async def _connect(self, stack: contextlib.AsyncExitStack) -> tuple[Send, AsyncIterator[bytes | str]]:
        env = self.environment()
        try:
            process = await asyncio.create_subprocess_exec(
                self.config.command,
                *self.config.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
                limit=self._line_limit,
            )
        except OSError as error:
            raise UpstreamError(f"{self.name}: cannot start {self.config.command!r}: {error}") from error
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        self._process = process
        log.info("child started", upstream=self.name, pid=process.pid, command=self.config.command)
        loop = asyncio.get_running_loop()
        watcher = loop.create_task(self._watch(process))
        stack.push_async_callback(_stop, watcher)
        stderr = loop.create_task(self._log_stderr(process.stderr))
        # Exit order: the child is reaped first, then the stderr reader is given a moment to log
        # the child's last words (it ends at EOF) before it is stopped.
        stack.push_async_callback(self._finish, stderr)
        stack.push_async_callback(self._reap, process)
        return self._writer(process.stdin), self._messages(process)

    def _writer(self, stdin: asyncio.StreamWriter) -> Send:
        async def write(message: Message) -> None:
            line = orjson.dumps(message) + b"\n"
            if stdin.is_closing():
                raise UpstreamError(f"{self.name}: the child's stdin is closed")
            try:
                stdin.write(line)
                await stdin.drain()
            except (ConnectionError, OSError) as error:
                raise UpstreamError(f"{self.name}: writing to the child: {error}") from error

        return write

    async def _messages(self, process: asyncio.subprocess.Process) -> AsyncIterator[bytes | str]:
        assert process.stdout is not None
        async for line in self._lines(process.stdout, "stdout"):
            if line.strip():
                yield line
        # Say why in the error the requests in flight get: usually the child is gone already.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await _exited(process)
                await process.wait()
        if process.returncode is None:
            raise UpstreamError(f"{self.name}: the child closed its stdout")
        raise UpstreamError(f"{self.name}: the child exited with code {process.returncode}")

    async def _lines(self, reader: asyncio.StreamReader, stream: str) -> AsyncIterator[bytes]:
        """Lines of ``reader`` up to the line limit; longer ones are skipped (and logged) whole."""
        skipping = False
        budget = LogBudget(rate=1.0, burst=10.0)
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as error:
                if error.partial and not skipping:
                    yield error.partial
                return
            except asyncio.LimitOverrunError as error:
                # The buffer holds error.consumed bytes of a line longer than the limit: drop them and
                # everything up to the line's end.
                await reader.readexactly(error.consumed)
                skipping = True
                continue
            if skipping:
                skipping = False
                allowed, suppressed = budget.take()
                if allowed:
                    log.warning(
                        "skipped a line over the size limit",
                        upstream=self.name,
                        stream=stream,
                        limit_bytes=self._line_limit,
                        suppressed_before=suppressed,
                    )
                continue
            yield line

    async def _log_stderr(self, stderr: asyncio.StreamReader) -> None:
        budget = LogBudget()
        try:
            async for raw in self._lines(stderr, "stderr"):
                allowed, suppressed = budget.take()
                if suppressed:
                    log.info("stderr lines suppressed", upstream=self.name, lines=suppressed)
                if allowed:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    log.info("stderr", upstream=self.name, line=line[:_STDERR_LINE_CHARS])
        finally:
            if suppressed := budget.flush():
                log.info("stderr lines suppressed", upstream=self.name, lines=suppressed)

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        """When the child exits, end what it left in its group: a grandchild that inherited stdout would
        otherwise keep the pipe open, and the proxy would never see the server go."""
        await _exited(process)
        _signal_group(process.pid, signal.SIGKILL)

    async def _finish(self, stderr: asyncio.Task[None]) -> None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(stderr)
        await _stop(stderr)

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        """End the child and its whole process group, and wait for the child."""
        assert process.stdin is not None
        process.stdin.close()
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self._term_seconds):
                    await _exited(process)
            except TimeoutError:
                log.warning("child ignored SIGTERM; killing it", upstream=self.name, pid=process.pid)
        # Whatever the child started may outlive it in its group.
        _signal_group(process.pid, signal.SIGKILL)
        await _exited(process)
        # wait() also waits for the pipes to close, which a process that left the group could hold
        # open forever: the child's exit is what counts.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._term_seconds):
                await process.wait()
        if self._process is process:
            self._process = None
        log.info("child exited", upstream=self.name, pid=process.pid, code=process.returncode)


async def _exited(process: asyncio.subprocess.Process) -> None:
    """Return once the child has exited, whoever still holds its pipes (``wait()`` waits for those too)."""
    if process.returncode is not None:
        return
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return  # already reaped
    except OSError:
        # No pidfd (an old kernel or a sandbox): the child watcher sets returncode when it reaps.
        while _still_running(process):  # noqa: ASYNC110 (no event to wait on without a pidfd)
            await asyncio.sleep(0.2)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await gone
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _still_running(process: asyncio.subprocess.Process) -> bool:
    return process.returncode is None


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
