"""What every data-plane program serves the same way: probes, the metrics port, logs, and a drain on SIGTERM.

``Program`` runs two servers: the API (the MCP endpoint, the LLM API) with ``/healthz``,
``/livez`` and ``/readyz`` beside it, on the port the pod's probes and Service use; and ``/metrics``
on a port of its own, so a scraper never competes with callers and the API never exposes metrics.
The metrics port is served by aiohttp; so is the API port, whose routes go into ``program.app``,
unless the program asks for ``lean_api``: then its routes go into ``program.routes`` and the port is
served by ``http1server`` (the LLM gateway's hot path), with the same probes and the same drain.

What a caller may rely on:

- ``/healthz`` and ``/livez`` answer 200 while the event loop runs (a wedged loop fails them, so
  the kubelet restarts the pod). ``/readyz`` answers 200 when the program's ``ready()`` returns
  None, and 503 with its reason otherwise, and 503 from the moment a drain begins.
- On SIGTERM or SIGINT: readiness goes false, the listening sockets close, the ``on_drain`` hooks
  run (a program ends its long-lived streams there), requests in flight get ``grace_seconds`` to
  finish and are then cancelled, and last the ``on_stop`` hooks run (a program closes its upstreams
  and children there).
- A client that goes away mid-request cancels its handler (aiohttp's ``handler_cancellation``, or
  ``http1server``'s own), so work done for nobody stops.
- ``configure_logging`` sets up structlog: JSON lines by default (one object per line, what log
  collectors parse), or console output for a terminal. JSON lines logged while the event loop runs
  are written together at the end of the loop's turn (one ``write`` for all the requests that
  finished in it, not one each); lines logged outside the loop, and those pending at exit, are
  written at once. A process killed with SIGKILL loses at most the lines of its last turn.
- ``serve_main`` is a program's command line: ``--config PATH`` (required), ``--host``,
  ``--log-level`` and ``--log-format``; a config that does not load or a program that cannot be
  built prints ``<prog>: <error>`` on stderr and returns 2; otherwise it serves until the drain ends
  (on uvloop when present) and returns 0.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping, Sequence
from typing import Any, Final, Literal, Protocol

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agentkube.dataplane import http1server

__all__ = ["Hook", "Program", "Runnable", "configure_logging", "log_info", "serve_main"]

Hook = Callable[[], Awaitable[None]]

log = structlog.get_logger("agentkube.dataplane")


class _LineWriter:
    """structlog's logger for JSON lines: bytes gathered per event-loop turn, written in one go."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()
        self._scheduled = False
        atexit.register(self.flush)

    def msg(self, line: bytes) -> None:
        self._pending += line
        self._pending += b"\n"
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    info = debug = warning = warn = error = critical = exception = fatal = failure = err = log = msg

    def flush(self) -> None:
        self._scheduled = False
        pending = self._pending
        written = 0
        try:
            while written < len(pending):
                written += os.write(self._fd, pending[written:] if written else pending)
        except BlockingIOError:  # a non-blocking stderr that is full: the rest goes with the next line
            del pending[:written]
            return
        except OSError:
            pass  # stderr is gone; a log line is not worth failing a request for
        pending.clear()


