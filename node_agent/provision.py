"""Provisioning the boot assets: guest kernel, agent + initramfs, default image.

Run by `scripts/setup` (idempotent and cached: a re-run with nothing changed takes
seconds). The kernel is built by scripts/build-kernel.sh (cached by config hash), the
agent by node_agent/guest/Makefile; the default image is a busybox root made from
Debian's busybox-static. The result is recorded in `assets/current.json`, the one file
the runtime reads (node_agent/assets.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from corral._paths import Paths
from corral.node_agent.assets import host_tsc_khz

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")
DEFAULT_IMAGE_FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    ),
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/hostname": "corral\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
}
DEFAULT_IMAGE_DIRS = ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc",
                      "sys", "dev", "run", "var/tmp", "home"]  # fmt: skip


def log(message: str) -> None:
    print(f"setup: {message}", file=sys.stderr, flush=True)


def build_kernel() -> tuple[Path, dict[str, object]]:
    result = subprocess.run(
        [str(REPO / "scripts/build-kernel.sh")], stdout=subprocess.PIPE, text=True, check=True
    )
    vmlinux = Path(result.stdout.strip().splitlines()[-1])
    meta = json.loads((vmlinux.parent / "kernel.json").read_text())
    return vmlinux, meta


def build_agent(assets: Path) -> tuple[Path, str]:
    """Build the agent and initramfs, and keep a copy keyed by content."""
    subprocess.run(["make", "-s", "-C", str(REPO / "node_agent/guest")], check=True)
    built = REPO / "node_agent/guest/build/initramfs.cpio"
    digest = hashlib.sha256(built.read_bytes()).hexdigest()[:16]
    target = assets / "initramfs" / f"initramfs-{digest}.cpio"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target.with_suffix(".partial"))
        target.with_suffix(".partial").rename(target)
    version = subprocess.run(
        [str(REPO / "node_agent/guest/build/corral-agent"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return target, version


def build_default_image(assets: Path) -> Path:
    """A busybox root: one static binary plus its applet links and a minimal /etc."""
    if not BUSYBOX.exists():
        raise SystemExit(f"setup: {BUSYBOX} is missing (apt-get install busybox-static)")
    digest = hashlib.sha256(BUSYBOX.read_bytes())
    digest.update(json.dumps([DEFAULT_IMAGE_FILES, DEFAULT_IMAGE_DIRS]).encode())
    target = assets / "default-image" / digest.hexdigest()[:16]
    if (target / "rootfs").exists():
        return target / "rootfs"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        root = Path(scratch) / "rootfs"
        for directory in DEFAULT_IMAGE_DIRS:
            (root / directory).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "tmp", 0o1777)
        os.chmod(root / "root", 0o700)
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        applets = subprocess.run(
            [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            link = root / applet
            if not applet.startswith("/") and ".." not in Path(applet).parts:
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to("/bin/busybox")
        for name, text in DEFAULT_IMAGE_FILES.items():
            (root / name).write_text(text)
        (Path(scratch) / "image.json").write_text(
            json.dumps({"cmd": ["/bin/sh"], "workdir": "/", "user": "root"})
        )
        os.rename(scratch, target)
        os.mkdir(scratch)
    return target / "rootfs"


def write_manifest(assets: Path, manifest: dict[str, object]) -> None:
    partial = assets / "current.json.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(assets / "current.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    paths = Paths.from_env()
    paths.assets.mkdir(parents=True, exist_ok=True)
    log("guest kernel (cached by config hash; the first build takes ~10 minutes)")
    vmlinux, kernel_meta = build_kernel()
    log("guest agent and initramfs")
    initramfs, agent_version = build_agent(paths.assets)
    log("default image (busybox)")
    default_image = build_default_image(paths.assets)
    manifest = {
        "kernel": str(vmlinux),
        "kernel_version": kernel_meta.get("version", ""),
        "kernel_pvm": bool(kernel_meta.get("pvm", False)),
        "initramfs": str(initramfs),
        "agent_version": agent_version,
        "default_image": str(default_image),
        "tsc_khz": host_tsc_khz(),
    }
    write_manifest(paths.assets, manifest)
    log(f"assets ready in {paths.assets}")


if __name__ == "__main__":
    main()
