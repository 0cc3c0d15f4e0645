"""Provisioning the boot assets: QEMU, guest kernels, agent + initramfs, default image.

Run by `scripts/setup` (idempotent and cached: a re-run with nothing changed takes
seconds). QEMU is built by scripts/build-qemu.sh (cached by source version and
configuration), the default kernel by scripts/build-kernel.sh (cached by config hash),
the agent by node_agent/guest/Makefile; the default image is a busybox root made from
Debian's busybox-static. The fallback kernel variant is Debian's cloud kernel (installed
with apt-get when missing) with an initramfs that adds the modules it needs to the
agent's (cached by kernel package version and agent build). The result is recorded in
`assets/current.json`, the one file the runtime reads (node_agent/assets.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from corral._paths import Paths
from corral.node_agent.assets import CLOUD_KERNEL, host_tsc_khz

REPO = Path(__file__).resolve().parent.parent
GEN_CPIO = REPO / "node_agent/guest/build/gen_cpio"
CLOUD_PACKAGE = "linux-image-cloud-amd64"
# What a sandbox needs from the cloud kernel, by module name; those it has built in
# (ext4 and crc32c in Debian 12's) are skipped, the others load with their dependencies:
# the virtio-mmio transport and the devices launch attaches, the root disks' ext4 and
# the crc32c its checksums use, the overlay root, and what the project's own kernel
# offers a guest besides (network device, FUSE, loop devices).
CLOUD_MODULES = ["virtio_mmio", "virtio_blk", "virtio_console", "virtio_rng", "ext4",
                 "crc32c_generic", "overlay", "virtio_net", "fuse", "loop"]  # fmt: skip
# The cloud kernel tests its crypto algorithms at boot: ~0.5 s of a 2 s boot under TCG.
CLOUD_KERNEL_ARGS = ["cryptomgr.notests"]
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"  # how Debian 12 compresses its kernels (KERNEL_LZ4)
# In the initramfs: the module files, and the list the agent loads in order (modules.c).
INITRAMFS_MODULES = "/lib/modules"
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


def build_qemu() -> Path:
    result = subprocess.run(
        [str(REPO / "scripts/build-qemu.sh")], stdout=subprocess.PIPE, text=True, check=True
    )
    return Path(result.stdout.strip().splitlines()[-1])


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


def module_name(path: str) -> str:
    """The kernel's name for a module file: `kernel/drivers/char/hw_random/virtio-rng.ko`
    is `virtio_rng` (the kernel treats '-' and '_' alike in module names)."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0].replace("-", "_")


def module_load_order(modules_dep: str, modules_builtin: str, wanted: Iterable[str]) -> list[str]:
    """The module files (as modules.dep names them) to load for `wanted`, each after its
    dependencies and once; built-in modules are skipped.

    modules.dep gives each module its whole dependency closure but not in an order to
    load it, so the order comes from visiting each dependency's own line first.
    """
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[path] = rest.split()
            by_name[module_name(path)] = path
    builtin = {module_name(path) for path in modules_builtin.split()}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        if path not in deps:
            raise ValueError(f"modules.dep names {path} as a dependency but has no line for it")
        for dep in deps[path]:
            visit(dep)
        order.append(path)

    for name in map(module_name, wanted):
        if name in builtin:
            continue
        if name not in by_name:
            raise ValueError(f"kernel module {name} is neither built in nor in modules.dep")
        visit(by_name[name])
    return order


def ensure_package(package: str) -> None:
    """Install a Debian package unless it is installed already."""
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    ).stdout
    if status == "install ok installed":
        return
    log(f"installing {package} with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = [*sudo, "apt-get", "-q"]
    subprocess.run([*apt, "update"], stdout=sys.stderr, check=True)
    install = [*apt, "install", "-y", "--no-install-recommends", package]
    subprocess.run(install, stdout=sys.stderr, env=env, check=True)


def cloud_kernel_release() -> tuple[str, str]:
    """(kernel release, package version) of Debian's cloud kernel, installed if missing.

    The metapackage depends on exactly one linux-image-<release> package: that is the
    kernel to use, even with older releases still installed beside it.
    """
    ensure_package(CLOUD_PACKAGE)
    version, depends = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}\t${Depends}", CLOUD_PACKAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\t")
    match = re.search(r"linux-image-(\S+-cloud-amd64)", depends)
    if match is None:
        raise SystemExit(f"setup: cannot tell the kernel release from {CLOUD_PACKAGE}: {depends}")
    return match.group(1), version


def bzimage_payload(bzimage: bytes) -> tuple[bytes, int]:
    """The compressed kernel inside a bzImage and its decompressed size. Boot protocol
    2.08+ records the payload's offset (from the protected-mode code, after the setup
    sectors) and length in the header; the kernel build appends the size to the stream."""
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = bzimage[start : start + length]
    return payload[:-4], struct.unpack("<I", payload[-4:])[0]


