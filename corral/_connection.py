"""A multiplexed protocol connection from a client (SDK, CLI) to a sandbox supervisor.

One reader task demultiplexes frames into per-stream queues; each stream honours the
protocol's per-stream flow-control window in both directions, so one slow consumer
never stalls the others and no side buffers more than a window per stream.

The bytes travel over a `Transport`: the supervisor's unix socket (embedded) or a
WebSocket to a node agent that relays to it (cluster, `corral._cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable
from typing import Protocol

from corral._errors import ChannelError
from corral._protocol import (
    DATA_CHUNK,
    PROTOCOL_VERSION,
    WINDOW,
    Fields,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    ProtocolError,
    decode_fields,
    encode_fields,
)
from corral._protocol.fields import Value
from corral._protocol.frames import TERMINAL_TYPES, encode_header

READ_CHUNK = 1 << 20


class Stream:
    """One request on a connection: an exec, a file transfer or an info call."""

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self.id = stream_id
        self._connection = connection
        self._inbox: asyncio.Queue[Frame | BaseException] = asyncio.Queue()
        self._send_credit = WINDOW
        self._credit_available = asyncio.Event()
        self._credit_available.set()
        self._consumed = 0
        self._answered = False
        self.finished = False

    async def send(self, frame_type: FrameType, items: Iterable[tuple[int, Value]] = ()) -> None:
        await self._connection.write(Frame(frame_type, self.id, encode_fields(items)))

    async def send_data(self, frame_type: FrameType, data: bytes, eof: bool = False) -> None:
        """Send bytes in window-respecting chunks; the last chunk carries EOF if asked.
        The chunks go out as views of `data`, never copied here."""
        view = memoryview(data)
        while view and not self._answered:
            await self._credit_available.wait()
            if self._answered:
                return
            size = min(len(view), DATA_CHUNK, self._send_credit)
            chunk, view = view[:size], view[size:]
            self._send_credit -= size
            if self._send_credit == 0:
                self._credit_available.clear()
            flags = Flag.EOF if eof and not view else Flag.NONE
            header = encode_header(frame_type, self.id, size, flags)
            await self._connection.write_parts(header, chunk)
        if eof and not data and not self._answered:
            await self._connection.write(Frame(frame_type, self.id, b"", Flag.EOF))

    async def receive(self) -> Frame:
        item = await self._inbox.get()
        if isinstance(item, BaseException):
            raise item
        if item.type in TERMINAL_TYPES:
            self.finished = True
        if item.payload and item.type in (FrameType.STDOUT, FrameType.STDERR, FrameType.DATA):
            await self._return_credit(len(item.payload))
        return item

    async def _return_credit(self, size: int) -> None:
        self._consumed += size
        if self._consumed >= WINDOW // 2 and not self.finished:
            grant, self._consumed = self._consumed, 0
            await self.send(FrameType.WINDOW, [(1, grant)])

    def _deliver(self, frame: Frame) -> None:
        if frame.type is FrameType.WINDOW:
            increment = decode_fields(frame.payload).int(1) or 0
            if increment <= 0 or self._send_credit + increment > 4 * WINDOW:
                raise ProtocolError(f"stream {self.id}: bad window increment {increment}")
            self._send_credit += increment
            self._credit_available.set()
            return
        if frame.type in TERMINAL_TYPES:
            self._answered = True
            self._credit_available.set()
        self._inbox.put_nowait(frame)

    @property
    def answered(self) -> bool:
        """The other side has ended this stream (its final frame may still be unread)."""
        return self._answered

    def _fail(self, error: BaseException) -> None:
        self._answered = True
        self._inbox.put_nowait(error)
        self._credit_available.set()

    def close(self) -> None:
        self._connection.forget(self.id)


class Transport(Protocol):
    """A byte stream to a supervisor. `read` returns b"" at the end; `write` sends its
    parts in order as one piece and returns once they are handed on (waiting while the
    other side is slow)."""

    async def read(self) -> bytes: ...

    async def write(self, *parts: bytes | memoryview) -> None: ...

    async def close(self) -> None: ...


class UnixTransport:
    """The supervisor's unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(READ_CHUNK)

    async def write(self, *parts: bytes | memoryview) -> None:
        for part in parts:
            self._writer.write(part)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class Connection:
    """A client connection to one supervisor, over a unix socket or a relaying WebSocket."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._streams: dict[int, Stream] = {}
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._error: BaseException | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.hello = Fields([])

    @classmethod
    async def open(cls, socket_path: str, timeout: float = 10.0) -> Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(socket_path, limit=READ_CHUNK), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise ChannelError(f"cannot connect to supervisor at {socket_path}: {exc}") from exc
        return await cls.over(UnixTransport(reader, writer), timeout)

    @classmethod
    async def over(cls, transport: Transport, timeout: float = 10.0) -> Connection:
        """Handshake over an open transport; it is closed if the handshake fails."""
        connection = cls(transport)
        try:
            await connection._handshake(timeout)
        except BaseException:
            await transport.close()
            raise
        return connection

    async def _handshake(self, timeout: float) -> None:
        decoder = FrameDecoder()
        try:
            async with asyncio.timeout(timeout):
                hello = Frame(FrameType.HELLO, 0, encode_fields([(1, PROTOCOL_VERSION)]))
                await self._transport.write(hello.encode())
                while True:
                    data = await self._transport.read()
                    if not data:
                        raise ChannelError("supervisor closed the connection during handshake")
                    frames = list(decoder.feed(data))
                    if frames:
                        break
        except (TimeoutError, ProtocolError, OSError) as exc:
            raise ChannelError(f"handshake with supervisor failed: {exc}") from exc
        first = frames[0]
        if first.type is not FrameType.HELLO:
            fields = decode_fields(first.payload)
            raise ChannelError(f"supervisor refused the connection: {fields.str(3)}")
        self.hello = decode_fields(first.payload)
        if self.hello.int(1) != PROTOCOL_VERSION:
            raise ChannelError(
                f"the sandbox speaks protocol version {self.hello.int(1)}, this SDK"
                f" {PROTOCOL_VERSION}: recreate the sandbox with this version of corral"
            )
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_loop(decoder, frames[1:]), name="corral-connection-reader"
        )

    async def _read_loop(self, decoder: FrameDecoder, early: list[Frame]) -> None:
        try:
            for frame in early:
                self._dispatch(frame)
            while True:
                data = await self._transport.read()
                if not data:
                    raise ChannelError("connection to the sandbox closed")
                for frame in decoder.feed(data):
                    self._dispatch(frame)
        except (ProtocolError, OSError, ChannelError) as exc:
            error = exc if isinstance(exc, ChannelError) else ChannelError(str(exc))
            self._error = error
            for stream in self._streams.values():
                stream._fail(error)

    def _dispatch(self, frame: Frame) -> None:
        stream = self._streams.get(frame.stream)
        if stream is None:
            return
        stream._deliver(frame)

    def open_stream(self) -> Stream:
        if self._error is not None:
            raise self._error
        stream_id = next(self._ids)
        stream = Stream(self, stream_id)
        self._streams[stream_id] = stream
        return stream

    def forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    async def write(self, frame: Frame) -> None:
        await self.write_parts(frame.header(), frame.payload)

    async def write_parts(self, header: bytes, payload: bytes | memoryview) -> None:
        """One frame given as its header and its payload, so a payload is never copied
        to be joined to its header."""
        if self._error is not None:
            raise self._error
        async with self._write_lock:
            try:
                await self._transport.write(header, payload)
            except OSError as exc:
                raise ChannelError(f"connection to the sandbox broke: {exc}") from exc

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        await self._transport.close()
