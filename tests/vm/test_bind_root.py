"""A host directory as the sandbox's live root (`bind:/dir`): shared both ways over 9p,
left in place when the sandbox goes; bad paths and a kernel without 9p refused, leaving
nothing behind."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from images.oci_layout import busybox_layer

from corral import BootError, ImageError, Sandbox, SandboxBuilder

pytestmark = pytest.mark.vm


def busybox_tree(directory: Path) -> Path:
    """`directory` holding the busybox root the image tests use."""
    with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as archive:
        archive.extractall(directory, filter="tar")
    return directory


async def test_the_guest_root_is_the_host_directory(corral_home: Path, tmp_path: Path) -> None:
    root = busybox_tree(tmp_path / "root")
    (root / "from-host").write_text("written before boot\n")
    async with await Sandbox.builder("bind-root").image(f"bind:{root}").create() as sb:
        assert (await sb.exec("/bin/cat", ["/from-host"])).stdout == b"written before boot\n"
        assert (await sb.shell("echo written in the guest > /work/from-guest")).ok
        assert (root / "work/from-guest").read_text() == "written in the guest\n"
        (root / "later").write_text("written after boot\n")
        assert (await sb.exec("/bin/cat", ["/later"])).stdout == b"written after boot\n"
    assert (root / "work/from-guest").read_text() == "written in the guest\n"
    assert (root / "bin/busybox").stat().st_size > 0
    assert "bind-root" not in _names()


def _names() -> set[str]:
    return {record.name for record in Sandbox.list()}


async def _refused(builder: SandboxBuilder, corral_home: Path, error: type[Exception]) -> str:
    """The message `builder.create()` fails with, checking it left no record and no
    sandbox directory behind."""
    sandboxes = corral_home / "sandboxes"
    before = set(sandboxes.iterdir()) if sandboxes.exists() else set()
    with pytest.raises(error) as failure:
        await builder.create()
    assert builder.config().name not in _names()
    assert (set(sandboxes.iterdir()) if sandboxes.exists() else set()) == before
    return str(failure.value)


def _not_a_directory(tmp_path: Path) -> str:
    (tmp_path / "file").write_text("")
    return str(tmp_path / "file")


def _with_a_comma(tmp_path: Path) -> str:
    return str(busybox_tree(tmp_path / "a,b"))


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (lambda tmp: "relative/root", "needs an absolute path"),
        (lambda tmp: str(tmp / "missing"), "does not exist"),
        (_not_a_directory, "is not a directory"),
        (_with_a_comma, "cannot contain ','"),
    ],
    ids=["relative", "missing", "file", "comma"],
)
async def test_bad_paths_are_refused_and_leave_nothing(
    path: Callable[[Path], str], error: str, corral_home: Path, tmp_path: Path
) -> None:
    builder = Sandbox.builder("bind-bad").image(f"bind:{path(tmp_path)}")
    assert error in await _refused(builder, corral_home, ImageError)


async def test_the_cloud_kernel_has_no_9p(corral_home: Path, tmp_path: Path) -> None:
    root = busybox_tree(tmp_path / "root")
    builder = Sandbox.builder("bind-cloud").image(f"bind:{root}").kernel("debian-cloud")
    message = await _refused(builder, corral_home, BootError)
    assert "the debian-cloud kernel lacks; use the default kernel" in message
    assert (root / "bin/busybox").exists()
