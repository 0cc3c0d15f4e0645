"""A blocking facade over the async SDK, for code that has no event loop of its own.

Each `SyncSandbox` runs the async SDK on a private event loop in a daemon thread that
lives exactly as long as the handle: `close()`, `remove()` or leaving the `with` block
stops it (and so does garbage collection or interpreter exit, as a last resort). Nothing
is shared between handles, so they work from any thread, even one that runs its own
event loop (a notebook). The methods mirror `Sandbox` and block until done.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from corral._exec import ExecEvent, ExecOutput, ExecStream
from corral._fs import FileInfo, FsGateway
from corral._sandbox import Sandbox, SandboxSettings
from corral._state import SandboxRecord

T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread; `run()` blocks the caller on one coroutine."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._lock = threading.Lock()
        self.closed = False
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        if self.closed:
            work.close()
            raise RuntimeError("this sandbox handle is closed")
        if threading.current_thread() is self._thread:
            work.close()
            raise RuntimeError("a SyncSandbox cannot be used from its own loop; use Sandbox")
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result()
        except BaseException:  # e.g. KeyboardInterrupt while waiting: stop the work too
            future.cancel()
            raise

    def close(self) -> None:
        """Cancel what still runs on the loop and end the thread; idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if threading.current_thread() is self._thread:  # collected on the loop itself
            self._loop.call_soon(self._loop.stop)
            return
        asyncio.run_coroutine_threadsafe(_cancel_others(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _cancel_others() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class SyncSandboxBuilder(SandboxSettings):
    """`SandboxBuilder` with blocking `create()` / `create_detached()`."""

    def create(self) -> SyncSandbox:
        """A sandbox tied to this process: stopped and removed when the process exits."""
        config = self.config()  # invalid settings fail before a thread is started
        return SyncSandbox._open(config.name, lambda: self._create(detached=False))

    def create_detached(self) -> SyncSandbox:
        """A sandbox that outlives this process, until `stop()`/`remove()`."""
        config = self.config()
        return SyncSandbox._open(config.name, lambda: self._create(detached=True))


class SyncSandbox:
    """A blocking handle on one sandbox; `with` stops and removes non-detached sandboxes."""

    def __init__(self, sandbox: Sandbox, runner: LoopThread) -> None:
        self._sandbox = sandbox
        self._runner = runner
        self._release = weakref.finalize(self, runner.close)
        self.fs = SyncFsGateway(sandbox.fs, runner)

    @classmethod
    def _open(cls, name: str, opening: Callable[[], Awaitable[Sandbox]]) -> SyncSandbox:
        runner = LoopThread(f"corral-sandbox-{name}")
        try:
            sandbox = runner.run(_awaited(opening()))
        except BaseException:
            runner.close()
            raise
        return cls(sandbox, runner)

    @staticmethod
    def builder(name: str) -> SyncSandboxBuilder:
        return SyncSandboxBuilder(name)

    @classmethod
    def get(cls, name: str) -> SyncSandbox:
        """Connect to a running sandbox, created by this process or any other."""
        return cls._open(name, lambda: Sandbox.get(name))

    @staticmethod
    def inspect(name: str) -> SandboxRecord:
        return Sandbox.inspect(name)

    @property
    def record(self) -> SandboxRecord:
        return self._sandbox.record

    @property
    def name(self) -> str:
        return self._sandbox.name

    @property
    def uid(self) -> str:
        return self._sandbox.uid

    @property
    def boot_id(self) -> str:
        return self._sandbox.boot_id

    def exec(
        self,
        program: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        rlimits: Mapping[str, tuple[int | None, int | None]] | None = None,
    ) -> ExecOutput:
        return self._runner.run(
            self._sandbox.exec(
                program,
                args,
                env=env,
                cwd=cwd,
                user=user,
                timeout=timeout,
                stdin=stdin,
                rlimits=rlimits,
            )
        )

    def shell(self, script: str, **options: Any) -> ExecOutput:
        return self._runner.run(self._sandbox.shell(script, **options))

    def exec_stream(
        self,
        program: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        tty: tuple[int, int] | None = None,
        stdin: bool = True,
    ) -> SyncExecStream:
        """A streaming exec: `with sb.exec_stream(...) as proc: for event in proc: ...`."""
        stream = self._sandbox.exec_stream(
            program, args, env=env, cwd=cwd, user=user, timeout=timeout, tty=tty, stdin=stdin
        )
        return SyncExecStream(stream, self._runner)

    def info(self) -> dict[str, Any]:
        return self._runner.run(self._sandbox.info())

    def stop(self) -> None:
        """Ask the guest to shut down cleanly (killed after a grace period)."""
        self._runner.run(self._sandbox.stop())

    def kill(self) -> None:
        self._runner.run(self._sandbox.kill())

    def wait(self, timeout: float = 30.0) -> SandboxRecord:
        """Wait until the supervisor has recorded a final status."""
        return self._runner.run(self._sandbox.wait(timeout))

    def stop_and_wait(self, timeout: float = 30.0) -> SandboxRecord:
        return self._runner.run(self._sandbox.stop_and_wait(timeout))

    def close(self) -> None:
        """Disconnect this handle and end its thread; the sandbox itself is untouched."""
        if self._runner.closed:
            return
        try:
            self._runner.run(self._sandbox.close())
        finally:
            self._release()

    def remove(self) -> None:
        """Stop the sandbox if it runs, then delete its record and files."""
        try:
            self._runner.run(self._sandbox.remove())
        finally:
            self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._runner.run(self._sandbox.__aexit__(kind, exc, tb))
        finally:
            self._release()

    @staticmethod
    def list() -> builtins.list[SandboxRecord]:
        return Sandbox.list()


class SyncExecStream:
    """A running command: iterate its events, feed its stdin, signal or resize it."""

    def __init__(self, stream: ExecStream, runner: LoopThread) -> None:
        self._stream = stream
        self._runner = runner

    @property
    def pid(self) -> int:
        return self._stream.pid

    def start(self) -> Self:
        self._runner.run(self._stream.start())
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._runner.run(self._stream.__aexit__(kind, exc, tb))

    def events(self) -> Iterator[ExecEvent]:
        return _iterate(self._runner, self._stream.events())

    def __iter__(self) -> Iterator[ExecEvent]:
        return self.events()

    def write_stdin(self, data: bytes, eof: bool = False) -> None:
        self._runner.run(self._stream.write_stdin(data, eof))

    def close_stdin(self) -> None:
        self._runner.run(self._stream.close_stdin())

    def signal(self, signum: int) -> None:
        self._runner.run(self._stream.signal(signum))

    def resize(self, rows: int, cols: int) -> None:
        self._runner.run(self._stream.resize(rows, cols))


def _iterate(runner: LoopThread, iterator: AsyncIterator[T]) -> Iterator[T]:
    """Drive an async iterator from the caller's thread, closing it if the caller stops."""
    try:
        while (item := runner.run(_next(iterator))) is not None:
            yield item
    finally:
        if isinstance(iterator, AsyncGenerator) and not runner.closed:
            runner.run(iterator.aclose())


async def _next(iterator: AsyncIterator[T]) -> T | None:
    """The next item, or None at the end (StopAsyncIteration cannot leave a coroutine)."""
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return None


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


class SyncFsGateway:
    """Blocking guest file access, mirroring `FsGateway`."""

    def __init__(self, gateway: FsGateway, runner: LoopThread) -> None:
        self._gateway = gateway
        self._runner = runner

    def read(self, path: str) -> bytes:
        return self._runner.run(self._gateway.read(path))

    def read_chunks(self, path: str) -> Iterator[bytes]:
        return _iterate(self._runner, self._gateway.read_chunks(path))

    def write(self, path: str, data: bytes, mode: int = 0o644) -> int:
        return self._runner.run(self._gateway.write(path, data, mode))

    def write_chunks(self, path: str, chunks: Iterable[bytes], mode: int = 0o644) -> int:
        """Write chunks from an iterable; it is consumed on the handle's loop thread."""
        return self._runner.run(self._gateway.write_chunks(path, _async(chunks), mode))

    def stat(self, path: str) -> FileInfo:
        return self._runner.run(self._gateway.stat(path))

    def exists(self, path: str) -> bool:
        return self._runner.run(self._gateway.exists(path))

    def mkdir(self, path: str, parents: bool = True, mode: int = 0o755) -> None:
        self._runner.run(self._gateway.mkdir(path, parents, mode))

    def remove(self, path: str, recursive: bool = False) -> None:
        self._runner.run(self._gateway.remove(path, recursive))

    def rename(self, source: str, target: str) -> None:
        self._runner.run(self._gateway.rename(source, target))

    def copy_in(self, host_path: str | os.PathLike[str], guest_path: str) -> int:
        """Stream a host file into the guest, keeping its permission bits."""
        return self._runner.run(self._gateway.copy_in(Path(host_path), guest_path))

    def copy_out(self, guest_path: str, host_path: str | os.PathLike[str]) -> int:
        """Stream a guest file to the host; the host file appears only when complete."""
        return self._runner.run(self._gateway.copy_out(guest_path, Path(host_path)))

    def list(self, path: str) -> builtins.list[FileInfo]:
        return self._runner.run(self._gateway.list(path))


async def _async(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
