"""Root filesystems with real VMs: directory and tarball images, the shared read-only
base, the per-sandbox writable layer, and the sandbox's main process."""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from corral import FsError, ImageError, Sandbox
from corral._paths import Paths

pytestmark = pytest.mark.vm


def default_rootfs() -> Path:
    manifest = json.loads((Paths.from_env().assets / "current.json").read_text())
    return Path(manifest["default_image"])


@pytest.fixture
def image_dir(tmp_path: Path, corral_home: Path) -> Path:
    root = tmp_path / "rootfs"
    shutil.copytree(default_rootfs(), root, symlinks=True)
    (root / "etc/motd").write_text("from a directory image\n")
    (root / "usr/bin/setuid-tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (root / "usr/bin/setuid-tool").chmod(0o4755)
    return root


async def test_directory_image(image_dir: Path) -> None:
    async with await Sandbox.builder("from-dir").image(str(image_dir)).create() as sb:
        assert await sb.fs.read("/etc/motd") == b"from a directory image\n"
        assert (await sb.fs.stat("/usr/bin/setuid-tool")).mode & 0o7777 == 0o4755


async def test_tarball_image_keeps_modes(image_dir: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "rootfs.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(image_dir, arcname=".")
    async with await Sandbox.builder("from-tar").image(str(tarball)).create() as sb:
        assert await sb.fs.read("/etc/motd") == b"from a directory image\n"
        assert (await sb.fs.stat("/usr/bin/setuid-tool")).mode & 0o7777 == 0o4755
        assert (await sb.exec("/usr/bin/setuid-tool")).stdout == b"tool\n"


async def test_tarball_escaping_the_root_is_rejected(tmp_path: Path, corral_home: Path) -> None:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as archive:
        payload = tmp_path / "payload"
        payload.write_text("x")
        archive.add(payload, arcname="../../escaped")
    with pytest.raises(ImageError, match=r"escaped|outside"):
        await Sandbox.builder("evil").image(str(tarball)).create()
    assert not (tmp_path.parent / "escaped").exists()
    assert Sandbox.list() == []


async def test_sandboxes_share_the_base_and_not_their_writes(corral_home: Path) -> None:
    async with await Sandbox.builder("left").create() as left:
        bases = set((corral_home / "images").glob("*/root.ext4"))
        async with await Sandbox.builder("right").create() as right:
            assert set((corral_home / "images").glob("*/root.ext4")) == bases
            await left.fs.write("/etc/only-left", b"l")
            await left.fs.remove("/bin/vi")
            assert not await right.fs.exists("/etc/only-left")
            assert await right.fs.exists("/bin/vi")
            with pytest.raises(FsError):
                await left.fs.read("/bin/vi")


async def test_main_process_runs_and_its_exit_is_recorded(corral_home: Path) -> None:
    sandbox = (
        Sandbox.builder("with-main")
        .entrypoint(["/bin/sh", "-c"])
        .cmd(['echo "main says $GREETING" > /tmp/main-out; echo logged; exit 7'])
        .env(GREETING="hi")
    )
    async with await sandbox.create() as sb:
        for _ in range(100):
            if Sandbox.inspect("with-main").main_exit.startswith("exited"):
                break
            await asyncio.sleep(0.05)
        assert Sandbox.inspect("with-main").main_exit == "exited 7"
        assert await sb.fs.read("/tmp/main-out") == b"main says hi\n"
        log = corral_home / "sandboxes" / sb.uid / "main.log"
        assert log.read_bytes() == b"logged\n"
