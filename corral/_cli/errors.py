"""How failures reach the user: one `corral: error: …` line and an exit code.

The codes follow docker and coreutils so scripts can tell the failures apart:
125 the sandbox could not be created, 126 the command could not be started, 127 no such
command, 124 the command timed out; any other Corral error is 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from corral._errors import CorralError, ExecFailed, ExecTimeout

GENERAL = 1
USAGE = 2
TIMED_OUT = 124
CREATE_FAILED = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127
INTERRUPTED = 130


class Failure(Exception):
    """A failure already phrased for the user, with the exit code it should cause."""

    def __init__(self, message: str, code: int = GENERAL) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: CorralError) -> int:
    if isinstance(exc, ExecTimeout):
        return TIMED_OUT
    if isinstance(exc, ExecFailed):
        return NOT_FOUND if exc.kind == "NotFound" else CANNOT_INVOKE
    return GENERAL


@contextmanager
def creating() -> Iterator[None]:
    """Mark errors raised while creating a sandbox (bad settings included) as code 125."""
    try:
        yield
    except CorralError as exc:
        raise Failure(str(exc), CREATE_FAILED) from exc


def report(message: str) -> None:
    print(f"corral: error: {message}", file=sys.stderr, flush=True)
