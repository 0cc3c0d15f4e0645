"""The supervisor's guest channel against a fake guest that misbehaves."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from corral._protocol import PROTOCOL_VERSION, Frame, FrameType, ProtocolError, encode_fields
from corral.node_agent.channel import GuestChannel
from corral.node_agent.launch import listen_unix
from corral.node_agent.reactor import Reactor


def fake_guest(path: Path, *replies: bytes) -> socket.socket:
    """Connected and with its replies sent, before the host's HELLO reaches it."""
    guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    guest.connect(str(path))
    for reply in replies:
        guest.sendall(reply)
    return guest


def hello(version: int = PROTOCOL_VERSION) -> bytes:
    fields = encode_fields([(1, version), (2, "0.1.0"), (3, "6.1"), (4, "boot")])
    return Frame(FrameType.HELLO, 0, fields).encode()


def test_handshake_then_garbage_is_a_protocol_error(tmp_path: Path) -> None:
    reactor = Reactor()
    channel = GuestChannel(listen_unix(tmp_path / "channel.sock"), reactor)
    ends: list[ProtocolError | None] = []
    channel.on_end = ends.append
    guest = fake_guest(channel.socket_path, hello(), os.urandom(64))
    fields = channel.handshake(hostname="sandbox", timeout=5)
    assert fields is not None and fields.str(4) == "boot"
    assert reactor.run_until(lambda: bool(ends), timeout=5)
    assert isinstance(ends[0], ProtocolError)
    greeting = guest.recv(1 << 16)
    assert greeting[8] == FrameType.HELLO and b"sandbox" in greeting
    guest.close()
    channel.close()
    assert not channel.socket_path.exists()


def test_frames_after_the_hello_go_to_on_frame(tmp_path: Path) -> None:
    reactor = Reactor()
    channel = GuestChannel(listen_unix(tmp_path / "channel.sock"), reactor)
    frames: list[Frame] = []
    channel.on_frame = frames.append
    guest = fake_guest(channel.socket_path, hello() + Frame(FrameType.STDOUT, 5, b"x").encode())
    assert channel.handshake(timeout=5) is not None
    assert reactor.run_until(lambda: bool(frames), timeout=5)
    assert [(f.type, f.stream, f.payload) for f in frames] == [(FrameType.STDOUT, 5, b"x")]
    guest.close()
    channel.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (hello(version=99), "version 99"),
        (Frame(FrameType.STDOUT, 3, b"early").encode(), "before HELLO"),
        (b"\xff" * 12, "exceeds"),
        (b"", "closed during the handshake"),
    ],
)
def test_bad_handshakes(tmp_path: Path, reply: bytes, message: str) -> None:
    channel = GuestChannel(listen_unix(tmp_path / "channel.sock"), Reactor())
    guest = fake_guest(channel.socket_path, reply)
    if not reply:
        guest.shutdown(socket.SHUT_WR)
    with pytest.raises(ProtocolError, match=message):
        channel.handshake(timeout=5)
    guest.close()
    channel.close()


def test_a_silent_guest_times_out_and_abandon_ends_the_wait(tmp_path: Path) -> None:
    channel = GuestChannel(listen_unix(tmp_path / "channel.sock"), Reactor())
    guest = fake_guest(channel.socket_path)
    with pytest.raises(TimeoutError):
        channel.handshake(timeout=0.1)
    assert channel.handshake(timeout=5, abandon=lambda: True) is None
    guest.close()
    channel.close()
