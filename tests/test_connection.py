"""The SDK's connection against a fake supervisor that speaks garbage."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from corral._connection import Connection
from corral._errors import ChannelError
from corral._protocol import PROTOCOL_VERSION, Frame, FrameType, encode_fields


async def serve(
    path: Path, after_hello: bytes, version: int = PROTOCOL_VERSION
) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(12 + 14)
        writer.write(Frame(FrameType.HELLO, 0, encode_fields([(1, version)])).encode())
        await reader.readexactly(12)  # the client's EXEC header
        writer.write(after_hello)
        await writer.drain()

    return await asyncio.start_unix_server(handle, path=str(path))


@pytest.mark.parametrize("garbage", [os.urandom(300), b"\xff" * 64])
async def test_garbage_fails_open_streams_with_a_channel_error(
    tmp_path: Path, garbage: bytes
) -> None:
    server = await serve(tmp_path / "api.sock", garbage)
    connection = await Connection.open(str(tmp_path / "api.sock"))
    stream = connection.open_stream()
    await stream.send(FrameType.EXEC)
    with pytest.raises(ChannelError):
        async with asyncio.timeout(5):
            while True:
                await stream.receive()
    with pytest.raises(ChannelError):
        connection.open_stream()
    await connection.close()
    server.close()


async def test_bad_window_increment_is_a_protocol_violation(tmp_path: Path) -> None:
    bogus = Frame(FrameType.WINDOW, 1, encode_fields([(1, -5)])).encode()
    server = await serve(tmp_path / "api.sock", bogus)
    connection = await Connection.open(str(tmp_path / "api.sock"))
    stream = connection.open_stream()
    await stream.send(FrameType.EXEC)
    with pytest.raises(ChannelError, match="window"):
        await asyncio.wait_for(stream.receive(), 5)
    await connection.close()
    server.close()


async def test_a_sandbox_of_another_protocol_version_is_refused(tmp_path: Path) -> None:
    server = await serve(tmp_path / "api.sock", b"", version=PROTOCOL_VERSION - 1)
    with pytest.raises(ChannelError, match=f"protocol version {PROTOCOL_VERSION - 1}"):
        await Connection.open(str(tmp_path / "api.sock"))
    server.close()


async def test_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ChannelError, match="cannot connect"):
        await Connection.open(str(tmp_path / "missing.sock"))
