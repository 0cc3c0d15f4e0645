"""FrameSocket over a real socket pair: queued writes, closing, and reads that end."""

from __future__ import annotations

import hashlib
import os
import socket
import threading

from corral._protocol import Frame, FrameType, ProtocolError
from corral.node_agent.frame_socket import FrameSocket
from corral.node_agent.reactor import Reactor


class Peer:
    """A FrameSocket on `ours` with what its handlers were given."""

    def __init__(self, ours: socket.socket) -> None:
        self.reactor = Reactor()
        self.frames: list[Frame] = []
        self.ends: list[ProtocolError | None] = []
        self.socket = FrameSocket(ours, self.reactor, self.frames.append, self.ends.append)

    def run_until_ended(self) -> None:
        assert self.reactor.run_until(lambda: bool(self.ends), timeout=5)


def drain_in_thread(sock: socket.socket, expected: int) -> tuple[threading.Thread, list[bytes]]:
    """Read up to `expected` bytes from the blocking end while the reactor runs."""
    parts: list[bytes] = []

    def read() -> None:
        got = 0
        while got < expected:
            part = sock.recv(1 << 20)
            if not part:
                break
            parts.append(part)
            got += len(part)

    reader = threading.Thread(target=read)
    reader.start()
    return reader, parts


def test_frames_larger_than_the_socket_buffer_arrive_whole_and_in_order() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(ours)
    payloads = [os.urandom(1 << 20) for _ in range(6)]
    for n, payload in enumerate(payloads):
        peer.socket.send_frame(Frame(FrameType.DATA, n + 1, payload))
    assert peer.socket.queued > 0  # far more than a unix socket buffers: the rest waits
    total = sum(12 + len(p) for p in payloads)
    reader, parts = drain_in_thread(theirs, total)
    assert peer.reactor.run_until(lambda: peer.socket.queued == 0, timeout=10)
    reader.join(10)
    received = b"".join(parts)
    assert len(received) == total
    offset = 0
    for n, payload in enumerate(payloads):
        assert received[offset + 4 : offset + 8] == (n + 1).to_bytes(4, "big")
        body = received[offset + 12 : offset + 12 + len(payload)]
        assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
        offset += 12 + len(payload)
    peer.socket.close()
    theirs.close()


def test_close_sends_what_is_queued_then_closes() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(ours)
    data = os.urandom(4 << 20)
    peer.socket.send(data)
    peer.socket.close()
    peer.socket.send(b"after close")  # dropped
    reader, parts = drain_in_thread(theirs, len(data) + 1)
    assert peer.reactor.run_until(lambda: ours.fileno() == -1, timeout=10)
    reader.join(10)
    assert b"".join(parts) == data  # everything, then EOF
    assert peer.ends == [None]
    theirs.close()


def test_abort_drops_what_is_queued() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(ours)
    peer.socket.send(os.urandom(8 << 20))
    peer.socket.abort()
    assert peer.socket.queued == 0
    reader, parts = drain_in_thread(theirs, 8 << 20)
    reader.join(10)
    assert len(b"".join(parts)) < 8 << 20
    theirs.close()


def test_abort_after_close_closes_a_socket_still_draining() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(ours)
    peer.socket.send(os.urandom(8 << 20))
    peer.socket.close()  # waits for the peer to read the queue, which it never does
    assert ours.fileno() >= 0
    peer.socket.abort()
    assert ours.fileno() == -1
    theirs.close()


def test_a_handler_that_closes_gets_no_further_frames_and_one_end() -> None:
    ours, theirs = socket.socketpair()
    reactor = Reactor()
    frames: list[Frame] = []
    ends: list[ProtocolError | None] = []

    def take_one(frame: Frame) -> None:
        frames.append(frame)
        peer.close()

    peer = FrameSocket(ours, reactor, take_one, ends.append)
    theirs.sendall(b"".join(Frame(FrameType.STDOUT, 3, b"%d" % n).encode() for n in range(3)))
    assert reactor.run_until(lambda: bool(ends), timeout=5)
    assert [(f.type, f.stream, f.payload) for f in frames] == [(FrameType.STDOUT, 3, b"0")]
    assert ends == [None]
    assert ours.fileno() == -1
    theirs.close()


def test_a_peer_that_goes_away_ends_the_frames_and_later_sends_are_dropped() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(ours)
    theirs.sendall(Frame(FrameType.STDOUT, 1, b"x").encode()[:5])  # a partial frame
    theirs.close()
    peer.run_until_ended()
    assert peer.frames == []
    assert peer.ends == [None]
    peer.socket.send(b"nobody listens")  # EPIPE: dropped, not raised
    peer.socket.send(b"still nobody")
    assert peer.socket.queued == 0
    peer.socket.close()


def test_garbage_is_a_protocol_error() -> None:
    ours, theirs = socket.socketpair()
    peer = Peer(ours)
    theirs.sendall(b"\xff" * 64)
    peer.run_until_ended()
    assert isinstance(peer.ends[0], ProtocolError)
    peer.socket.close()
    assert len(peer.ends) == 1  # ended once
    theirs.close()


def test_a_frame_its_handler_rejects_ends_the_reading_with_that_error() -> None:
    ours, theirs = socket.socketpair()
    reactor = Reactor()
    ends: list[ProtocolError | None] = []

    def reject(frame: Frame) -> None:
        raise ProtocolError(f"no {frame.type.name} here")

    FrameSocket(ours, reactor, reject, ends.append)
    theirs.sendall(Frame(FrameType.EXIT, 2, b"").encode() * 2)
    assert reactor.run_until(lambda: bool(ends), timeout=5)
    assert [str(error) for error in ends] == ["no EXIT here"]
    theirs.close()
    ours.close()
