"""The local terminal, for sessions that give the guest command a PTY.

Raw mode passes every keystroke (Ctrl-C included) to the guest's terminal, which does
the line editing and signalling; the saved mode is always restored. Without a local
terminal (pipes, pexpect without a size) sessions still work at 24x80.
"""

from __future__ import annotations

import os
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_SIZE = (24, 80)


def terminal_size() -> tuple[int, int]:
    """(rows, cols) of the first of stdin, stdout, stderr that is a terminal with a size."""
    for fd in (0, 1, 2):
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            continue
        if size.lines > 0 and size.columns > 0:
            return size.lines, size.columns
    return DEFAULT_SIZE


def terminal_env() -> dict[str, str]:
    """The guest needs TERM to drive its terminal; ours is the one it draws on."""
    return {"TERM": os.environ.get("TERM") or "xterm"}


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put `fd` in raw mode if it is a terminal, restoring its settings on the way out."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not the default TCSAFLUSH: keep what was typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
