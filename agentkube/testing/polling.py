"""Waiting for a world that converges: poll a check with a deadline, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["eventually"]


async def eventually(
    check: Callable[[], Any],
    what: str,
    within: float = 60.0,
    *,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``check`` (a plain or async callable) until it returns something truthy, and return that.

    After ``within`` seconds (default 60) the test fails with an ``AssertionError`` naming ``what``
    and, when ``ignoring`` swallowed errors on the way ("not there yet"), the last of them.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except ignoring as error:
            result, last = None, error
        if result:
            return result
        if loop.time() > deadline:
            detail = f" (last: {last!r})" if last is not None else ""
            raise AssertionError(f"timed out after {within:g} s waiting until {what}{detail}")
        await asyncio.sleep(interval)
