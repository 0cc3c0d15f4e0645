"""Test helper: a real Debian 12 image — `debootstrap --variant=minbase
--include=python3-minimal bookworm` from Debian's mirror — packed as an OCI layout
(one gzip layer), for the VM test and the benchmarks.

debootstrap takes minutes, so the packed layout is cached per day under
$CORRAL_TEST_CACHE (default ~/.cache/corral-tests); a fresh clone or a new day builds
it from scratch. It is built in a temporary directory and renamed into place, so an
interrupted build is never reused.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import dependencies

from images.oci_layout import Layout

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
CONFIG = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
TAG = "minbase"


def cache_root() -> Path:
    default = Path.home() / ".cache/corral-tests"
    return Path(os.environ.get("CORRAL_TEST_CACHE") or default)


def debian_layout() -> Path:
    """An OCI layout whose tag TAG is the Debian minbase image with python3."""
    if shutil.which("debootstrap") is None:
        dependencies.missing("debootstrap is missing: run scripts/setup")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    layout = root / f"debian-{SUITE}-minbase-python3-{datetime.date.today().isoformat()}"
    with (root / "debian.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not layout.is_dir():
            for old in root.glob(f"debian-{SUITE}-minbase-python3-*"):
                shutil.rmtree(old, ignore_errors=True)
            _build(root, layout)
    return layout


def _build(root: Path, layout: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3-minimal",
                SUITE,
                str(tree),
                MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
        layer = Path(scratch) / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as archive:
            archive.add(tree, arcname=".", filter=_no_devices)
        packed = Layout(Path(scratch) / "layout")
        packed.tag(packed.image([layer.read_bytes()], config=CONFIG), TAG)
        packed.path.rename(layout)


def _no_devices(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Device nodes stay out of the layer, as in Debian's own images (the guest has
    devtmpfs)."""
    return None if member.ischr() or member.isblk() else member
