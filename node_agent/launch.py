"""Launching a sandbox: the first, synchronous phase of its supervisor process.

`python -m corral.node_agent.launch` is what a creator starts. With the standard library
and the runtime's small resource modules only, it resolves the image, prepares the
disks, binds the guest channel and starts QEMU; then it imports the asyncio supervisor,
which loads while the guest boots. A failure before the VM is up is recorded in the
state store and reported to the creator as one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from corral._errors import BootError, CorralError
from corral._paths import Paths
from corral._state import SandboxRecord, StateStore, current_process_identity
from corral.node_agent import accel, cgroups, rootfs, snapshots
from corral.node_agent.assets import CLOUD_KERNEL, Assets
from corral.node_agent.vmm import ROOT_SHARE_TAG, Disk, QemuProcess, VmSpec

TSC_ENV = "CORRAL_TSC_KHZ"
"""The host's TSC frequency in kHz, as the node agent measured it where it runs."""


@dataclass
class Launched:
    """What the launch hands to the supervisor: the running VM and its channel socket."""

    record: SandboxRecord
    directory: Path
    qemu: QemuProcess
    channel: socket.socket
    defaults: rootfs.ImageDefaults
    restored_from: snapshots.Snapshot | None = None
    record_to: snapshots.Snapshot | None = None  # cold boot of a shape with no snapshot yet

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


def launch(paths: Paths, store: StateStore, record: SandboxRecord) -> Launched:
    pid, start = current_process_identity()  # first, so a launch killed mid-pull reads stale
    store.update(record.name, supervisor_pid=pid, supervisor_start=start)
    config = record.config
    directory = paths.sandbox_dir(record.uid)
    if cgroup_root := os.environ.get(cgroups.ROOT_ENV):
        cgroups.join(Path(cgroup_root), record.uid, directory)  # before any child process
    assets = Assets.load(paths.assets, config["kernel"])
    try:
        choice = accel.choose(config["accel"], accel.probe_host(), assets.kernel_pvm)
    except ValueError as exc:
        raise BootError(str(exc)) from None
    policy = config.get("pull_policy", "IfMissing")  # records written before it existed
    source = rootfs.resolve(config["image"], assets.default_image, paths.images, policy)
    disks, root_args = root_disks(source, assets, directory, paths.images)
    channel_path = directory / "channel.sock"
    channel = listen_unix(channel_path)
    spec = VmSpec(
        accel=choice.accel,
        cpus=config["cpus"],
        memory_mib=config["memory_mib"],
        kernel=assets.kernel,
        initramfs=assets.initramfs,
        channel_socket=channel_path,
        console_log=directory / "console.log",
        disks=disks,
        root_share=source.path if source.kind == "bind" else None,
        kernel_args=[*root_args, *assets.kernel_args],
        tsc_khz=guest_tsc_khz(assets.tsc_khz),
        acpi=assets.kernel_acpi,
        qmp_socket=directory / "qmp.sock",
        qemu=assets.qemu,
    )
    restored_from, record_to = prepare_upper(spec, paths.images, config["disk_mib"])
    if restored_from is not None:
        spec = replace(spec, incoming=restored_from.state)
    qemu = QemuProcess(spec)
    qemu.start()
    store.update(
        record.name,
        qemu_pid=qemu.pid,
        accel=choice.accel,
        accel_reason=choice.reason,
        boot_mode="snapshot" if restored_from else "cold",
    )
    return Launched(record, directory, qemu, channel, source.defaults, restored_from, record_to)


def root_disks(
    source: rootfs.ImageSource, assets: Assets, directory: Path, cache: Path
) -> tuple[list[Disk], list[str]]:
    """The root's disks and kernel parameters: the shared base under an upper the launch
    then creates (fresh, or its shape's snapshot's), or, for a bind root, none (the
    guest mounts the 9p share, which needs 9p in the kernel)."""
    if source.kind == "bind":
        if assets.kernel_name == CLOUD_KERNEL:
            raise BootError(
                f"image {source.reference!r}: a bind root is mounted over 9p, which the "
                f"{CLOUD_KERNEL} kernel lacks; use the default kernel"
            )
        return [], [f"corral.root=9p:{ROOT_SHARE_TAG}"]
    base = rootfs.base_disk(source, cache)
    disks = [Disk(base, readonly=True), Disk(directory / "upper.ext4", readonly=False)]
    return disks, ["corral.root=/dev/vda", "corral.upper=/dev/vdb"]


def prepare_upper(
    spec: VmSpec, cache: Path, disk_mib: int
) -> tuple[snapshots.Snapshot | None, snapshots.Snapshot | None]:
    """Create the upper disk: a copy of the one in its shape's boot snapshot, which the
    launch then restores (first in the pair), else a fresh one, and the snapshot the
    supervisor is to record after the handshake (second)."""
    if not spec.disks:
        return None, None
    upper = spec.disks[1].path
    snapshot = snapshots.find(cache, spec, disk_mib) if snapshots.enabled() else None
    if snapshot is not None and snapshot.exists():
        rootfs.copy_sparse(snapshot.upper, upper)
        return snapshot, None
    rootfs.upper_disk(upper, disk_mib, cache)
    return None, snapshot


def guest_tsc_khz(recorded: int) -> int:
    """The TSC frequency a TCG guest is told: the host's from $CORRAL_TSC_KHZ, else the
    one recorded when the assets were provisioned (in a container image, the build
    machine's)."""
    value = os.environ.get(TSC_ENV, "")
    if not value:
        return recorded
    if not value.isdecimal() or int(value) == 0:
        raise BootError(f"{TSC_ENV}={value!r}: expected the host's TSC frequency in kHz")
    return int(value)


def report(message: dict[str, object]) -> None:
    """Tell the creator how the boot went, then let go of its pipe."""
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def fail(store: StateStore, name: str, error: Exception) -> int:
    if not isinstance(error, CorralError):
        error = BootError(f"{type(error).__name__}: {error}")
    message = error.message if isinstance(error, BootError) else str(error)
    console = error.console if isinstance(error, BootError) else ""
    store.update(name, status="failed", reason=message.splitlines()[0], finished_at=time.time())
    report({"ok": False, "kind": type(error).__name__, "error": message, "console": console})
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
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
    from corral.node_agent import supervisor

    sys.exit(supervisor.run(store, launched, args.owner_pid))


if __name__ == "__main__":
    main()
