"""Recording a boot snapshot of a running guest through QEMU's monitor (QMP).

`python -m corral.node_agent.snapshot_record QMP UPPER SNAPSHOT FILES`: a cold-booting
sandbox's supervisor starts this as its child while the guest boots, so the QMP client
and the TLS stack it imports never stay in the supervisor (node_agent/launch.py). FILES
is the snapshot's booted files, as JSON. It records once a line arrives on stdin (the
guest is up); at end of input (the boot failed) it exits having recorded nothing. Exit
status 1: not recorded, the reason on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from qemu.qmp import QMPClient

from corral.node_agent import rootfs
from corral.node_agent.snapshots import FILES, STATE, UPPER, Snapshot

MIGRATION_TIMEOUT = 30.0
MIGRATION_POLL = 0.005
MAX_BANDWIDTH = 4 << 30  # bytes/s; QEMU's default (128 MiB/s) keeps the guest paused longer


async def record_snapshot(qmp_socket: Path, upper: Path, snapshot: Snapshot) -> None:
    """Save the running guest and its upper disk as `snapshot`, then let the guest go on.

    The migration runs live; at its end QEMU pauses the guest with its disks flushed, so
    the copy of the upper disk matches the saved state. Whatever happens, no migration
    is left running (one finishing later would pause the guest for good) and the guest
    runs again; a snapshot another sandbox of the same shape recorded first wins."""
    snapshot.directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=snapshot.directory.parent, prefix=".staging-"))
    client = QMPClient()
    try:
        await client.connect(str(qmp_socket))
        try:
            await client.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
            uri = f"exec:cat > {shlex.quote(str(staging / STATE))}"
            await client.execute("migrate", {"uri": uri})
            await asyncio.wait_for(_migrated(client), MIGRATION_TIMEOUT)
            await asyncio.to_thread(_keep, staging, upper, snapshot)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.execute("migrate_cancel")
            raise
        finally:
            status = await client.execute("query-status")
            if isinstance(status, dict) and not status.get("running"):
                await client.execute("cont")
    finally:
        await client.disconnect()
        shutil.rmtree(staging, ignore_errors=True)


def _keep(staging: Path, upper: Path, snapshot: Snapshot) -> None:
    rootfs.copy_sparse(upper, staging / UPPER)
    (staging / FILES).write_text(json.dumps(snapshot.files))
    with contextlib.suppress(OSError):  # another sandbox of this shape recorded one first
        staging.rename(snapshot.directory)


async def _migrated(client: QMPClient) -> None:
    while True:
        info = await client.execute("query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"QEMU could not save the guest (migration {status})")
        await asyncio.sleep(MIGRATION_POLL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("qmp", type=Path)
    parser.add_argument("upper", type=Path)
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("files", type=json.loads)
    args = parser.parse_args()
    if not sys.stdin.readline():
        return
    try:
        asyncio.run(record_snapshot(args.qmp, args.upper, Snapshot(args.snapshot, args.files)))
    except Exception as exc:
        sys.exit(f"boot snapshot not recorded: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
