"""The relay between a guest command and this process, driven by a fake `ExecStream`:
output bytes, stdin forwarding, signal forwarding and exit statuses, without VMs."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from corral._cli.stream import Relay
from corral._cli.terminal import terminal_size
from corral._errors import ChannelError, ExecFailed, ExecTimeout
from corral._exec import ExecEvent, Exited, Failed, Started, Stderr, Stdout


class FakeProcess:
    """Plays scripted events; `until` holds the exit back until the test allows it."""

    def __init__(self, events: list[ExecEvent], until: asyncio.Event | None = None) -> None:
        self.script = events
        self.until = until
        self.stdin = bytearray()
        self.stdin_closed = False
        self.signals: list[int] = []
        self.resizes: list[tuple[int, int]] = []
        self.exit: Exited | None = None

    async def events(self) -> AsyncIterator[ExecEvent]:
        for event in self.script:
            if isinstance(event, Exited) and self.until is not None:
                await self.until.wait()
                event = self.exit or event
            yield event

    def __aiter__(self) -> AsyncIterator[ExecEvent]:
        return self.events()

    async def write_stdin(self, data: bytes, eof: bool = False) -> None:
        self.stdin += data

    async def close_stdin(self) -> None:
        self.stdin_closed = True
        if self.until is not None:
            self.until.set()

    async def signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGKILL and self.until is not None:
            self.exit = Exited(None, signum, False)
            self.until.set()

    async def resize(self, rows: int, cols: int) -> None:
        self.resizes.append((rows, cols))
        if self.until is not None:
            self.until.set()


def relay(process: FakeProcess, **options: Any) -> tuple[Relay, io.BytesIO, io.BytesIO]:
    out, err = io.BytesIO(), io.BytesIO()
    settings: dict[str, Any] = {"stdin_fd": None, "tty": False, "command": "cmd", "timeout": None}
    settings.update(options)
    return Relay(cast(Any, process), stdout=out, stderr=err, **settings), out, err


async def test_output_is_relayed_byte_for_byte_and_the_exit_code_returned() -> None:
    binary = bytes(range(256))
    process = FakeProcess(
        [Started(7), Stdout(b"hello\n"), Stderr(b"warn\n"), Stdout(binary), Exited(3, None, False)]
    )
    runner, out, err = relay(process)
    assert await runner.run() == 3
    assert out.getvalue() == b"hello\n" + binary
    assert err.getvalue() == b"warn\n"


@pytest.mark.parametrize(
    ("exited", "status"),
    [(Exited(0, None, False), 0), (Exited(None, 9, False), 137), (Exited(None, 15, False), 143)],
)
async def test_exit_statuses(exited: Exited, status: int) -> None:
    assert await relay(FakeProcess([exited]))[0].run() == status


async def test_timeout_failure_and_broken_streams_raise() -> None:
    with pytest.raises(ExecTimeout, match="'sleep 9' timed out after 2s"):
        await relay(FakeProcess([Exited(None, 9, True)]), command="sleep 9", timeout=2)[0].run()
    with pytest.raises(ExecFailed) as failed:
        await relay(FakeProcess([Failed("NotFound", "no such program", 2)]))[0].run()
    assert failed.value.kind == "NotFound"
    with pytest.raises(ChannelError, match="without an exit status"):
        await relay(FakeProcess([Stdout(b"x")]))[0].run()
    with pytest.raises(ChannelError, match="impossible exit status 300"):
        await relay(FakeProcess([Exited(300, None, False)]))[0].run()


async def test_stdin_from_a_pipe_is_forwarded_then_closed() -> None:
    read_end, write_end = os.pipe()
    try:
        process = FakeProcess([Exited(0, None, False)], until=asyncio.Event())
        runner, _, _ = relay(process, stdin_fd=read_end)
        task = asyncio.ensure_future(runner.run())
        os.write(write_end, b"line one\n")
        await asyncio.sleep(0.05)
        os.write(write_end, b"\x00\xffend")
        os.close(write_end)
        write_end = -1
        assert await asyncio.wait_for(task, 5) == 0
        assert process.stdin == b"line one\n\x00\xffend"
        assert process.stdin_closed
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


async def test_stdin_from_a_regular_file_is_forwarded(tmp_path: Path) -> None:
    source = tmp_path / "input"
    source.write_bytes(b"x" * 200_000)
    with source.open("rb") as file:
        process = FakeProcess([Exited(0, None, False)], until=asyncio.Event())
        assert await asyncio.wait_for(relay(process, stdin_fd=file.fileno())[0].run(), 5) == 0
    assert process.stdin == source.read_bytes()


async def test_interrupts_are_forwarded_then_escalate_to_kill() -> None:
    before = signal.getsignal(signal.SIGINT)
    process = FakeProcess([Exited(0, None, False)], until=asyncio.Event())
    task = asyncio.ensure_future(relay(process)[0].run())
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(0.05)
    assert process.signals == [signal.SIGINT]
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 5) == 128 + signal.SIGKILL
    assert process.signals == [signal.SIGINT, signal.SIGKILL]
    assert signal.getsignal(signal.SIGINT) is before


async def test_window_changes_resize_the_guest_terminal() -> None:
    process = FakeProcess([Exited(0, None, False)], until=asyncio.Event())
    task = asyncio.ensure_future(relay(process, tty=True)[0].run())
    await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGWINCH)
    assert await asyncio.wait_for(task, 5) == 0
    assert process.resizes == [terminal_size()]
    assert signal.getsignal(signal.SIGWINCH) == signal.SIG_DFL
