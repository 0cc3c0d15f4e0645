"""Launching a sandbox: the first, synchronous phase of its supervisor process.

`python -m corral.node_agent.launch` is what a creator starts, and the process lives as
long as the sandbox. The VM is prepared in a forked child (node_agent/prepare.py: the
image, the disks, the boot snapshot), which loads what that takes (a registry client,
OpenSSL for hashing images) and exits. This process then turns off the optional
OpenSSL imports (ssl, hashlib's _hashlib), which nothing it does needs (~4.5 MiB of RSS
per sandbox; bench/memory.py), binds the guest channel, starts QEMU, and imports the
supervisor, which loads while the guest boots. A failure before the VM is up is recorded
in the state store and reported to the creator as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral._errors import BootError, CorralError
from corral._paths import Paths
from corral._state import SandboxRecord, StateStore, current_process_identity
from corral.node_agent import cgroups
from corral.node_agent.plan import Plan
from corral.node_agent.vmm import QemuProcess


@dataclass
class Launched:
    """What the launch hands to the supervisor: the running VM and its channel socket."""

    record: SandboxRecord
    directory: Path
    qemu: QemuProcess
    channel: socket.socket
    plan: Plan

    @property
    def config(self) -> dict[str, Any]:
        """The SandboxConfig its creator validated, read as a mapping (pydantic stays
        off the boot path)."""
        return self.record.config


def listen_unix(path: Path, backlog: int = 1) -> socket.socket:
    """A listening unix socket: for QEMU's chardev (one connection) or for clients."""
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(path))
    listening.listen(backlog)
    return listening


def launch(paths: Paths, store: StateStore, record: SandboxRecord) -> Launched | None:
    """The started VM; None when its preparation failed (recorded and reported)."""
    pid, start = current_process_identity()  # first, so a launch killed mid-pull reads stale
    store.update(record.name, supervisor_pid=pid, supervisor_start=start)
    directory = paths.sandbox_dir(record.uid)
    if cgroup_root := os.environ.get(cgroups.ROOT_ENV):
        cgroups.join(Path(cgroup_root), record.uid, directory)  # before any child process
    plan = prepare_in_child(paths, record)
    if isinstance(plan, dict):
        fail(store, record.name, plan)
        return None
    channel = listen_unix(plan.spec.channel_socket)
    qemu = QemuProcess(plan.spec)
    qemu.start()
    store.update(
        record.name,
        qemu_pid=qemu.pid,
        accel=plan.spec.accel,
        accel_reason=plan.accel_reason,
        boot_mode="snapshot" if plan.restored_from else "cold",
    )
    return Launched(record, directory, qemu, channel, plan)


def prepare_in_child(paths: Paths, record: SandboxRecord) -> Plan | dict[str, Any]:
    """Prepare the VM in a forked child: the plan, or the `failure` report of why not,
    pickled back through a pipe (the same program on both ends). The child leaves the
    state store alone: SQLite connections must not cross a fork. Once the child is
    forked, this process goes without OpenSSL (`without_openssl`), before unpickling
    loads the plan's modules, which import hashlib."""
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            os.close(readable)
            with open(writable, "wb") as pipe:
                pickle.dump(prepare_or_failure(paths, record), pipe)
            status = 0
        finally:
            os._exit(status)  # the child never returns into the launch's code
    os.close(writable)
    without_openssl()
    with open(readable, "rb") as pipe:
        data = pipe.read()
    status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    if status != 0 or not data:
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        raise BootError(f"preparing the VM failed ({how})")
    prepared: Plan | dict[str, Any] = pickle.loads(data)
    return prepared


def prepare_or_failure(paths: Paths, record: SandboxRecord) -> Plan | dict[str, Any]:
    """In the child: any error becomes the report the parent records and passes on."""
    from corral.node_agent.prepare import prepare

    try:
        return prepare(paths, record)
    except Exception as exc:
        return failure(exc)


def without_openssl() -> None:
    """From here on, imports of ssl and _hashlib fail: hashlib then uses its built-in
    SHA-2 and nothing loads OpenSSL. This process serves a running sandbox and needs
    neither TLS nor fast hashing; a QEMU snapshot is recorded by a child of its own."""
    sys.modules["ssl"] = None  # type: ignore[assignment]
    sys.modules["_hashlib"] = None  # type: ignore[assignment]


def report(message: dict[str, object]) -> None:
    """Tell the creator how the boot went, then let go of its pipe."""
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def failure(error: Exception) -> dict[str, Any]:
    """What the creator is told of a boot that failed."""
    if not isinstance(error, CorralError):
        error = BootError(f"{type(error).__name__}: {error}")
    message = error.message if isinstance(error, BootError) else str(error)
    console = error.console if isinstance(error, BootError) else ""
    return {"ok": False, "kind": type(error).__name__, "error": message, "console": console}


def fail(store: StateStore, name: str, error: Exception | dict[str, Any]) -> int:
    """Record the failure (an error, or its `failure` report) and tell the creator."""
    message = error if isinstance(error, dict) else failure(error)
    reason = message["error"].splitlines()[0]
    store.update(name, status="failed", reason=reason, finished_at=time.time())
    report(message)
    return 1


def main() -> None:
    # A fixed help width: by default argparse asks shutil for the terminal's, and shutil
    # (with bz2 and lzma) would stay resident in every supervisor.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=lambda prog: argparse.HelpFormatter(prog, width=88)
    )
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--owner-pid", type=int, default=0)
    args = parser.parse_args()
    paths = Paths(args.home)
    store = StateStore(paths.state_db)
    record = store.get(args.name)
    try:
        launched = launch(paths, store, record)
    except Exception as exc:
        sys.exit(fail(store, args.name, exc))
    if launched is None:
        sys.exit(1)
    from corral.node_agent import supervisor

    sys.exit(supervisor.run(store, launched, args.owner_pid))


if __name__ == "__main__":
    main()
