"""Content-block numbering for stream decoders: one open block at a time, numbered in order.

An upstream names its blocks in its own terms (Chat's tool-call ``index``, Responses' ``output_index``
and ``content_index``, Anthropic's ``index``); a decoder asks ``Blocks.enter(key)`` for the internal
index of the block a delta belongs to. Entering a new key closes the open block first (a
``BlockStop`` event), which is what keeps the internal stream sequential. A delta for a block already
closed cannot be placed any more: ``enter`` answers ``None`` and the decoder reports the stream as
malformed rather than reordering it.
"""

from __future__ import annotations

from collections.abc import Hashable

from agentkube.dataplane.llm.translate import ir

__all__ = ["Blocks"]


class Blocks:
    __slots__ = ("_closed", "_count", "_key", "index")

    def __init__(self) -> None:
        self._count = 0
        self._key: Hashable | None = None
        self._closed: set[Hashable] = set()
        self.index = -1
        """The open block's index (``-1`` when none is open)."""

    @property
    def open_key(self) -> Hashable | None:
        return self._key

    def enter(self, key: Hashable, out: list[ir.Event]) -> tuple[int, bool] | None:
        """The index of ``key``'s block and whether it is new; ``None`` if that block was closed."""
        if key == self._key:
            return self.index, False
        if key in self._closed:
            return None
        self.close(out)
        self._key = key
        self.index = self._count
        self._count += 1
        return self.index, True

    def close(self, out: list[ir.Event]) -> None:
        """Close the open block, if any."""
        if self._key is not None:
            out.append(ir.BlockStop(self.index))
            self._closed.add(self._key)
            self._key = None
            self.index = -1
