"""Frame layout and an incremental, bounded frame decoder.

The decoder is fed whatever bytes arrive and yields whole frames; anything that cannot
be a valid frame raises ProtocolError, after which the stream cannot be trusted again.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 1 << 20
DATA_CHUNK = 256 * 1024
WINDOW = 2 << 20
HEADER = struct.Struct(">IIBBH")


class ProtocolError(Exception):
    """The peer sent bytes that do not follow docs/protocol.md."""


class FrameType(enum.IntEnum):
    HELLO = 0x01
    INFO = 0x02
    INFO_OK = 0x03
    EXEC = 0x10
    STARTED = 0x11
    STDIN = 0x12
    STDOUT = 0x13
    STDERR = 0x14
    EXIT = 0x15
    SIGNAL = 0x16
    RESIZE = 0x17
    WINDOW = 0x18
    CANCEL = 0x19
    ERROR = 0x1F
    FS = 0x20
    DATA = 0x21
    DONE = 0x22
    ENTRIES = 0x23
    SHUTDOWN = 0x30
    KILL = 0x31


class Flag(enum.IntFlag):
    NONE = 0
    EOF = 1


DATA_TYPES = frozenset({FrameType.STDIN, FrameType.STDOUT, FrameType.STDERR, FrameType.DATA})
TERMINAL_TYPES = frozenset({FrameType.EXIT, FrameType.DONE, FrameType.ERROR})


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    stream: int
    payload: bytes = b""
    flags: Flag = Flag.NONE

    def encode(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        return HEADER.pack(len(self.payload), self.stream, self.type, self.flags, 0) + self.payload

    @property
    def eof(self) -> bool:
        return bool(self.flags & Flag.EOF)


def parse_header(buffer: bytes | bytearray, offset: int = 0) -> tuple[int, int, FrameType, Flag]:
    """Validate the 12-byte header at `offset`; returns (payload length, stream, type, flags)."""
    length, stream, type_, flags, reserved = HEADER.unpack_from(buffer, offset)
    if length > MAX_PAYLOAD:
        raise ProtocolError(f"frame payload length {length} exceeds {MAX_PAYLOAD}")
    if reserved:
        raise ProtocolError(f"reserved header bits set ({reserved:#x})")
    if flags & ~int(Flag.EOF) & 0xFF:
        raise ProtocolError(f"unknown frame flags {flags:#x}")
    try:
        frame_type = FrameType(type_)
    except ValueError:
        raise ProtocolError(f"unknown frame type {type_:#x}") from None
    return length, stream, frame_type, Flag(flags)


class FrameDecoder:
    """Turns a byte stream into frames; holds at most one partial frame.

    Consumed bytes are dropped once per `feed`, not per frame, and each payload is copied
    once: this is the hot path of every transfer.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._consumed = 0

    def feed(self, data: bytes) -> Iterator[Frame]:
        if self._consumed:
            del self._buffer[: self._consumed]
            self._consumed = 0
        self._buffer += data
        while len(self._buffer) - self._consumed >= HEADER.size:
            length, stream, frame_type, flags = parse_header(self._buffer, self._consumed)
            start = self._consumed + HEADER.size
            end = start + length
            if len(self._buffer) < end:
                return
            with memoryview(self._buffer) as view:
                payload = bytes(view[start:end])
            self._consumed = end
            yield Frame(frame_type, stream, payload, flags)

    @property
    def pending(self) -> int:
        return len(self._buffer) - self._consumed
