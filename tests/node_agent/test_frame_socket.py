"""FrameSocket over a real socket pair: queued writes, closing, and reads that end."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest

from corral._protocol import Frame, FrameType, ProtocolError
from corral.node_agent.frame_socket import FrameSocket


async def drain(sock: socket.socket, expected: int) -> bytes:
    """Read `expected` bytes from the blocking end, off the event loop."""

    def read() -> bytes:
        parts, got = [], 0
        while got < expected:
            part = sock.recv(1 << 20)
            if not part:
                break
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    return await asyncio.to_thread(read)


async def test_frames_larger_than_the_socket_buffer_arrive_whole_and_in_order() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)
    payloads = [os.urandom(1 << 20) for _ in range(6)]
    for n, payload in enumerate(payloads):
        peer.send_frame(Frame(FrameType.DATA, n + 1, payload))
    assert peer.queued > 0  # far more than a unix socket buffers: the rest waits in views
    total = sum(12 + len(p) for p in payloads)
    received = await drain(theirs, total)
    assert len(received) == total
    offset = 0
    for n, payload in enumerate(payloads):
        assert received[offset + 4 : offset + 8] == (n + 1).to_bytes(4, "big")
        body = received[offset + 12 : offset + 12 + len(payload)]
        assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
        offset += 12 + len(payload)
    assert peer.queued == 0
    peer.close()
    theirs.close()


async def test_close_sends_what_is_queued_then_closes() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)
    data = os.urandom(4 << 20)
    peer.send(data)
    peer.close()
    peer.send(b"after close")  # dropped
    received = await drain(theirs, len(data) + 1)
    assert received == data  # everything, then EOF
    theirs.close()


async def test_abort_drops_what_is_queued() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)
    peer.send(os.urandom(8 << 20))
    peer.abort()
    assert peer.queued == 0
    received = await drain(theirs, 8 << 20)
    assert len(received) < 8 << 20
    theirs.close()


async def test_abort_after_close_closes_a_socket_still_draining() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)
    peer.send(os.urandom(8 << 20))
    peer.close()  # waits for the peer to read the queue, which it never does
    assert ours.fileno() >= 0
    peer.abort()
    assert ours.fileno() == -1
    theirs.close()


async def test_close_ends_a_read_in_progress() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)

    async def read_all() -> list[Frame]:
        return [frame async for frame in peer.frames()]

    reading = asyncio.ensure_future(read_all())
    theirs.sendall(Frame(FrameType.STDOUT, 3, b"hello").encode())
    await asyncio.sleep(0.05)
    peer.close()
    frames = await asyncio.wait_for(reading, 5)
    assert [(f.type, f.stream, f.payload) for f in frames] == [(FrameType.STDOUT, 3, b"hello")]
    theirs.close()


async def test_a_peer_that_goes_away_ends_the_frames_and_later_sends_are_dropped() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)
    theirs.sendall(Frame(FrameType.STDOUT, 1, b"x").encode()[:5])  # a partial frame
    theirs.close()
    assert [frame async for frame in peer.frames()] == []
    peer.send(b"nobody listens")  # EPIPE: dropped, not raised
    peer.send(b"still nobody")
    assert peer.queued == 0
    peer.close()


async def test_garbage_is_a_protocol_error() -> None:
    ours, theirs = socket.socketpair()
    peer = FrameSocket(ours)
    theirs.sendall(b"\xff" * 64)
    with pytest.raises(ProtocolError):
        async for _ in peer.frames():
            pass
    peer.close()
    theirs.close()
