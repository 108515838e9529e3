"""Log configuration: structured logs, JSON in a cluster, readable on a terminal, one id per reconcile.

What a caller may rely on:

- ``configure_logging(level, fmt="auto")`` sets up structlog once for the process: ``"json"`` writes
  one JSON object per line (what log collectors in a cluster expect), ``"console"`` a coloured line
  for people, ``"auto"`` picks console when stderr is a terminal and JSON otherwise. Records from the
  standard ``logging`` module (aiohttp, asyncio, kubernetes_asyncio) get the same format and level.
- Every line carries ``timestamp`` (UTC, ISO 8601), ``level``, ``event`` and whatever is bound in the
  context: inside a reconcile that is ``reconcile_id``, ``controller``, ``namespace`` and ``name``.
- ``reconcile_context(controller, namespace, name)`` binds a fresh ``reconcile_id`` (uuid4 hex) with
  the other three for the duration of a ``with`` block, through contextvars: asyncio tasks each see
  their own, so concurrent reconciles never mix their fields.
- Lines carry ``logger``: the name given to ``structlog.get_logger(name)`` (or ``get_logger(name)``
  here), or the stdlib logger's name. Debug calls filtered out by the level cost next to nothing.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor

__all__ = ["LogFormat", "configure_logging", "get_logger", "reconcile_context"]

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}; got {level!r}") from None


def _json_dumps(event: Any, **_: Any) -> str:
    # default=str: an object a caller bound without thinking about JSON still logs instead of raising.
    return orjson.dumps(event, default=str).decode()


def _add_logger_name(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    name = record.name if record is not None else getattr(logger, "name", "")
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


class _NamedPrintLogger(structlog.PrintLogger):
    """A print logger that knows its name, so ``add_logger_name`` works as for stdlib loggers."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        # structlog.get_logger(name) passes the name through; unnamed loggers log without one.
        return _NamedPrintLogger(self._file, str(args[0]) if args else "")


def configure_logging(
    level: str | int = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard ``logging`` root for the whole process."""
    numeric = _parse_level(level)
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if fmt == "json":
        # Tracebacks as structured data (a collector can index the exception type and frames), without
        # frame locals: those would copy tokens and Secret values into the logs.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        raise ValueError(f"log format must be auto, json or console; got {fmt!r}")

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )

    # Libraries log through the standard module; send their records through the same processors.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # aiohttp logs every request at INFO; probes would drown everything else.
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger whose lines carry ``logger=name`` (once ``configure_logging`` ran)."""
    return cast(FilteringBoundLogger, structlog.get_logger(name))


@contextmanager
def reconcile_context(controller: str, namespace: str | None, name: str) -> Iterator[str]:
    """Bind a fresh ``reconcile_id`` with controller, namespace and name; yields the id."""
    reconcile_id = uuid.uuid4().hex
    with structlog.contextvars.bound_contextvars(
        reconcile_id=reconcile_id, controller=controller, namespace=namespace or "", name=name
    ):
        yield reconcile_id
