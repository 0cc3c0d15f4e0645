"""The guest channel: the host end of the virtio-serial port, as a unix socket.

The launch binds the socket before QEMU starts and QEMU's chardev connects to it, so
bytes sent before the guest opens its port wait in the socket instead of being lost. Every
frame from the guest is parsed with the bounded decoder; garbage raises ProtocolError.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

from corral._protocol import (
    PROTOCOL_VERSION,
    Fields,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._protocol.fields import Value

READ_CHUNK = 1 << 20
ENTROPY_BYTES = 64


class GuestChannel:
    """Owns the listening socket and the one connection QEMU makes to it."""

    def __init__(self, listening: socket.socket) -> None:
        self.socket_path = Path(listening.getsockname())
        self._listening = listening
        self._server: asyncio.AbstractServer | None = None
        self._connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = FrameDecoder()

    async def listen(self) -> None:
        self._connected = asyncio.get_running_loop().create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self._connected.done():
                writer.close()
                return
            self._connected.set_result((reader, writer))

        self._server = await asyncio.start_unix_server(
            accept, sock=self._listening, limit=READ_CHUNK
        )

    async def handshake(self, hostname: str = "") -> Fields:
        """Wait for QEMU to connect, greet the guest and return its HELLO fields.

        The greeting gives the guest its identity: the time, fresh entropy and, when
        given, its hostname. A guest restored from a boot snapshot needs all three (its
        clock, random state and name are the snapshot's); a cold boot gets the same."""
        self._reader, self._writer = await self._connected
        greeting: list[tuple[int, Value]] = [
            (1, PROTOCOL_VERSION),
            (2, time.time_ns()),
            (3, os.urandom(ENTROPY_BYTES)),
        ]
        if hostname:
            greeting.append((4, hostname))
        self.send(Frame(FrameType.HELLO, 0, encode_fields(greeting)))
        async for frame in self.frames():
            if frame.stream == 0 and frame.type is FrameType.HELLO:
                hello = decode_fields(frame.payload)
                if hello.int(1) != PROTOCOL_VERSION:
                    raise ProtocolError(f"guest speaks protocol version {hello.int(1)}")
                return hello
            if frame.stream == 0 and frame.type is FrameType.ERROR:
                reason = decode_fields(frame.payload).str(3)
                raise ProtocolError(f"guest refused the handshake: {reason}")
            raise ProtocolError(f"guest sent {frame.type.name} before HELLO")
        raise ProtocolError("guest channel closed during the handshake")

    def send(self, frame: Frame) -> None:
        """Queue a frame for the guest; header and payload are written apart, so a
        1 MiB payload is not copied to be joined to its header."""
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write(frame.header())
        self._writer.write(frame.payload)

    async def frames(self) -> AsyncIterator[Frame]:
        assert self._reader is not None
        for frame in self._decoder.feed(b""):
            yield frame
        while True:
            try:
                data = await self._reader.read(READ_CHUNK)
            except ConnectionResetError:
                return  # QEMU went away: the same as the guest closing the channel
            if not data:
                return
            for frame in self._decoder.feed(data):
                yield frame

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._server is not None:
            self._server.close()
        self._listening.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
