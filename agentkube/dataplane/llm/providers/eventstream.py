"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded as the bytes arrive.

Bedrock's streaming answers (ConverseStream, InvokeModelWithResponseStream) are not SSE but binary
messages, each::

    total length (uint32) | headers length (uint32) | prelude CRC32 (of the 8 bytes before it)
    headers (name length uint8, name, value type uint8, value) ... | payload | message CRC32

with every integer big-endian and the message CRC32 taken over everything before it.
``EventStreamDecoder.feed(chunk)`` returns the messages ``chunk`` completes, in order; a message may
be split anywhere across chunks (the prelude too), and several may arrive in one chunk. What a
caller may rely on:

- Both CRCs are checked: a prelude whose CRC does not match raises ``EventStreamError`` before its
  length is trusted (so a corrupt length never makes the decoder wait for bytes that will not come),
  and a message whose CRC does not match raises it before the message is returned.
- Size is bounded: a message longer than ``max_message_bytes`` (24 MiB by default; AWS's own limits
  are 16 MiB of payload and 128 KiB of headers) or shorter than the 16 bytes of prelude and CRC
  raises ``EventStreamError`` as soon as its prelude is read, so the buffer never grows past one
  message.
- ``finish()`` raises when the stream ended inside a message (a cut stream); it returns nothing else.
- Header values are typed as the format says: bool, int (byte, short, integer, long, and a
  timestamp in milliseconds), bytes (byte array, and the 16 bytes of a UUID) and str.

``EventStreamError`` is a ``ValueError``: the gateway ends a client's stream with an error event for
it, as for any malformed upstream stream.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["EventStreamDecoder", "EventStreamError", "HeaderValue", "Message"]

HeaderValue = bool | int | bytes | str

PRELUDE: Final = 12  # total length, headers length, prelude CRC
MINIMUM: Final = PRELUDE + 4  # and the message CRC, with no headers and no payload
DEFAULT_MAX_MESSAGE_BYTES: Final = 24 * 1024 * 1024

_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_FIXED: Final[dict[int, struct.Struct]] = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
    8: struct.Struct(">q"),
}
_LENGTH = struct.Struct(">H")


class EventStreamError(ValueError):
    """Bytes that are not a well-formed AWS event stream (CRC mismatch, bad sizes, a cut message)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One event-stream message: its headers by name, and its payload bytes."""

    headers: dict[str, HeaderValue]
    payload: bytes


class EventStreamDecoder:
    """An incremental decoder of one event stream; see the module docstring."""

    __slots__ = ("_buffer", "_max", "_need")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._need = 0  # total length of the message under way once its prelude is checked, else 0

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        messages: list[Message] = []
        buffer = self._buffer
        start = 0
        while True:
            available = len(buffer) - start
            if self._need == 0:
                if available < PRELUDE:
                    break
                self._need = self._prelude(buffer, start)
            if available < self._need:
                break
            messages.append(self._message(memoryview(buffer)[start : start + self._need]))
            start += self._need
            self._need = 0
        if start:
            del buffer[:start]
        return messages

    def finish(self) -> list[Message]:
        if self._buffer:
            left = len(self._buffer)
            self._buffer.clear()
            self._need = 0
            raise EventStreamError(f"the event stream ended inside a message ({left} bytes of it read)")
        return []

    def _prelude(self, buffer: bytearray, start: int) -> int:
        total, headers, crc = _PRELUDE.unpack_from(buffer, start)
        if binascii.crc32(memoryview(buffer)[start : start + 8]) != crc:
            raise EventStreamError("an event-stream message's prelude CRC does not match")
        if total < MINIMUM or total > self._max:
            raise EventStreamError(
                f"an event-stream message declares {total} bytes (allowed: {MINIMUM} to {self._max})"
            )
        if headers > total - MINIMUM:
            raise EventStreamError(
                f"an event-stream message declares {headers} bytes of headers in {total} bytes"
            )
        return int(total)

    def _message(self, data: memoryview) -> Message:
        (crc,) = _CRC.unpack_from(data, len(data) - 4)
        if binascii.crc32(data[:-4]) != crc:
            raise EventStreamError("an event-stream message's CRC does not match")
        _, headers_length, _ = _PRELUDE.unpack_from(data, 0)
        end = PRELUDE + headers_length
        return Message(_headers(data[PRELUDE:end]), bytes(data[end:-4]))


def _headers(data: memoryview) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(data):
            size = data[at]
            name = bytes(data[at + 1 : at + 1 + size]).decode("utf-8")
            at += 1 + size
            kind = data[at]
            at += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _FIXED:
                shape = _FIXED[kind]
                (value,) = shape.unpack_from(data, at)
                at += shape.size
            elif kind in (6, 7):
                (length,) = _LENGTH.unpack_from(data, at)
                raw = bytes(data[at + 2 : at + 2 + length])
                if len(raw) != length:
                    raise EventStreamError("an event-stream header value runs past its headers")
                at += 2 + length
                value = raw.decode("utf-8") if kind == 7 else raw
            elif kind == 9:
                value = bytes(data[at : at + 16])
                at += 16
            else:
                raise EventStreamError(f"an event-stream header has unknown value type {kind}")
            if at > len(data):
                raise EventStreamError("an event-stream header value runs past its headers")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise EventStreamError(f"an event-stream message's headers are malformed: {e}") from None
    return headers
