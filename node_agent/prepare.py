"""Preparing a sandbox's VM: the work of the launch's forked child.

It resolves the image (pulling it if need be), finds or builds the root disks, creates
the sandbox's upper disk (a copy of its shape's boot snapshot's, when there is one) and
writes the VM's spec. The launch (node_agent/launch.py) runs this in a child that then
exits, so what preparing loads (a registry client, OpenSSL for hashing images) never
stays in the process that supervises the sandbox for its whole life.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from corral._errors import BootError
from corral._paths import Paths
from corral._state import SandboxRecord
from corral.node_agent import accel, rootfs, snapshots
from corral.node_agent.assets import CLOUD_KERNEL, Assets
from corral.node_agent.plan import Plan
from corral.node_agent.vmm import ROOT_SHARE_TAG, Disk, VmSpec

TSC_ENV = "CORRAL_TSC_KHZ"
"""The host's TSC frequency in kHz, as the node agent measured it where it runs."""


def prepare(paths: Paths, record: SandboxRecord) -> Plan:
    config = record.config
    directory = paths.sandbox_dir(record.uid)
    assets = Assets.load(paths.assets, config["kernel"])
    try:
        choice = accel.choose(config["accel"], accel.probe_host(), assets.kernel_pvm)
    except ValueError as exc:
        raise BootError(str(exc)) from None
    policy = config.get("pull_policy", "IfMissing")  # records written before it existed
    source = rootfs.resolve(config["image"], assets.default_image, paths.images, policy)
    disks, root_args = root_disks(source, assets, directory, paths.images)
    spec = VmSpec(
        accel=choice.accel,
        cpus=config["cpus"],
        memory_mib=config["memory_mib"],
        kernel=assets.kernel,
        initramfs=assets.initramfs,
        channel_socket=directory / "channel.sock",
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
    return Plan(spec, source.defaults, choice.reason, restored_from, record_to)


def root_disks(
    source: rootfs.ImageSource, assets: Assets, directory: Path, cache: Path
) -> tuple[list[Disk], list[str]]:
    """The root's disks and kernel parameters: the shared base under an upper created
    next (fresh, or its shape's snapshot's), or, for a bind root, none (the
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
    VM then restores (first in the pair), else a fresh one, and the snapshot the
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
