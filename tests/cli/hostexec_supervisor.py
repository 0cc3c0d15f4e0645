"""A stand-in supervisor that runs EXEC requests on the host instead of in a VM.

It speaks the client side of the protocol (docs/protocol.md) on the sandbox's api.sock
and records itself as the running supervisor, so the real `corral` CLI and SDK can be
tested end to end (streams, stdin, signals, PTYs, exit statuses) where no VM boots.
Usage: python hostexec_supervisor.py CORRAL_HOME NAME; prints one line when ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
import time
from pathlib import Path

from corral._cli.stream import read_some
from corral._paths import Paths
from corral._protocol import (
    Fields,
    Flag,
    Frame,
    FrameDecoder,
    FrameType,
    decode_fields,
    encode_fields,
)
from corral._protocol.fields import Value
from corral._protocol.frames import DATA_TYPES
from corral._state import StateStore, current_process_identity


class Client:
    def __init__(self, writer: asyncio.StreamWriter, done: asyncio.Event) -> None:
        self.writer = writer
        self.done = done
        self.children: dict[int, Child] = {}
        self.uploads: dict[int, tuple[Path, int, bytearray]] = {}

    def send(self, kind: FrameType, stream: int, items: list[tuple[int, Value]]) -> None:
        self.writer.write(Frame(kind, stream, encode_fields(items)).encode())

    def send_data(self, kind: FrameType, stream: int, data: bytes) -> None:
        self.writer.write(Frame(kind, stream, data).encode())

    async def serve(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(1 << 20):
            for frame in decoder.feed(data):
                await self.handle(frame)
            await self.writer.drain()

    async def handle(self, frame: Frame) -> None:
        fields = Fields([]) if frame.type in DATA_TYPES else decode_fields(frame.payload)
        child = self.children.get(frame.stream)
        if frame.type is FrameType.HELLO:
            self.send(FrameType.HELLO, 0, [
                (1, 1), (2, "hostexec-1"), (3, os.uname().release), (4, "boot-1"),
                (10, f"PATH={os.environ['PATH']}"), (11, "/"), (12, "root"),
            ])  # fmt: skip
        elif frame.type is FrameType.EXEC:
            spawned = await Child.spawn(self, frame.stream, fields)
            if spawned is not None:
                self.children[frame.stream] = spawned
        elif frame.type is FrameType.STDIN and child is not None:
            child.feed(frame.payload, bool(frame.flags & Flag.EOF))
            if frame.payload:
                self.send(FrameType.WINDOW, frame.stream, [(1, len(frame.payload))])
        elif frame.type is FrameType.SIGNAL and child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, fields.int(1) or 0)
        elif frame.type is FrameType.RESIZE and child is not None and child.master is not None:
            size = struct.pack("HHHH", fields.int(1) or 0, fields.int(2) or 0, 0, 0)
            fcntl.ioctl(child.master, termios.TIOCSWINSZ, size)
        elif frame.type is FrameType.FS:
            self.fs_op(frame.stream, fields)
        elif frame.type is FrameType.DATA and frame.stream in self.uploads:
            self.upload(frame.stream, frame.payload, bool(frame.flags & Flag.EOF))
        elif frame.type is FrameType.INFO:
            self.send(FrameType.INFO_OK, frame.stream, [(1, 5), (2, 1), (3, 1), (4, 1), (5, "0")])
        elif frame.type in (FrameType.SHUTDOWN, FrameType.KILL):
            self.done.set()

    def fs_op(self, stream: int, fields: Fields) -> None:
        """read, write and stat on the host's own files (enough for `corral cp`)."""
        op, path = fields.str(1), Path(fields.str(2))
        try:
            if op == "stat":
                info = path.lstat()
                kind = "dir" if path.is_dir() else "file"
                entry = encode_fields([(1, path.name), (2, kind), (3, info.st_size), (4, 0)])
                self.send(FrameType.DONE, stream, [(10, entry)])
            elif op == "read":
                data = path.read_bytes()
                self.send_data(FrameType.DATA, stream, data)
                self.send(FrameType.DONE, stream, [(1, len(data))])
            elif op == "write":
                self.uploads[stream] = (path, fields.int(4) or 0o644, bytearray())
        except OSError as exc:
            kind = "NotFound" if isinstance(exc, FileNotFoundError) else "Io"
            self.send(FrameType.ERROR, stream, [(1, kind), (2, exc.errno or 0), (3, str(exc))])

    def upload(self, stream: int, data: bytes, eof: bool) -> None:
        path, mode, received = self.uploads[stream]
        received += data
        if data:
            self.send(FrameType.WINDOW, stream, [(1, len(data))])
        if eof:
            del self.uploads[stream]
            path.write_bytes(received)
            path.chmod(mode)
            self.send(FrameType.DONE, stream, [(1, len(received))])


