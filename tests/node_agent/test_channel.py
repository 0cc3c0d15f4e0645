"""The supervisor's guest channel against a fake guest that misbehaves."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from corral._protocol import PROTOCOL_VERSION, Frame, FrameType, ProtocolError, encode_fields
from corral.node_agent.channel import GuestChannel
from corral.node_agent.launch import listen_unix


async def fake_guest(path: Path, *replies: bytes) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_unix_connection(str(path))
    await reader.readexactly(12 + 14)  # the host's HELLO: header + one int field
    for reply in replies:
        writer.write(reply)
    await writer.drain()
    return writer


def hello(version: int = PROTOCOL_VERSION) -> bytes:
    fields = encode_fields([(1, version), (2, "0.1.0"), (3, "6.1"), (4, "boot")])
    return Frame(FrameType.HELLO, 0, fields).encode()


async def test_handshake_then_garbage_is_a_protocol_error(tmp_path: Path) -> None:
    channel = GuestChannel(listen_unix(tmp_path / "channel.sock"))
    await channel.listen()
    guest = asyncio.ensure_future(fake_guest(channel.socket_path, hello(), os.urandom(64)))
    fields = await channel.handshake()
    assert fields.str(4) == "boot"
    with pytest.raises(ProtocolError):
        async for _ in channel.frames():
            pass
    (await guest).close()
    await channel.close()
    assert not channel.socket_path.exists()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (hello(version=99), "version 99"),
        (Frame(FrameType.STDOUT, 3, b"early").encode(), "before HELLO"),
        (b"\xff" * 12, "exceeds"),
    ],
)
async def test_bad_handshakes(tmp_path: Path, reply: bytes, message: str) -> None:
    channel = GuestChannel(listen_unix(tmp_path / "channel.sock"))
    await channel.listen()
    guest = asyncio.ensure_future(fake_guest(channel.socket_path, reply))
    with pytest.raises(ProtocolError, match=message):
        await channel.handshake()
    (await guest).close()
    await channel.close()
