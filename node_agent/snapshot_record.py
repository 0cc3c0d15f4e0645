"""Recording a boot snapshot of a running guest through QEMU's monitor (QMP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
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
