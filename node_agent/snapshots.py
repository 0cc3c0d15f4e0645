"""Boot snapshots: the first sandbox of a shape leaves one, later ones restore it.

Under TCG a cold boot spends ~0.5 s in the guest kernel and its first mounts; restoring
the state of a guest that has already booted skips all of it (shared/MEASURED.md). A
snapshot is recorded live, just after the first sandbox's handshake and before anyone
can run anything in it: QEMU's migration stream of the guest and a copy of its upper
disk at the same instant. Each restored sandbox starts from its own copy of that disk
and, at its handshake, gets its own clock, entropy and hostname (channel.py).

The key is everything that shapes the guest up to that point: the QEMU binary, the
command line with the per-sandbox paths left out (kernel, initramfs, base disk, vCPUs,
memory, kernel parameters), the upper disk's size, and the identity of every file the
guest reads, so a rebuilt kernel or a rewritten raw disk never meets a stale snapshot.

Kept free of asyncio: the launch consults it before QEMU starts (snapshot_record.py
records one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from corral.node_agent.vmm import QEMU_BINARY, Disk, VmSpec, qemu_command

ENABLED_ENV = "CORRAL_BOOT_SNAPSHOTS"
"""Set to 0 to boot every sandbox cold and record no snapshot."""
FORMAT = 1
STATE = "state"
UPPER = "upper.ext4"


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "1") != "0"


@dataclass(frozen=True)
class Snapshot:
    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / STATE

    @property
    def upper(self) -> Path:
        return self.directory / UPPER

    def exists(self) -> bool:
        """A snapshot directory appears whole (renamed into place) or not at all."""
        return self.state.is_file() and self.upper.is_file()


def _identity(path: Path) -> str:
    info = path.stat()
    return f"{path}:{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_ctime_ns}"


def key(spec: VmSpec, disk_mib: int) -> str:
    """The key of the guest `spec` boots, for a sandbox with one base and one upper disk."""
    base, _upper = spec.disks
    shape = dataclasses.replace(
        spec,
        channel_socket=Path("channel"),
        console_log=Path("console"),
        qmp_socket=Path("qmp"),
        disks=[base, Disk(Path("upper"), readonly=False)],
        incoming=None,
    )
    qemu = shutil.which(QEMU_BINARY) or QEMU_BINARY
    parts = [
        f"format {FORMAT}",
        f"upper {disk_mib}",
        _identity(Path(qemu)),
        _identity(spec.kernel),
        _identity(spec.initramfs),
        _identity(base.path),
        *qemu_command(shape),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def find(cache: Path, spec: VmSpec, disk_mib: int) -> Snapshot:
    """Where the snapshot of this shape lives in `cache` (it may not exist yet)."""
    return Snapshot(cache / "snapshots" / key(spec, disk_mib))
