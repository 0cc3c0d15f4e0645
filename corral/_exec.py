"""Running commands in a sandbox: collected (`ExecOutput`) or streamed (`ExecStream`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

from corral._connection import Connection, Stream
from corral._errors import ChannelError, ExecFailed, ExecTimeout
from corral._protocol import FrameType, decode_fields
from corral._protocol.exec_request import ExecRequest


@dataclass(frozen=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int | None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class Started:
    pid: int


@dataclass(frozen=True)
class Stdout:
    data: bytes


@dataclass(frozen=True)
class Stderr:
    data: bytes


@dataclass(frozen=True)
class Exited:
    exit_code: int | None
    signal: int | None
    timed_out: bool
    run_ns: int = field(default=0, compare=False)
    """Fork to reap, as the guest agent measured it."""


@dataclass(frozen=True)
class Failed:
    kind: str
    message: str
    errno: int


ExecEvent = Started | Stdout | Stderr | Exited | Failed


class ExecStream:
    """A running command: iterate its events, feed its stdin, signal or resize it."""

    def __init__(self, connection: Connection, request: ExecRequest) -> None:
        self._connection = connection
        self._request = request
        self._stream: Stream | None = None
        self.pid = 0

    async def start(self) -> ExecStream:
        self._stream = self._connection.open_stream()
        await self._stream.send(FrameType.EXEC, self._request.fields())
        return self

    async def __aenter__(self) -> ExecStream:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stream is None:
            return
        if not self._stream.finished:
            with contextlib.suppress(ChannelError):
                await self.signal(9)
        self._stream.close()

    async def events(self) -> AsyncIterator[ExecEvent]:
        assert self._stream is not None, "call start() first"
        while not self._stream.finished:
            frame = await self._stream.receive()
            if frame.type is FrameType.STDOUT:
                yield Stdout(frame.payload)
            elif frame.type is FrameType.STDERR:
                yield Stderr(frame.payload)
            elif frame.type is FrameType.STARTED:
                self.pid = decode_fields(frame.payload).int(1) or 0
                yield Started(self.pid)
            elif frame.type is FrameType.EXIT:
                fields = decode_fields(frame.payload)
                yield Exited(fields.int(1), fields.int(2), fields.int(3) == 1, fields.int(4) or 0)
            elif frame.type is FrameType.ERROR:
                fields = decode_fields(frame.payload)
                if fields.str(1) == "SandboxStopped":
                    raise ChannelError(fields.str(3))
                yield Failed(fields.str(1), fields.str(3), fields.int(2) or 0)

    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        return self.events()

    async def write_stdin(self, data: bytes, eof: bool = False) -> None:
        assert self._stream is not None
        await self._stream.send_data(FrameType.STDIN, data, eof=eof)

    async def close_stdin(self) -> None:
        assert self._stream is not None
        await self._stream.send_data(FrameType.STDIN, b"", eof=True)

    async def signal(self, signum: int) -> None:
        assert self._stream is not None
        await self._stream.send(FrameType.SIGNAL, [(1, signum)])

    async def resize(self, rows: int, cols: int) -> None:
        assert self._stream is not None
        await self._stream.send(FrameType.RESIZE, [(1, rows), (2, cols)])


async def collect(connection: Connection, request: ExecRequest, stdin: bytes | None) -> ExecOutput:
    """Run a command to completion, gathering its output."""
    stdout, stderr = bytearray(), bytearray()
    async with ExecStream(connection, request) as running:
        feeder = None
        if stdin is not None:
            feeder = asyncio.ensure_future(running.write_stdin(stdin, eof=True))
        try:
            async for event in running:
                if isinstance(event, Stdout):
                    stdout += event.data
                elif isinstance(event, Stderr):
                    stderr += event.data
                elif isinstance(event, Failed):
                    raise ExecFailed(event.kind, event.message, event.errno)
                elif isinstance(event, Exited):
                    if event.timed_out:
                        raise ExecTimeout(" ".join(request.argv), request.timeout or 0)
                    return ExecOutput(bytes(stdout), bytes(stderr), event.exit_code, event.signal)
        finally:
            if feeder is not None:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError, ChannelError):
                    await feeder
    raise ChannelError("the command's stream ended without an exit status")
