"""The data plane's JSON log lines: gathered per event-loop turn and written together, never lost."""

from __future__ import annotations

import asyncio
import os

import orjson

from agentkube.dataplane.server import _LineWriter


def _drain(fd: int) -> bytes:
    out = b""
    try:
        while chunk := os.read(fd, 65536):
            out += chunk
    except BlockingIOError:
        pass
    return out


async def test_lines_of_one_turn_are_written_together_at_its_end() -> None:
    read, write = os.pipe()
    os.set_blocking(read, False)
    try:
        lines = _LineWriter(write)
        for i in range(3):
            lines.info(orjson.dumps({"event": "request", "i": i}))
        assert _drain(read) == b"", "nothing is written before the turn ends"
        await asyncio.sleep(0)
        assert [orjson.loads(x)["i"] for x in _drain(read).splitlines()] == [0, 1, 2]
        lines.warning(b'{"event":"next turn"}')
        await asyncio.sleep(0)
        assert _drain(read) == b'{"event":"next turn"}\n'
    finally:
        os.close(read)
        os.close(write)


def test_outside_a_loop_a_line_is_written_at_once_and_a_full_pipe_keeps_the_rest() -> None:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    try:
        lines = _LineWriter(write)
        lines.info(b'{"event":"starting"}')
        assert _drain(read) == b'{"event":"starting"}\n'
        big = b"x" * (1 << 20)  # more than a pipe holds
        lines.error(big)
        got = _drain(read)
        assert 0 < len(got) < len(big) + 1
        lines.flush()
        got += _drain(read)
        while len(got) < len(big) + 1:
            lines.flush()
            got += _drain(read)
        assert got == big + b"\n"
    finally:
        os.close(read)
        os.close(write)


def test_timestamps_are_iso_utc_with_microseconds_as_structlogs_own() -> None:
    import re

    from structlog.processors import TimeStamper

    from agentkube.dataplane.server import _timestamp

    ours = _timestamp(None, "info", {})["timestamp"]
    theirs = TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ours)
    assert ours[:19] == theirs[:19] or ours[:17] == theirs[:17]  # the same second (or its edge)


def test_log_info_writes_the_line_structlog_would_and_nothing_above_info() -> None:
    import subprocess
    import sys

    script = """
import sys
from agentkube.dataplane.server import configure_logging, log, log_info
configure_logging(sys.argv[1], sys.argv[2])
log.info("request", api="chat", status=200, stream=False, input_tokens=None)
log_info("request", {"api": "chat", "status": 200, "stream": False, "input_tokens": None})
"""
    lines = {}
    for level, fmt in (("info", "json"), ("warning", "json"), ("info", "console")):
        done = subprocess.run(
            [sys.executable, "-c", script, level, fmt], capture_output=True, check=True, timeout=60
        )
        lines[level, fmt] = done.stderr.splitlines()
    theirs, ours = (orjson.loads(line) for line in lines["info", "json"])
    assert (
        list(ours)
        == list(theirs)
        == ["api", "status", "stream", "input_tokens", "event", "level", "timestamp"]
    )
    assert {k: v for k, v in ours.items() if k != "timestamp"} == {
        k: v for k, v in theirs.items() if k != "timestamp"
    }
    assert lines["warning", "json"] == [], "an info line is not written at level warning"
    console = lines["info", "console"]
    assert len(console) == 2 and all(b"request" in line and b"api=chat" in line for line in console)
