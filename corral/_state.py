"""The embedded-mode state: one SQLite file (WAL) recording every sandbox.

The UNIQUE name column is the arbiter when two processes create the same name: exactly
one INSERT succeeds. Supervisors write their sandbox's status; clients read it and
detect stale records (a supervisor that died without recording why).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral._errors import SandboxAlreadyExists, SandboxNotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (
    name TEXT PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    detached INTEGER NOT NULL DEFAULT 0,
    boot_id TEXT NOT NULL DEFAULT '',
    accel TEXT NOT NULL DEFAULT '',
    accel_reason TEXT NOT NULL DEFAULT '',
    boot_mode TEXT NOT NULL DEFAULT '',
    supervisor_pid INTEGER NOT NULL DEFAULT 0,
    supervisor_start INTEGER NOT NULL DEFAULT 0,
    qemu_pid INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL NOT NULL DEFAULT 0,
    finished_at REAL NOT NULL DEFAULT 0,
    main_exit TEXT NOT NULL DEFAULT ''
)
"""

LIVE_STATUSES = frozenset({"creating", "running", "stopping"})
LAUNCH_GRACE = 60.0  # seconds a new record may wait for its supervisor to record its pid
COLUMNS = [
    "name",
    "uid",
    "config",
    "status",
    "reason",
    "detached",
    "boot_id",
    "accel",
    "accel_reason",
    "boot_mode",
    "supervisor_pid",
    "supervisor_start",
    "qemu_pid",
    "created_at",
    "started_at",
    "finished_at",
    "main_exit",
]


def process_start_time(pid: int) -> int:
    """The kernel's start time of `pid` in clock ticks, or 0 if there is no such process.

    Together with the pid it identifies a process across pid reuse.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_alive(pid: int, start_time: int) -> bool:
    return pid > 0 and start_time > 0 and process_start_time(pid) == start_time


@dataclass(frozen=True)
class SandboxRecord:
    name: str
    uid: str
    config: dict[str, Any]
    status: str
    reason: str
    detached: bool
    boot_id: str
    accel: str
    accel_reason: str
    boot_mode: str  # "cold", or "snapshot": restored from its shape's boot snapshot
    supervisor_pid: int
    supervisor_start: int
    qemu_pid: int
    created_at: float
    started_at: float
    finished_at: float
    main_exit: str

    @property
    def effective_status(self) -> tuple[str, str]:
        """(status, reason), with a dead supervisor of a live sandbox reported as stale."""
        if self.status in LIVE_STATUSES and not process_alive(
            self.supervisor_pid, self.supervisor_start
        ):
            if self.status == "creating" and not self.supervisor_pid:
                if time.time() - self.created_at < LAUNCH_GRACE:
                    return self.status, self.reason  # its launch has not started yet
                return "stale", f"no supervisor started within {LAUNCH_GRACE:g}s"
            return "stale", f"supervisor (pid {self.supervisor_pid}) is gone"
        return self.status, self.reason

    def to_dict(self) -> dict[str, Any]:
        status, reason = self.effective_status
        return {
            "name": self.name,
            "uid": self.uid,
            "status": status,
            "reason": reason,
            "detached": self.detached,
            "boot_id": self.boot_id,
            "accelerator": self.accel,
            "accelerator_reason": self.accel_reason,
            "boot_mode": self.boot_mode,
            "supervisor_pid": self.supervisor_pid,
            "qemu_pid": self.qemu_pid,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "main_exit": self.main_exit,
            "config": self.config,
        }


class StateStore:
    """Reads and writes sandbox records; every call is its own short transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)
            _add_missing_columns(db)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    def insert(self, name: str, uid: str, config: dict[str, Any], detached: bool) -> None:
        try:
            with self._connect() as db:
                db.execute(
                    "INSERT INTO sandboxes (name, uid, config, status, detached, created_at) "
                    "VALUES (?, ?, ?, 'creating', ?, ?)",
                    (name, uid, json.dumps(config), int(detached), time.time()),
                )
        except sqlite3.IntegrityError as exc:
            raise SandboxAlreadyExists(name) from exc

    def update(self, name: str, **values: Any) -> None:
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        assignments = ", ".join(f"{column} = ?" for column in values)
        with self._connect() as db:
            db.execute(
                f"UPDATE sandboxes SET {assignments} WHERE name = ?", (*values.values(), name)
            )

    def get(self, name: str) -> SandboxRecord:
        with self._connect() as db:
            row = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM sandboxes WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise SandboxNotFound(name)
        return _record(row)

    def list(self) -> list[SandboxRecord]:
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM sandboxes ORDER BY created_at"
            ).fetchall()
        return [_record(row) for row in rows]

    def delete(self, name: str, uid: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM sandboxes WHERE name = ? AND uid = ?", (name, uid))


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a state file written by an older Corral up to this schema."""
    present = {row[1] for row in db.execute("PRAGMA table_info(sandboxes)")}
    for line in SCHEMA.splitlines():
        words = line.strip().rstrip(",").split()
        if words and words[0] in COLUMNS and words[0] not in present:
            db.execute(f"ALTER TABLE sandboxes ADD COLUMN {' '.join(words)}")


def _record(row: tuple[Any, ...]) -> SandboxRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    values["config"] = json.loads(values["config"])
    values["detached"] = bool(values["detached"])
    return SandboxRecord(**values)


def current_process_identity() -> tuple[int, int]:
    pid = os.getpid()
    return pid, process_start_time(pid)
