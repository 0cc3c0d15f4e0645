import multiprocessing
import subprocess
from pathlib import Path

import pytest

from corral._errors import SandboxAlreadyExists, SandboxNotFound
from corral._state import StateStore, current_process_identity, process_start_time


def _create(db: str, uid: str, results: "multiprocessing.Queue[str]") -> None:
    try:
        StateStore(Path(db)).insert("same", uid, {}, detached=True)
        results.put("won")
    except SandboxAlreadyExists:
        results.put("exists")


def test_two_processes_creating_one_name_one_wins(tmp_path: Path) -> None:
    db = str(tmp_path / "state.db")
    StateStore(Path(db))
    results: multiprocessing.Queue[str] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_create, args=(db, f"uid{i}", results)) for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == ["exists", "exists", "exists", "won"]


def test_dead_supervisor_is_reported_stale(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.insert("w", "u1", {}, detached=True)
    child = subprocess.Popen(["sleep", "30"])
    start = process_start_time(child.pid)
    store.update("w", status="running", supervisor_pid=child.pid, supervisor_start=start)
    assert store.get("w").effective_status == ("running", "")
    child.kill()
    child.wait()
    status, reason = store.get("w").effective_status
    assert status == "stale" and str(child.pid) in reason


def test_pid_reuse_is_not_mistaken_for_the_supervisor(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.insert("w", "u1", {}, detached=True)
    pid, start = current_process_identity()
    store.update("w", status="running", supervisor_pid=pid, supervisor_start=start + 1)
    assert store.get("w").effective_status[0] == "stale"


def test_missing_and_unknown_columns(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    with pytest.raises(SandboxNotFound):
        store.get("nope")
    store.insert("w", "u1", {"cpus": 1}, detached=False)
    with pytest.raises(ValueError, match="unknown columns"):
        store.update("w", bogus=1)
    assert store.get("w").config == {"cpus": 1}
    store.delete("w", "u1")
    assert store.list() == []


def test_an_older_state_file_gains_new_columns(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "state.db")
    db.execute(
        "CREATE TABLE sandboxes (name TEXT PRIMARY KEY, uid TEXT NOT NULL UNIQUE, "
        "config TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    db.execute("INSERT INTO sandboxes VALUES ('old', 'u0', '{}', 'stopped', 1.0)")
    db.commit()
    db.close()
    record = StateStore(tmp_path / "state.db").get("old")
    assert (record.status, record.main_exit, record.boot_id) == ("stopped", "", "")


def test_a_record_whose_launch_never_started_turns_stale(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    store.insert("young", "u1", {}, detached=True)
    assert store.get("young").effective_status[0] == "creating"
    store.insert("old", "u2", {}, detached=True)
    store.update("old", created_at=1.0)
    status, reason = store.get("old").effective_status
    assert status == "stale" and "no supervisor" in reason
