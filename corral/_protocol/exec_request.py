"""A command for the guest agent to run: the fields of an EXEC frame.

Apart from the SDK's exec (corral/_exec.py) because the supervisor builds one too, for a
sandbox's entrypoint, and stays off the SDK's asyncio client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from corral._protocol.fields import Value

RLIMIT_NAMES = frozenset(
    [
        "AS",
        "CORE",
        "CPU",
        "DATA",
        "FSIZE",
        "LOCKS",
        "MEMLOCK",
        "MSGQUEUE",
        "NICE",
        "NOFILE",
        "NPROC",
        "RSS",
        "RTPRIO",
        "RTTIME",
        "SIGPENDING",
        "STACK",
    ]
)


@dataclass(frozen=True)
class ExecRequest:
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    user: str
    timeout: float | None = None
    tty: tuple[int, int] | None = None
    rlimits: Mapping[str, tuple[int | None, int | None]] | None = None
    stdin: bool = False

    def fields(self) -> list[tuple[int, Value]]:
        items: list[tuple[int, Value]] = [(1, arg) for arg in self.argv]
        items += [(2, f"{key}={value}") for key, value in self.env.items()]
        items += [(3, self.cwd), (4, self.user), (9, int(self.stdin))]
        if self.timeout is not None:
            items.append((5, max(1, int(self.timeout * 1000))))
        if self.tty is not None:
            items += [(6, self.tty[0]), (7, self.tty[1])]
        for name, (soft, hard) in (self.rlimits or {}).items():
            if name.upper() not in RLIMIT_NAMES:
                raise ValueError(f"unknown rlimit {name!r}")
            items.append((8, f"{name.upper()}={_limit(soft)}:{_limit(hard)}"))
        return items


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)
