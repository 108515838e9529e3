"""The AWS event-stream decoder: frames split anywhere, both CRCs checked, sizes bounded.

Frames are encoded here with real CRC32s (``bedrock_standin.frame``), and cross-checked against
botocore's own event-stream parser, so the encoder is not merely agreeing with the decoder.
"""

from __future__ import annotations

import binascii
import itertools
import struct

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkube.dataplane.llm.providers.eventstream import EventStreamDecoder, EventStreamError, Message
from test.e2e.bedrock_standin import frame

HEADERS = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}


def test_a_frame_is_read_whole_with_its_typed_headers() -> None:
    data = frame({**HEADERS, "flag": True, "off": False, "n": -7, "raw": b"\x00\x01"}, b'{"a":1}')
    (message,) = EventStreamDecoder().feed(data)
    assert message == Message(
        {**HEADERS, "flag": True, "off": False, "n": -7, "raw": b"\x00\x01"}, b'{"a":1}'
    )


def test_our_frames_are_what_botocores_parser_reads() -> None:
    data = frame(HEADERS, b'{"contentBlockIndex":0}') + frame({":message-type": "event"}, b"")
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    parsed = [(m.headers, m.payload) for m in buffer]
    ours = [(m.headers, m.payload) for m in EventStreamDecoder().feed(data)]
    assert parsed == ours


def test_a_frame_split_byte_by_byte_comes_out_once_at_its_last_byte() -> None:
    data = frame(HEADERS, b"x" * 100)
    decoder = EventStreamDecoder()
    out = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    assert all(not o for o in out[:-1])
    assert out[-1] == [Message(HEADERS, b"x" * 100)]
    assert decoder.finish() == []


def test_a_corrupt_prelude_crc_is_refused_before_its_length_is_trusted() -> None:
    data = bytearray(frame(HEADERS, b"{}"))
    data[0:4] = struct.pack(">I", 10_000_000)  # a length the CRC no longer covers
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(data[:12]))


def test_a_corrupt_payload_fails_the_message_crc() -> None:
    data = bytearray(frame(HEADERS, b'{"text":"hello"}'))
    data[-6] ^= 0x01
    with pytest.raises(EventStreamError, match="message's CRC"):
        EventStreamDecoder().feed(bytes(data))


def test_a_message_larger_than_the_bound_is_refused_at_its_prelude() -> None:
    data = frame(HEADERS, b"y" * 4096)
    with pytest.raises(EventStreamError, match="declares"):
        EventStreamDecoder(max_message_bytes=1024).feed(data[:12])


def test_a_stream_cut_inside_a_message_fails_at_finish() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(frame(HEADERS, b"{}")[:-3]) == []
    with pytest.raises(EventStreamError, match="ended inside a message"):
        decoder.finish()


def test_headers_running_past_their_length_are_refused() -> None:
    head = b"\x05:name\x07\x00\x50short"  # declares an 80-byte string in 5 bytes
    total = 12 + len(head) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + head
    message += struct.pack(">I", binascii.crc32(message))
    with pytest.raises(EventStreamError, match="header"):
        EventStreamDecoder().feed(message)


header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz:-", min_size=1, max_size=20)
header_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.binary(max_size=40),
    st.text(max_size=40),
)
messages = st.lists(
    st.tuples(st.dictionaries(header_names, header_values, max_size=4), st.binary(max_size=300)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(messages=messages, cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_round_trip_whatever_the_chunking(
    messages: list[tuple[dict[str, object], bytes]], cuts: list[int]
) -> None:
    data = b"".join(frame(h, p) for h, p in messages)  # type: ignore[arg-type]
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    decoder = EventStreamDecoder()
    out: list[Message] = []
    for start, end in itertools.pairwise(points):
        out.extend(decoder.feed(data[start:end]))
    out.extend(decoder.finish())
    assert [(m.headers, m.payload) for m in out] == messages
