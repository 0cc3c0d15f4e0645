"""Frame layout and an incremental, bounded frame decoder.

The decoder is fed whatever bytes arrive and yields whole frames; anything that cannot
be a valid frame raises ProtocolError, after which the stream cannot be trusted again.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

PROTOCOL_VERSION = 2
MAX_PAYLOAD = 1 << 20
DATA_CHUNK = 256 * 1024
WINDOW = 8 << 20
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
        return self.header() + self.payload

    def header(self) -> bytes:
        """The 12 bytes in front of the payload: writing them and then the payload
        spares the copy that `encode` makes of a large payload."""
        return encode_header(self.type, self.stream, len(self.payload), self.flags)

    @property
    def eof(self) -> bool:
        return bool(self.flags & Flag.EOF)


def encode_header(frame_type: FrameType, stream: int, length: int, flags: Flag) -> bytes:
    if length > MAX_PAYLOAD:
        raise ValueError(f"payload of {length} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(length, stream, frame_type, flags, 0)


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

    Fed chunks are kept as they came and each payload is cut out of them with one copy
    (a join when it spans chunks): this is the hot path of every transfer, where a 1 MiB
    payload arrives in several reads.
    """

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()
        self._held = 0
        self._header: tuple[int, int, FrameType, Flag] | None = None

    def feed(self, data: bytes) -> Iterator[Frame]:
        if data:
            self._chunks.append(memoryview(data))
            self._held += len(data)
        while True:
            if self._header is None:
                if self._held < HEADER.size:
                    return
                self._header = parse_header(self._take(HEADER.size))
            length, stream, frame_type, flags = self._header
            if self._held < length:
                return
            payload = self._take(length)
            self._header = None
            yield Frame(frame_type, stream, payload, flags)

    def _take(self, size: int) -> bytes:
        """The next `size` held bytes (the caller checked that they are there)."""
        self._held -= size
        parts: list[memoryview] = []
        while size:
            chunk = self._chunks[0]
            if len(chunk) > size:
                parts.append(chunk[:size])
                self._chunks[0] = chunk[size:]
                break
            parts.append(self._chunks.popleft())
            size -= len(chunk)
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)

    @property
    def pending(self) -> int:
        """Bytes held towards the next frame (its parsed header included)."""
        return self._held + (HEADER.size if self._header is not None else 0)
