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
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from corral.node_agent.vmm import Disk, VmSpec, qemu_command

ENABLED_ENV = "CORRAL_BOOT_SNAPSHOTS"
"""Set to 0 to boot every sandbox cold and record no snapshot."""
FORMAT = 1
STATE = "state"
UPPER = "upper.ext4"
FILES = "files.json"


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "1") != "0"


@dataclass(frozen=True)
class Snapshot:
    directory: Path
    files: dict[str, str] = field(default_factory=dict)  # path → identity, booted from

    @property
    def state(self) -> Path:
        return self.directory / STATE

    @property
    def upper(self) -> Path:
        return self.directory / UPPER

    def exists(self) -> bool:
        """A snapshot directory appears whole (renamed into place) or not at all."""
        return self.state.is_file() and self.upper.is_file()


def file_identity(path: Path) -> str:
    info = path.stat()
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_ctime_ns}"


def booted_files(spec: VmSpec) -> dict[str, str]:
    """The files a guest of `spec` is made of (QEMU, kernel, initramfs, base disk), each
    with the identity of its current content."""
    import shutil  # only here: a supervisor loads this module, and keeps what it imports

    qemu = Path(shutil.which(spec.emulator) or spec.emulator)
    paths = (qemu, spec.kernel, spec.initramfs, spec.disks[0].path)
    return {str(path): file_identity(path) for path in paths}


def key(spec: VmSpec, disk_mib: int, files: dict[str, str]) -> str:
    """The key of the guest `spec` boots from `files`, for a sandbox with one base and
    one upper disk."""
    base, _upper = spec.disks
    shape = dataclasses.replace(
        spec,
        channel_socket=Path("channel"),
        console_log=Path("console"),
        qmp_socket=Path("qmp"),
        disks=[base, Disk(Path("upper"), readonly=False)],
        incoming=None,
    )
    parts = [
        f"format {FORMAT}",
        f"upper {disk_mib}",
        *(f"{path}={identity}" for path, identity in sorted(files.items())),
        *qemu_command(shape),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def find(cache: Path, spec: VmSpec, disk_mib: int) -> Snapshot:
    """Where the snapshot of this shape lives in `cache` (it may not exist yet)."""
    files = booted_files(spec)
    return Snapshot(cache / "snapshots" / key(spec, disk_mib, files), files)


def stale(cache: Path) -> list[Path]:
    """Snapshots a file they were booted from has since changed under or vanished from:
    their key can never come up again, so nothing would restore them."""
    found = []
    for directory in sorted((cache / "snapshots").glob("[0-9a-f]*")):
        try:
            files = json.loads((directory / FILES).read_text())
            fresh = {path: file_identity(Path(path)) for path in files} == files
        except (OSError, ValueError, TypeError):
            fresh = False
        if not fresh:
            found.append(directory)
    return found