def extract_vmlinux(bzimage: Path, target: Path) -> None:
    """The ELF vmlinux inside a bzImage. Booted through its PVH entry it skips qboot's
    real-mode loader and the decompressor: to init in ~2.0 s instead of ~3.2 s under TCG."""
    stream, size = bzimage_payload(bzimage.read_bytes())
    if not stream.startswith(LZ4_LEGACY_MAGIC):
        raise SystemExit(f"setup: {bzimage} is not LZ4-compressed (starts {stream[:4].hex()})")
    ensure_package("lz4")
    with target.open("wb") as out:
        subprocess.run(["lz4", "-dc"], input=stream, stdout=out, check=True)
    with target.open("rb") as elf:
        if elf.read(4) != b"\x7fELF" or target.stat().st_size != size:
            raise SystemExit(f"setup: the kernel extracted from {bzimage} is not its vmlinux")


def modules_cpio(moddir: Path, order: list[str]) -> bytes:
    """A cpio archive of the modules (files of `moddir`, in load order) and of the list
    the agent loads them from (node_agent/guest/modules.c)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "load").write_text("".join(f"{module_name(path)}.ko\n" for path in order))
        listing = ["dir /lib 0755", f"dir {INITRAMFS_MODULES} 0755"]
        listing += [
            f"file {INITRAMFS_MODULES}/{module_name(path)}.ko 0644 {moddir / path}"
            for path in order
        ]
        listing.append(f"file {INITRAMFS_MODULES}/load 0644 {work / 'load'}")
        (work / "modules.list").write_text("\n".join(listing) + "\n")
        subprocess.run([str(GEN_CPIO), str(work / "modules.list"), str(work / "cpio")], check=True)
        return (work / "cpio").read_bytes()


def build_cloud_kernel(assets: Path, initramfs: Path) -> dict[str, object]:
    """Debian's cloud kernel (the vmlinux out of its bzImage) and its initramfs: the
    agent's, plus the modules it needs.

    The modules go in a second cpio archive appended to the agent's (the kernel unpacks
    concatenated archives in turn), so the agent part is byte for byte the default one.
    """
    release, version = cloud_kernel_release()
    moddir = Path("/lib/modules") / release
    order = module_load_order(
        (moddir / "modules.dep").read_text(),
        (moddir / "modules.builtin").read_text(),
        CLOUD_MODULES,
    )
    compressed = [path for path in order if not path.endswith(".ko")]
    if compressed:
        raise SystemExit(f"setup: compressed kernel modules are not supported: {compressed}")
    config = Path(f"/boot/config-{release}").read_text().splitlines()
    if "CONFIG_PVH=y" not in config:
        raise SystemExit(f"setup: kernel {release} has no PVH entry to boot its vmlinux with")
    key = hashlib.sha256(json.dumps([release, version, initramfs.name, order]).encode())
    target = assets / f"kernel-{CLOUD_KERNEL}" / key.hexdigest()[:16]
    if not target.exists():
        archive = initramfs.read_bytes() + modules_cpio(moddir, order)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            extract_vmlinux(Path(f"/boot/vmlinuz-{release}"), Path(scratch) / "vmlinux")
            (Path(scratch) / "initramfs.cpio").write_bytes(archive)
            os.rename(scratch, target)
            os.mkdir(scratch)
    return {
        "kernel": str(target / "vmlinux"),
        "initramfs": str(target / "initramfs.cpio"),
        "version": f"{release} ({version})",
        "pvm": False,
        "acpi": "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y" not in config,
        "args": CLOUD_KERNEL_ARGS,
    }


def write_manifest(assets: Path, manifest: dict[str, object]) -> None:
    partial = assets / "current.json.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.rename(assets / "current.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    paths = Paths.from_env()
    paths.assets.mkdir(parents=True, exist_ok=True)
    log("QEMU (cached by source version and configuration; the first build takes ~3 minutes)")
    qemu = build_qemu()
    log("guest kernel (cached by config hash; the first build takes ~10 minutes)")
    vmlinux, kernel_meta = build_kernel()
    log("guest agent and initramfs")
    initramfs, agent_version = build_agent(paths.assets)
    log(f"fallback kernel {CLOUD_KERNEL}: Debian's {CLOUD_PACKAGE} and its modules")
    cloud = build_cloud_kernel(paths.assets, initramfs)
    log("default image (busybox)")
    default_image = build_default_image(paths.assets)
    manifest = {
        "qemu": str(qemu),
        "kernel": str(vmlinux),
        "kernel_version": kernel_meta.get("version", ""),
        "kernel_pvm": bool(kernel_meta.get("pvm", False)),
        "initramfs": str(initramfs),
        "kernels": {CLOUD_KERNEL: cloud},
        "agent_version": agent_version,
        "default_image": str(default_image),
        "tsc_khz": host_tsc_khz(),
    }
    write_manifest(paths.assets, manifest)
    log(f"assets ready in {paths.assets}")


if __name__ == "__main__":
    main()