class Child:
    def __init__(self, client: Client, stream: int, process: asyncio.subprocess.Process) -> None:
        self.client = client
        self.stream = stream
        self.process = process
        self.master: int | None = None

    @classmethod
    async def spawn(cls, client: Client, stream: int, fields: Fields) -> Child | None:
        argv = [item.decode() for item in fields.all(1)]
        env = dict(item.decode().split("=", 1) for item in fields.all(2))
        tty = fields.get(6) is not None
        master = slave = -1
        if tty:
            master, slave = pty.openpty()
            rows, cols = fields.int(6) or 24, fields.int(7) or 80
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        stdin = asyncio.subprocess.PIPE if fields.int(9) == 1 else asyncio.subprocess.DEVNULL
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=fields.str(3) or "/",
                stdin=slave if tty else stdin,
                stdout=slave if tty else asyncio.subprocess.PIPE,
                stderr=slave if tty else asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=(lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0)) if tty else None,
            )
        except FileNotFoundError as exc:
            client.send(FrameType.ERROR, stream, [(1, "NotFound"), (2, 2), (3, str(exc))])
            return None
        finally:
            if tty:
                os.close(slave)
        child = cls(client, stream, process)
        child.master = master if tty else None
        client.send(FrameType.STARTED, stream, [(1, process.pid)])
        timeout = (fields.int(5) or 0) / 1000
        asyncio.get_running_loop().create_task(child.run(timeout))
        return child

    def feed(self, data: bytes, eof: bool) -> None:
        if self.master is not None:
            os.write(self.master, data)
            return
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        if eof:
            self.process.stdin.close()

    async def run(self, timeout: float) -> None:
        master = self.master
        pumps = []
        if master is not None:
            pumps.append(asyncio.ensure_future(self.pump_pty(master)))
        else:
            assert self.process.stdout is not None and self.process.stderr is not None
            pumps.append(asyncio.ensure_future(self.pump(self.process.stdout, FrameType.STDOUT)))
            pumps.append(asyncio.ensure_future(self.pump(self.process.stderr, FrameType.STDERR)))
        timed_out = False
        try:
            await asyncio.wait_for(self.process.wait(), timeout or None)
        except TimeoutError:
            timed_out = True
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        await asyncio.wait(pumps, timeout=0.2)
        code = self.process.returncode
        assert code is not None
        status: list[tuple[int, Value]] = [(1, code)] if code >= 0 else [(2, -code)]
        self.client.send(FrameType.EXIT, self.stream, [*status, (3, int(timed_out))])
        if master is not None:
            os.close(master)

    async def pump(self, source: asyncio.StreamReader, kind: FrameType) -> None:
        while data := await source.read(65536):
            self.client.send_data(kind, self.stream, data)

    async def pump_pty(self, master: int) -> None:
        while True:
            try:
                data = await read_some(master)
            except OSError:  # EIO: the terminal's last user is gone
                return
            if not data:
                return
            self.client.send_data(FrameType.STDOUT, self.stream, data)


async def main(home: Path, name: str) -> None:
    paths = Paths(home)
    store = StateStore(paths.state_db)
    record = store.get(name)
    directory = paths.sandbox_dir(record.uid)
    directory.mkdir(parents=True, exist_ok=True)
    done = asyncio.Event()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await Client(writer, done).serve(reader)
        writer.close()

    server = await asyncio.start_unix_server(connected, str(directory / "api.sock"))
    pid, start = current_process_identity()
    store.update(
        name, status="running", supervisor_pid=pid, supervisor_start=start, accel="tcg",
        accel_reason="host exec stand-in", started_at=time.time(),
    )  # fmt: skip
    print("ready", flush=True)
    await done.wait()
    server.close()
    store.update(name, status="stopped", reason="shut down", finished_at=time.time())


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
