"""A single-threaded event loop on `selectors`: the supervisor's, in place of asyncio.

A supervisor waits on a handful of sockets, two pidfds, SIGTERM and one timer, and stays
for the sandbox's whole life, one per sandbox. asyncio does that too, but importing it
(with inspect, logging, concurrent.futures and the rest it loads) costs each supervisor
about 2 MiB of its RSS, counted against the 40 MiB per-sandbox overhead that
bench/memory.py measures. Callbacks run one at a time; one that raises is reported on
stderr (the supervisor's log) and the loop goes on, as asyncio does with a failed task.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable

Callback = Callable[[], None]


class Timer:
    """A callback due at a time; `cancel` keeps it from running."""

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback: Callback | None = callback

    def cancel(self) -> None:
        self.callback = None


class Reactor:
    """Owns its selector, its timers and, once `on_signal` is used, the signal wakeup fd."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties between timers due at once: first set, first run
        self._signals: dict[int, Callback] = {}
        self._wakeup: tuple[socket.socket, socket.socket] | None = None

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._watch(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        self._unwatch(fd, selectors.EVENT_READ)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._watch(fd, selectors.EVENT_WRITE, callback)

    def remove_writer(self, fd: int) -> None:
        self._unwatch(fd, selectors.EVENT_WRITE)

    def _watch(self, fd: int, event: int, callback: Callback) -> None:
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            self._selector.register(fd, event, {event: callback})
            return
        callbacks = {**key.data, event: callback}
        self._selector.modify(fd, key.events | event, callbacks)

    def _unwatch(self, fd: int, event: int) -> None:
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            return
        callbacks = {kind: cb for kind, cb in key.data.items() if kind != event}
        if callbacks:
            self._selector.modify(fd, key.events & ~event, callbacks)
        else:
            self._selector.unregister(fd)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._order), timer))
        return timer

    def call_soon(self, callback: Callback) -> Timer:
        return self.call_later(0, callback)

    def on_signal(self, signum: int, callback: Callback) -> None:
        """Run `callback` from the loop, never from inside whatever the signal interrupted."""
        if self._wakeup is None:
            self._wakeup = socket.socketpair()
            for end in self._wakeup:
                end.setblocking(False)
            signal.set_wakeup_fd(self._wakeup[1].fileno(), warn_on_full_buffer=False)
            self.add_reader(self._wakeup[0].fileno(), self._signalled)
        self._signals[signum] = callback
        signal.signal(signum, lambda number, frame: None)  # the wakeup fd carries it

    def _signalled(self) -> None:
        assert self._wakeup is not None
        try:
            numbers = self._wakeup[0].recv(64)
        except BlockingIOError:
            return
        for number in numbers:
            if callback := self._signals.get(number):
                self._run(callback)

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run callbacks until `done()`; False if `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            wait = None if deadline is None else deadline - now
            if self._timers:
                due = max(0.0, self._timers[0][0] - now)
                wait = due if wait is None else min(wait, due)
            for key, events in self._selector.select(wait):
                for event in (selectors.EVENT_READ, selectors.EVENT_WRITE):
                    if events & event:
                        self._dispatch(key.fd, event)
            self._run_due_timers()
        return True

    def _dispatch(self, fd: int, event: int) -> None:
        """Run the callback watching `fd` for `event` now: an earlier callback of the same
        round may have removed it."""
        try:
            callback = self._selector.get_key(fd).data.get(event)
        except KeyError:
            return
        if callback is not None:
            self._run(callback)

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)[2]
            if timer.callback is not None:
                self._run(timer.callback)

    def _run(self, callback: Callback) -> None:
        try:
            callback()
        except Exception:
            import traceback  # only once something failed: it stays out of every supervisor

            print("corral supervisor: a callback failed", file=sys.stderr)
            traceback.print_exc()

    def close(self) -> None:
        if self._wakeup is not None:
            signal.set_wakeup_fd(-1)
            for end in self._wakeup:
                end.close()
            self._wakeup = None
        self._selector.close()
