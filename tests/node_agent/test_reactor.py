"""The supervisor's event loop: timers, fds, signals, and callbacks that fail."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from corral.node_agent.reactor import Reactor


def test_timers_run_in_due_order_and_a_cancelled_one_never_runs() -> None:
    reactor = Reactor()
    ran: list[str] = []
    reactor.call_later(0.02, lambda: ran.append("late"))
    reactor.call_later(0.01, lambda: ran.append("early")).cancel()
    reactor.call_soon(lambda: ran.append("soon"))
    reactor.call_soon(lambda: ran.append("soon again"))
    assert reactor.run_until(lambda: "late" in ran, timeout=5)
    assert ran == ["soon", "soon again", "late"]


def test_run_until_gives_up_at_its_timeout() -> None:
    assert not Reactor().run_until(lambda: False, timeout=0.05)


def test_readers_and_writers_on_one_fd_come_and_go_independently() -> None:
    reactor = Reactor()
    ours, theirs = socket.socketpair()
    events: list[str] = []
    reactor.add_writer(ours.fileno(), lambda: events.append("writable"))
    reactor.add_reader(ours.fileno(), lambda: events.append(ours.recv(16).decode()))
    assert reactor.run_until(lambda: "writable" in events, timeout=5)
    reactor.remove_writer(ours.fileno())
    events.clear()
    theirs.sendall(b"ping")
    assert reactor.run_until(lambda: bool(events), timeout=5)
    assert events == ["ping"]
    reactor.remove_reader(ours.fileno())
    reactor.remove_reader(ours.fileno())  # twice: harmless
    theirs.sendall(b"unheard")
    assert not reactor.run_until(lambda: len(events) > 1, timeout=0.05)
    ours.close()
    theirs.close()


def test_a_callback_that_raises_is_reported_and_the_loop_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reactor = Reactor()
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    reactor.call_soon(broken)
    reactor.call_later(0.01, lambda: ran.append("after"))
    assert reactor.run_until(lambda: bool(ran), timeout=5)
    assert "RuntimeError: boom" in capsys.readouterr().err


def test_a_signal_runs_its_callback_from_the_loop() -> None:
    reactor = Reactor()
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        reactor.on_signal(signal.SIGUSR1, lambda: seen.append(signal.SIGUSR1))
        os.kill(os.getpid(), signal.SIGUSR1)
        assert reactor.run_until(lambda: bool(seen), timeout=5)
    finally:
        reactor.close()
        signal.signal(signal.SIGUSR1, previous)
    assert seen == [signal.SIGUSR1]
