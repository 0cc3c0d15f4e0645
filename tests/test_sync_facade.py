"""The blocking facade, without VMs: its private loop thread, errors crossing it, and the
delegation to a fake async sandbox (every call must run on the handle's own loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import pytest

from corral._errors import InvalidConfig, SandboxNotFound
from corral._exec import ExecOutput, Exited, Stdout
from corral._sync import LoopThread, SyncSandbox


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def facade_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("corral-", "test-"))]


def test_loop_thread_runs_coroutines_and_stops_for_good() -> None:
    runner = LoopThread("test-loop")

    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    async def fail() -> None:
        raise KeyError("boom")

    assert runner.run(where()) == "test-loop"
    with pytest.raises(KeyError, match="boom"):
        runner.run(fail())
    runner.close()
    runner.close()  # idempotent
    assert facade_threads() == []
    never_run = where()
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(never_run)
    assert never_run.cr_frame is None  # closed, so no "never awaited" warning


def test_loop_thread_close_cancels_leftover_tasks() -> None:
    runner = LoopThread("test-loop")
    cancelled = threading.Event()

    async def linger() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(linger())
        await asyncio.sleep(0)

    runner.run(spawn())
    runner.close()
    assert cancelled.is_set()


def test_loop_thread_refuses_reentry_from_its_own_loop() -> None:
    runner = LoopThread("test-loop")

    async def inner() -> None:
        pass

    async def reenter() -> str:
        try:
            runner.run(inner())
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    try:
        assert "its own loop" in runner.run(reenter())
    finally:
        runner.close()


async def test_usable_while_another_event_loop_runs() -> None:
    """A notebook or an async app may call the blocking facade; it has its own loop."""
    runner = LoopThread("test-loop")

    async def answer() -> int:
        return 42

    try:
        assert runner.run(answer()) == 42
    finally:
        runner.close()


def test_get_of_an_unknown_sandbox_raises_and_leaves_no_thread() -> None:
    with pytest.raises(SandboxNotFound):
        SyncSandbox.get("nope")
    assert facade_threads() == []
    assert SyncSandbox.list() == []
    with pytest.raises(SandboxNotFound):
        SyncSandbox.inspect("nope")


def test_builder_collects_settings_and_rejects_bad_ones_before_any_thread() -> None:
    builder = (
        SyncSandbox.builder("box")
        .image("/images/alpine")
        .cpus(1)
        .memory(512)
        .disk(1024)
        .env({"A": "1"}, B="2")
        .workdir("/srv")
        .user("nobody")
        .cmd(["sleep", "1"])
        .accel("tcg")
    )
    config = builder.config()
    assert (config.name, config.image, config.cpus, config.memory_mib) == (
        "box", "/images/alpine", 1, 512
    )  # fmt: skip
    assert config.env == {"A": "1", "B": "2"}
    assert (config.workdir, config.user, config.cmd, config.accel) == (
        "/srv", "nobody", ["sleep", "1"], "tcg"
    )  # fmt: skip
    with pytest.raises(InvalidConfig, match="memory_mib"):
        SyncSandbox.builder("box").memory(1).create()
    with pytest.raises(InvalidConfig, match="name"):
        SyncSandbox.builder("Bad Name").create_detached()
    assert facade_threads() == []


class FakeGateway:
    def __init__(self) -> None:
        self.written: list[tuple[str, bytes, int]] = []
        self.copied: list[tuple[Any, Any]] = []

    async def read_chunks(self, path: str) -> AsyncIterator[bytes]:
        for chunk in (b"ab", b"cd", b"ef"):
            yield chunk

    async def write_chunks(self, path: str, chunks: AsyncIterator[bytes], mode: int) -> int:
        data = b"".join([chunk async for chunk in chunks])
        self.written.append((path, data, mode))
        return len(data)

    async def copy_in(self, host_path: Path, guest_path: str) -> int:
        self.copied.append((host_path, guest_path))
        return 1


class FakeStream:
    def __init__(self) -> None:
        self.closed_early = False
        self.pid = 0

    async def start(self) -> FakeStream:
        self.pid = 99
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass

    async def events(self) -> AsyncIterator[Any]:
        try:
            yield Stdout(b"one")
            yield Stdout(b"two")
            yield Exited(0, None, False)
        finally:
            self.closed_early = True


class FakeSandbox:
    """The async Sandbox's shape; records which thread each call ran on."""

    def __init__(self) -> None:
        self.fs = FakeGateway()
        self.stream = FakeStream()
        self.threads: list[str] = []
        self.exits: list[type[BaseException] | None] = []
        self.closed = False

    async def exec(self, program: str, args: Any = (), **options: Any) -> ExecOutput:
        self.threads.append(threading.current_thread().name)
        return ExecOutput(f"{program} {list(args)} {options['timeout']}".encode(), b"", 0)

    def exec_stream(self, program: str, args: Any = (), **options: Any) -> FakeStream:
        return self.stream

    async def close(self) -> None:
        self.closed = True

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.exits.append(kind)


def facade() -> tuple[SyncSandbox, FakeSandbox]:
    fake = FakeSandbox()
    return SyncSandbox(cast(Any, fake), LoopThread("test-sandbox")), fake


def test_calls_block_on_the_handles_own_loop() -> None:
    sandbox, fake = facade()
    with sandbox:
        output = sandbox.exec("echo", ["hi"], timeout=5)
    assert output.stdout == b"echo ['hi'] 5"
    assert fake.threads == ["test-sandbox"]
    assert fake.exits == [None]  # the async context manager decides stop/remove
    assert facade_threads() == []


def test_context_manager_passes_the_exception_on() -> None:
    sandbox, fake = facade()
    with pytest.raises(ValueError), sandbox:
        raise ValueError("inside")
    assert fake.exits == [ValueError]
    assert facade_threads() == []


def test_close_is_idempotent_and_later_calls_fail_clearly() -> None:
    sandbox, fake = facade()
    sandbox.close()
    sandbox.close()
    assert fake.closed
    with pytest.raises(RuntimeError, match="closed"):
        sandbox.exec("true")


def test_exec_stream_iterates_events_and_closes_an_abandoned_iterator() -> None:
    sandbox, fake = facade()
    try:
        with sandbox.exec_stream("cat") as process:
            assert process.pid == 99
            assert list(process) == [Stdout(b"one"), Stdout(b"two"), Exited(0, None, False)]
        fake.stream.closed_early = False
        with sandbox.exec_stream("cat") as process:
            for event in process:
                assert event == Stdout(b"one")
                break
        assert fake.stream.closed_early
    finally:
        sandbox.close()


def test_fs_streams_chunks_both_ways(tmp_path: Path) -> None:
    sandbox, fake = facade()
    try:
        assert list(sandbox.fs.read_chunks("/f")) == [b"ab", b"cd", b"ef"]
        assert sandbox.fs.write_chunks("/g", iter([b"12", b"34"]), mode=0o600) == 4
        assert fake.fs.written == [("/g", b"1234", 0o600)]
        sandbox.fs.copy_in(str(tmp_path / "x"), "/x")
        assert fake.fs.copied == [(tmp_path / "x", "/x")]
    finally:
        sandbox.close()


def test_a_dropped_handle_stops_its_thread() -> None:
    sandbox, _ = facade()
    del sandbox
    assert facade_threads() == []
