"""Waiting, in tests and benchmarks, for something another thread or process will do."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(predicate: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, and return that; AssertionError
    naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout:g}s")
