"""A connected stream socket carrying protocol frames, driven by the supervisor's reactor.

The supervisor relays every byte of a transfer: in from one socket, out through another.
asyncio's socket transport (Python 3.11) copied what the peer could not take at once into
a bytearray that is reallocated and moved as it grows and drains; on a 256 MiB file write
that copy was a third of the supervisor's CPU time. Here what cannot be sent at once
stays queued as the caller's own views and leaves with sendmsg, so a payload on its way
out is copied only by the kernel. Frames coming in go through the bounded decoder and
are handed to `on_frame` as they arrive.
"""

from __future__ import annotations

import itertools
import socket
from collections import deque
from collections.abc import Callable

from corral._protocol import Frame, FrameDecoder, ProtocolError
from corral.node_agent.reactor import Reactor

READ_CHUNK = 1 << 20
IOV_LIMIT = 64  # views per sendmsg, well under the kernel's IOV_MAX

FrameHandler = Callable[[Frame], None]
EndHandler = Callable[[ProtocolError | None], None]


class FrameSocket:
    """Owns one connected socket: its reads, its queued writes and its closing.

    Reading starts at once. Each frame goes to `on_frame`, which may raise ProtocolError
    to reject it. `on_end` is called once, from the reactor, when reading is over: with
    the ProtocolError for garbage or a rejected frame, with None when the peer went away
    or this end closed."""

    def __init__(
        self, sock: socket.socket, reactor: Reactor, on_frame: FrameHandler, on_end: EndHandler
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._reactor = reactor
        self._decoder = FrameDecoder()
        self._on_frame = on_frame
        self._on_end = on_end
        self._outgoing: deque[memoryview] = deque()
        self._writing = False
        self._reading = True
        self.queued = 0
        """Bytes accepted by `send` that the peer has not taken yet."""
        self.closed = False
        reactor.add_reader(self._fd, self._read)

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
            self._reactor.add_writer(self._fd, self._flush)
            self._writing = True
        elif not self._outgoing:
            self._stop_writing()
            if self.closed:
                self._sock.close()

    def _stop_writing(self) -> None:
        if self._writing:
            self._reactor.remove_writer(self._fd)
            self._writing = False

    def _read(self) -> None:
        try:
            data = self._sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer
            data = b""
        if not data:
            self._end(None)
            return
        try:
            for frame in self._decoder.feed(data):
                if not self._reading:  # on_frame closed this socket
                    break
                self._on_frame(frame)
        except ProtocolError as exc:
            self._end(exc)

    def _end(self, error: ProtocolError | None) -> None:
        if not self._reading:
            return
        self._reading = False
        self._reactor.remove_reader(self._fd)
        self._reactor.call_soon(lambda: self._on_end(error))

    def close(self) -> None:
        """Stop reading (`on_end` follows); the socket closes once what is queued has been
        sent. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._end(None)
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
