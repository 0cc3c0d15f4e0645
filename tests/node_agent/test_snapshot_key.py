"""What a boot snapshot is keyed by: the guest's shape and the files it boots from, not
the paths that belong to one sandbox."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from corral.node_agent.snapshots import FILES, find, stale
from corral.node_agent.vmm import Disk, VmSpec


def spec(tmp_path: Path, sandbox: str = "a", **changes: object) -> VmSpec:
    for name in ("vmlinux", "initramfs", "root.ext4"):
        if not (tmp_path / name).exists():
            (tmp_path / name).write_bytes(name.encode())
    own = tmp_path / sandbox
    base = VmSpec(
        accel="tcg",
        cpus=1,
        memory_mib=256,
        kernel=tmp_path / "vmlinux",
        initramfs=tmp_path / "initramfs",
        channel_socket=own / "channel.sock",
        console_log=own / "console.log",
        disks=[Disk(tmp_path / "root.ext4", True), Disk(own / "upper.ext4", False)],
        kernel_args=["corral.root=/dev/vda", "corral.upper=/dev/vdb"],
        tsc_khz=2000000,
        qmp_socket=own / "qmp.sock",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def key(spec: VmSpec, disk_mib: int) -> str:
    return find(Path("/cache"), spec, disk_mib).directory.name


def test_sandboxes_of_one_shape_share_a_key(tmp_path: Path) -> None:
    assert key(spec(tmp_path, "a"), 2048) == key(spec(tmp_path, "b"), 2048)
    restoring = spec(tmp_path, "b", incoming=tmp_path / "state")
    assert key(restoring, 2048) == key(spec(tmp_path), 2048)


def test_the_shape_and_the_files_booted_from_change_the_key(tmp_path: Path) -> None:
    reference = key(spec(tmp_path), 2048)
    assert key(spec(tmp_path), 4096) != reference
    assert key(spec(tmp_path, cpus=2), 2048) != reference
    assert key(spec(tmp_path, memory_mib=512), 2048) != reference
    assert key(spec(tmp_path, kernel_args=["corral.root=/dev/vda"]), 2048) != reference
    for name in ("vmlinux", "initramfs", "root.ext4"):
        rebuilt = tmp_path / f"{name}.new"
        rebuilt.write_bytes(b"rebuilt " + name.encode())
        os.replace(rebuilt, tmp_path / name)
        assert key(spec(tmp_path), 2048) != reference, name
        reference = key(spec(tmp_path), 2048)


def test_snapshots_of_changed_or_vanished_files_are_stale(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    kept, rebuilt, gone = (find(cache, spec(tmp_path), mib) for mib in (1024, 2048, 4096))
    for snapshot in (kept, rebuilt, gone):
        snapshot.directory.mkdir(parents=True)
        (snapshot.directory / FILES).write_text(json.dumps(snapshot.files))
    (rebuilt.directory / FILES).write_text(
        json.dumps({**rebuilt.files, str(tmp_path / "initramfs"): "0:0:0:0"})
    )
    (gone.directory / FILES).write_text(json.dumps({str(tmp_path / "vanished"): "1:2:3:4"}))
    broken = cache / "snapshots" / "0badc0de"
    broken.mkdir()
    assert stale(cache) == sorted([rebuilt.directory, gone.directory, broken])
