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
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._protocol.fields import Value
from corral.node_agent.frame_socket import FrameSocket

ENTROPY_BYTES = 64


class GuestChannel:
    """Owns the listening socket and the one connection QEMU makes to it."""

    def __init__(self, listening: socket.socket) -> None:
        self.socket_path = Path(listening.getsockname())
        self._listening = listening
        self._accepting: asyncio.Task[socket.socket] | None = None
        self._guest: FrameSocket | None = None

    async def listen(self) -> None:
        """Start waiting for QEMU's connection; `handshake` takes it."""
        self._listening.setblocking(False)
        loop = asyncio.get_running_loop()
        self._accepting = asyncio.ensure_future(self._accept(loop))

    async def _accept(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        connection, _ = await loop.sock_accept(self._listening)
        self._listening.close()  # QEMU's is the one connection; later ones are refused
        return connection

    async def handshake(self, hostname: str = "") -> Fields:
        """Wait for QEMU to connect, greet the guest and return its HELLO fields.

        The greeting gives the guest its identity: the time, fresh entropy and, when
        given, its hostname. A guest restored from a boot snapshot needs all three (its
        clock, random state and name are the snapshot's); a cold boot gets the same."""
        assert self._accepting is not None
        if self._guest is None:
            self._guest = FrameSocket(await self._accepting)
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
        """Queue a frame for the guest (dropped if QEMU is not, or no longer, there)."""
        if self._guest is not None:
            self._guest.send_frame(frame)

    async def frames(self) -> AsyncIterator[Frame]:
        assert self._guest is not None
        async for frame in self._guest.frames():
            yield frame

    async def close(self) -> None:
        if self._guest is not None:
            self._guest.close()
        if self._accepting is not None:
            self._accepting.cancel()
        self._listening.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
