"""Disk images as root: raw (`.raw`/`.img`) used in place, QCOW2 converted once to a raw
base; the format comes from the name, never from probing, and images that would make
QEMU read other host files (a backing file, an external data file) are refused, as is
a raw image that is not a bare ext4."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import ImageError
from corral.node_agent import rootfs
from images.disk_images import as_qcow2, busybox_disk, qemu_img


def resolve(path: Path) -> rootfs.ImageSource:
    return rootfs.resolve(str(path), Path("/nonexistent"))


def test_raw_is_used_in_place(tmp_path: Path) -> None:
    raw = busybox_disk(tmp_path, b"raw")
    for name in ("disk.raw", "disk.img"):
        disk = tmp_path / name
        disk.hardlink_to(raw)
        source = resolve(disk)
        assert (source.kind, source.path) == ("raw", disk)
        assert rootfs.base_disk(source, tmp_path / "cache") == disk


def test_qcow2_is_converted_once(tmp_path: Path) -> None:
    raw = busybox_disk(tmp_path, b"qcow2")
    qcow2 = as_qcow2(raw, tmp_path / "disk.qcow2", "-c")
    source = resolve(qcow2)
    assert source.kind == "qcow2"
    base = rootfs.base_disk(source, tmp_path / "cache")
    assert base.read_bytes() == raw.read_bytes()
    assert base.stat().st_mode & 0o777 == 0o444
    assert rootfs.base_disk(resolve(qcow2), tmp_path / "cache") == base


def test_backing_and_data_files_are_refused(tmp_path: Path) -> None:
    raw = busybox_disk(tmp_path, b"base")
    backed = tmp_path / "backed.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(backed))
    with pytest.raises(ImageError, match=r"has a backing file .*only self-contained"):
        resolve(backed)
    external = tmp_path / "external.qcow2"
    data_file = f"data_file={tmp_path / 'data.raw'}"
    qemu_img("create", "-f", "qcow2", "-o", data_file, str(external), "64M")
    with pytest.raises(ImageError, match="has an external data file"):
        resolve(external)


def test_wrong_formats_are_refused(tmp_path: Path) -> None:
    raw = busybox_disk(tmp_path, b"x")
    named_qcow2 = tmp_path / "not.qcow2"
    named_qcow2.hardlink_to(raw)
    with pytest.raises(ImageError, match="not a valid qcow2 disk image"):
        resolve(named_qcow2)
    qcow2_as_img = as_qcow2(raw, tmp_path / "really-qcow2.img")
    with pytest.raises(ImageError, match="does not hold an ext4 file system"):
        resolve(qcow2_as_img)
    comma = tmp_path / "a,b.raw"
    comma.hardlink_to(raw)
    with pytest.raises(ImageError, match="cannot contain ','"):
        resolve(comma)
