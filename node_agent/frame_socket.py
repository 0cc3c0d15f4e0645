"""A connected stream socket carrying protocol frames, driven by the running event loop.

The supervisor relays every byte of a transfer: in from one socket, out through another.
asyncio's socket transport (Python 3.11) copies what the peer cannot take at once into a
bytearray that is reallocated and moved as it grows and drains; on a 256 MiB file write
that copy was a third of the supervisor's CPU time. Here what cannot be sent at once
stays queued as the caller's own views and leaves with sendmsg, so a payload on its way
out is copied only by the kernel. Frames coming in go through the bounded decoder.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections import deque
from collections.abc import AsyncIterator

from corral._protocol import Frame, FrameDecoder

READ_CHUNK = 1 << 20
IOV_LIMIT = 64  # views per sendmsg, well under the kernel's IOV_MAX


class FrameSocket:
    """Owns one connected socket: its reads, its queued writes and its closing."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._decoder = FrameDecoder()
        self._outgoing: deque[memoryview] = deque()
        self._writing = False
        self._reading = False
        self._readable: asyncio.Future[None] | None = None
        self.queued = 0
        """Bytes accepted by `send` that the peer has not taken yet."""
        self.closed = False

    def send(self, *parts: bytes | memoryview) -> None:
        """Queue bytes for the peer, sending at once what the socket takes. Never blocks:
        flow control is the protocol's windows. Dropped once closed or the peer is gone."""
        if self.closed:
            return
        for part in parts:
            if part:
                self._outgoing.append(memoryview(part))
                self.queued += len(part)
        if not self._writing:
            self._flush()

    def send_frame(self, frame: Frame) -> None:
        self.send(frame.header(), frame.payload)

    def _flush(self) -> None:
        while self._outgoing:
            try:
                sent = self._sock.sendmsg(list(itertools.islice(self._outgoing, IOV_LIMIT)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the peer is gone; reading will see it end
                self._outgoing.clear()
                self.queued = 0
                break
            self.queued -= sent
            while sent:
                head = self._outgoing[0]
                if len(head) > sent:
                    self._outgoing[0] = head[sent:]
                    break
                sent -= len(head)
                self._outgoing.popleft()
        if self._outgoing and not self._writing:
            self._loop.add_writer(self._fd, self._flush)
            self._writing = True
        elif not self._outgoing:
            self._stop_writing()
            if self.closed:
                self._sock.close()

    def _stop_writing(self) -> None:
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    async def _receive(self) -> bytes:
        """The next bytes from the peer; b"" once it or `close` ended the connection."""
        while not self.closed:
            try:
                return self._sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionResetError:
                return b""
            self._readable = self._loop.create_future()
            if not self._reading:
                self._loop.add_reader(self._fd, self._on_readable)
                self._reading = True
            await self._readable
        return b""

    def _on_readable(self) -> None:
        """Wake the reader. The fd stays watched while reads follow one another (most
        arrive a few KiB at a time); with nobody waiting it is set aside until the next
        read, so unread bytes do not spin the loop."""
        if self._readable is None or self._readable.done():
            self._stop_reading()
        else:
            self._readable.set_result(None)

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    async def frames(self) -> AsyncIterator[Frame]:
        """Frames from the peer until it closes; garbage raises ProtocolError. A new
        iteration first yields frames a previous one left decoded but unread."""
        for frame in self._decoder.feed(b""):
            yield frame
        while data := await self._receive():
            for frame in self._decoder.feed(data):
                yield frame

    def close(self) -> None:
        """Stop reading (a read in progress ends); the socket closes once what is queued
        has been sent. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._stop_reading()
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)
        if not self._outgoing:
            self._sock.close()

    def abort(self) -> None:
        """Close at once, dropping what is queued: for a peer that stopped reading.
        Also ends a `close` that is still waiting for the queue to drain."""
        self.close()
        self._stop_writing()
        self._outgoing.clear()
        self.queued = 0
        self._sock.close()
