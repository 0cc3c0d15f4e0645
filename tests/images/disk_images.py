"""Test helper: ext4 root disk images built the way rootfs builds its own (mkfs.ext4 -d
from a busybox tree), as raw files and, through qemu-img, as QCOW2."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import dependencies

from corral.node_agent.rootfs import make_ext4
from images.oci_layout import busybox_layer


def qemu_img(*args: str) -> None:
    if shutil.which("qemu-img") is None:
        dependencies.missing("qemu-img (qemu-utils) is missing: run scripts/setup")
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=120)


def busybox_disk(directory: Path, marker: bytes) -> Path:
    """`directory`/root.raw: a bare ext4 holding busybox and /marker."""
    tree = directory / "tree"
    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as archive:
        archive.extractall(tree, filter="tar")
    (tree / "marker").write_bytes(marker)
    disk = directory / "root.raw"
    make_ext4(disk, tree, label="test-root")
    return disk


def as_qcow2(raw: Path, qcow2: Path, *options: str) -> Path:
    qemu_img("convert", "-f", "raw", "-O", "qcow2", *options, str(raw), str(qcow2))
    return qcow2
