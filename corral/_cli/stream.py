"""Attaching this process to a running guest command.

The guest's stdout and stderr go to ours as they arrive (bytes, unchanged); our stdin
goes to the guest when asked; SIGINT/SIGTERM are forwarded to the guest process (the
second one kills it); SIGWINCH resizes the guest's PTY; the command's exit status
becomes ours (128+N for signal N, 124 on timeout). `run`, `exec` and `shell` use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from corral._cli.terminal import raw_mode, terminal_env, terminal_size
from corral._errors import ChannelError, ExecFailed, ExecTimeout
from corral._exec import ExecEvent, ExecStream, Exited, Failed, Stderr, Stdout
from corral._protocol import DATA_CHUNK
from corral._sandbox import SandboxHandle

FORWARDED = (signal.SIGINT, signal.SIGTERM)


class Relay:
    """Connects one started `ExecStream` to local file descriptors and signals."""

    def __init__(
        self,
        process: ExecStream,
        *,
        stdin_fd: int | None,
        stdout: BinaryIO,
        stderr: BinaryIO,
        tty: bool,
        command: str,
        timeout: float | None,
    ) -> None:
        self._process = process
        self._stdin_fd = stdin_fd
        self._stdout = stdout
        self._stderr = stderr
        self._tty = tty
        self._command = command
        self._timeout = timeout
        self._interrupts = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Relay until the command exits; its exit status, ready for `sys.exit`."""
        with self._signals(asyncio.get_running_loop()):
            if self._stdin_fd is not None:
                self._spawn(self._pump_stdin(self._stdin_fd), "stdin")
            try:
                async for event in self._process:
                    status = self._handle(event)
                    if status is not None:
                        return status
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        raise ChannelError("the command's stream ended without an exit status")

    def _handle(self, event: ExecEvent) -> int | None:
        if isinstance(event, Stdout):
            _write(self._stdout, event.data)
        elif isinstance(event, Stderr):
            _write(self._stderr, event.data)
        elif isinstance(event, Failed):
            raise ExecFailed(event.kind, event.message, event.errno)
        elif isinstance(event, Exited):
            return self._status(event)
        return None

    def _status(self, event: Exited) -> int:
        if event.timed_out:
            raise ExecTimeout(self._command, self._timeout or 0)
        if event.signal:
            return 128 + event.signal
        if event.exit_code is None or not 0 <= event.exit_code <= 255:
            raise ChannelError(f"the guest reported an impossible exit status {event.exit_code}")
        return event.exit_code

    async def _pump_stdin(self, fd: int) -> None:
        while data := await read_some(fd):
            await self._process.write_stdin(data)
        await self._process.close_stdin()

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Install our handlers for the relay's lifetime, then put back whatever was there."""
        watched = [*FORWARDED, signal.SIGWINCH] if self._tty else list(FORWARDED)

        def handler(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(self._on_signal, signum)

        previous = {signum: signal.signal(signum, handler) for signum in watched}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGWINCH:
            self._spawn(self._process.resize(*terminal_size()), "resize")
            return
        self._interrupts += 1
        forwarded = signum if self._interrupts == 1 else signal.SIGKILL
        self._spawn(self._process.signal(int(forwarded)), f"signal {forwarded}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(_quietly(work), name=f"relay {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _quietly(work: Coroutine[Any, Any, None]) -> None:
    """Side work (stdin, signals, resizes) may lose a race with the command's exit."""
    with contextlib.suppress(ChannelError):
        await work


def _write(target: BinaryIO, data: bytes) -> None:
    target.write(data)
    target.flush()


async def read_some(fd: int) -> bytes:
    """The next bytes available on `fd` (b"" at end of file), without blocking the loop."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    try:
        loop.add_reader(fd, wake)
    except PermissionError:  # a regular file: epoll refuses it, and reads never block
        return os.read(fd, DATA_CHUNK)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    return os.read(fd, DATA_CHUNK)


async def attach(
    sandbox: SandboxHandle,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    user: str | None = None,
    timeout: float | None = None,
    stdin: bool,
    tty: bool,
) -> int:
    """Run `argv` in the sandbox attached to this process's terminal; its exit status."""
    if tty:
        env = {**terminal_env(), **(env or {})}
    process = sandbox.exec_stream(
        argv[0],
        argv[1:],
        env=env,
        cwd=cwd,
        user=user,
        timeout=timeout,
        tty=terminal_size() if tty else None,
        stdin=stdin,
    )
    relay = Relay(
        process,
        stdin_fd=sys.stdin.fileno() if stdin else None,
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
        tty=tty,
        command=shlex.join(argv),
        timeout=timeout,
    )
    with raw_mode(sys.stdin.fileno()) if tty and stdin else contextlib.nullcontext():
        async with process:
            return await relay.run()
