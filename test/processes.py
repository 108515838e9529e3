"""Looking at processes from /proc, for tests that check what runs and that nothing is left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["container_pid", "descendants", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> dict[int, str]:
    """Every living process under ``pid``, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = (Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()).strip()
        except OSError:
            continue
        todo.extend(children.get(child, []))
    return found


def container_pid(status: dict[str, Any]) -> int:
    """The pid the local node reports as a container's id (``agentkube-local://<pid>``)."""
    return int(status["containerID"].rsplit("/", 1)[1])