class _Timestamp:
    """structlog's ``TimeStamper(fmt="iso", utc=True)`` output (``2026-12-01T18:00:00.123456Z``) at a
    third of its cost: the date and time of day are formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


_timestamp = _Timestamp()
_lines: _LineWriter | None = None


def _line_writer(*args: Any) -> _LineWriter:
    global _lines
    if _lines is None:
        sys.stderr.flush()
        _lines = _LineWriter(sys.stderr.fileno())
    return _lines


_info_lines: _LineWriter | None = None
"""Where ``log_info`` writes directly: set when logs are JSON lines at level info or below."""


def log_info(event: str, fields: dict[str, Any]) -> None:
    """``log.info(event, **fields)`` for a line a program writes per request: the same JSON line
    structlog would write (the fields, ``event``, ``level``, ``timestamp``), at a third of the cost;
    through structlog when logs are console or the level is above info. ``fields`` is consumed."""
    lines = _info_lines
    if lines is None:
        if _info_enabled:
            log.info(event, **fields)
        return
    fields["event"] = event
    fields["level"] = "info"
    _timestamp(None, "info", fields)
    lines.msg(orjson.dumps(fields))


_info_enabled = True


def configure_logging(level: str = "info", fmt: Literal["json", "console"] = "json") -> None:
    """structlog for a data-plane program: level by name, JSON lines or console, ISO timestamps."""
    global _info_lines, _info_enabled
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    _info_enabled = numeric <= logging.INFO
    _info_lines = _line_writer() if fmt == "json" and _info_enabled else None
    # JSON lines are rendered by orjson as bytes (half the cost of the standard json module, which
    # matters at one line per request); the console form is for people and stays text.
    renderer: Any
    factory: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory = _line_writer
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    # aiohttp's own access log is off: requests are counted in metrics, and errors are ours to log.
    logging.getLogger("aiohttp.access").disabled = True


class Runnable(Protocol):
    """What ``serve_main`` builds: a program whose ``run()`` serves until the drain ends."""

    def run(self) -> Coroutine[Any, Any, None]: ...


def serve_main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    config_help: str,
    build: Callable[[argparse.Namespace], Runnable],
) -> int:
    """Parse a data-plane program's command line, configure logs, build the program and serve it.

    ``build`` gets the parsed arguments (``config``, ``host``, ``log_level``, ``log_format``), loads
    the config and returns the program; a ``ConfigError``, ``ValueError`` or ``OSError`` it raises is
    printed as ``<prog>: <error>`` and the exit code is 2.
    """
    from agentkube.dataplane.configfile import ConfigError

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help=config_help)
    parser.add_argument("--host", default=None, help="address to bind (default: every interface)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="json", choices=["json", "console"])
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        program = build(args)
    except (ConfigError, ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio serves as well
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(program.run())
    return 0


class Program:
    """A data-plane program's two servers and its lifecycle; routes are added to ``app`` (aiohttp),
    or with ``lean_api`` to ``routes`` (``http1server``)."""

    def __init__(
        self,
        *,
        port: int,
        metrics_port: int,
        registry: CollectorRegistry,
        ready: Callable[[], str | None],
        host: str | None = None,
        grace_seconds: float = 25.0,
        lean_api: bool = False,
    ) -> None:
        """host: the address to bind (None: every interface); ready: None when ready, else why not;
        lean_api: serve the API port with ``http1server`` (routes go into ``routes``, not ``app``)."""
        self.port = port
        self.metrics_port = metrics_port
        self.host = host
        self.grace_seconds = grace_seconds
        self.registry = registry
        self._ready = ready
        self.draining = False
        self.on_drain: list[Hook] = []
        self.on_stop: list[Hook] = []
        self._stop = asyncio.Event()
        self._app: web.Application | None = None
        self._routes: http1server.Routes | None = None
        if lean_api:
            self._routes = http1server.Routes()
            self._routes.add_get("/healthz", self._lean_alive)
            self._routes.add_get("/livez", self._lean_alive)
            self._routes.add_get("/readyz", self._lean_readyz)
        else:
            self._app = web.Application(handler_args={"max_field_size": 16384})
            self._app.router.add_get("/healthz", self._alive)
            self._app.router.add_get("/livez", self._alive)
            self._app.router.add_get("/readyz", self._readyz)
        self._metrics_app = web.Application()
        self._metrics_app.router.add_get("/metrics", self._metrics)
        self.bound: dict[str, int] = {}
        """The ports actually bound, by server (``api``, ``metrics``): useful when a port was 0."""

    @property
    def app(self) -> web.Application:
        """The aiohttp application the API port serves (not there with ``lean_api``)."""
        if self._app is None:
            raise RuntimeError("this program serves its API with http1server: add routes to program.routes")
        return self._app

    @property
    def routes(self) -> http1server.Routes:
        """The routes the API port serves with ``lean_api`` (not there without it)."""
        if self._routes is None:
            raise RuntimeError("this program serves its API with aiohttp: add routes to program.app")
        return self._routes

    def _readiness(self) -> tuple[int, str]:
        """``/readyz``'s status and text, whichever server answers it."""
        reason = "draining" if self.draining else self._ready()
        return (200, "ok\n") if reason is None else (503, f"not ready: {reason}\n")

    async def _alive(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        status, text = self._readiness()
        return web.Response(status=status, text=text)

    async def _lean_alive(self, request: http1server.Request) -> http1server.Response:
        return http1server.Response(text="ok\n")

    async def _lean_readyz(self, request: http1server.Request) -> http1server.Response:
        status, text = self._readiness()
        return http1server.Response(status=status, text=text)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def stop(self) -> None:
        """Begin the drain, as SIGTERM does."""
        self._stop.set()

    async def run(self, started: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve until SIGTERM/SIGINT or ``stop()``, then drain; ``started`` runs once both servers listen."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        lean = http1server.Server(self._routes) if self._routes is not None else None
        api: web.AppRunner | None = None
        if lean is None:
            api = web.AppRunner(
                self.app, handle_signals=False, shutdown_timeout=self.grace_seconds, handler_cancellation=True
            )
            self.app.on_shutdown.append(self._drain)
            await api.setup()
        metrics = web.AppRunner(self._metrics_app, handle_signals=False, shutdown_timeout=1.0)
        await metrics.setup()
        try:
            if lean is not None:
                await lean.start(self.host, self.port)
                self.bound["api"] = lean.port if lean.port is not None else self.port
            servers = [("metrics", metrics, self.metrics_port)]
            if api is not None:
                servers.insert(0, ("api", api, self.port))
            for name, runner, port in servers:
                site = web.TCPSite(runner, self.host, port, reuse_address=True)
                await site.start()
                self.bound[name] = _bound_port(runner, port)
            log.info("serving", port=self.bound["api"], metrics_port=self.bound["metrics"])
            if started is not None:
                await started()
            _settle_memory()
            await self._stop.wait()
            log.info("draining", grace_seconds=self.grace_seconds)
            self.draining = True
        finally:
            # Closes the listening socket, runs the drain hooks (aiohttp: on_shutdown), then gives
            # handlers in flight the grace period before cancelling them.
            if lean is not None:
                lean.close()
                await self._drain(None)
                await lean.shutdown(self.grace_seconds)
            elif api is not None:
                await api.cleanup()
            for hook in self.on_stop:
                try:
                    await hook()
                except Exception:
                    log.exception("stop hook failed")
            await metrics.cleanup()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            log.info("stopped")

    async def _drain(self, app: web.Application | None) -> None:
        self.draining = True
        for hook in self.on_drain:
            try:
                await hook()
            except Exception:
                log.exception("drain hook failed")


def _settle_memory() -> None:
    """What the program made to start (modules, the config, pydantic's validators, the metrics) lives as
    long as it does: moved out of the cyclic collector's sight (``gc.freeze``) so that no collection
    walks it again, and young collections made rarer, since a request's objects are freed by their
    reference counts and rarely form cycles."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])


_GC_YOUNG: Final = 20_000


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked
