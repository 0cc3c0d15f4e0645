"""The fallback kernel: Debian's cloud kernel (virtio and overlayfs as modules, loaded by
the agent from its initramfs) boots a working sandbox, from the SDK and the CLI."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from corral import BootError, Sandbox
from corral.node_agent.assets import Assets
from corral.node_agent.launch import listen_unix
from corral.node_agent.vmm import QemuProcess, VmSpec

pytestmark = pytest.mark.vm

CORRAL = Path(sys.executable).parent / "corral"
GEN_CPIO = Path(__file__).resolve().parents[2] / "node_agent/guest/build/gen_cpio"


async def test_cloud_kernel_runs_commands_and_moves_files(corral_home: Path) -> None:
    async with await Sandbox.builder("cloud").kernel("debian-cloud").create() as sandbox:
        out = await sandbox.exec("uname", ["-r"])
        assert out.exit_code == 0 and out.stdout.strip().endswith(b"-cloud-amd64")
        modules = (await sandbox.exec("cat", ["/proc/modules"])).stdout
        assert b"virtio_mmio " in modules and b"overlay " in modules
        data = bytes(range(256)) * 4096
        await sandbox.fs.write("/root/blob.bin", data)
        assert await sandbox.fs.read("/root/blob.bin") == data
        size = await sandbox.exec("wc", ["-c", "/root/blob.bin"])
        assert size.stdout.split()[0] == str(len(data)).encode()


def test_cli_run_with_the_cloud_kernel(corral_home: Path) -> None:
    result = subprocess.run(
        [str(CORRAL), "run", "--kernel", "debian-cloud", "--", "uname", "-r"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("-cloud-amd64")


async def test_an_unknown_kernel_name_fails_the_boot_listing_the_variants(
    corral_home: Path,
) -> None:
    with pytest.raises(BootError, match=r"unknown kernel 'ubuntu'.*corral.*debian-cloud"):
        await Sandbox.builder("nokernel").kernel("ubuntu").create()


def test_a_module_that_does_not_load_is_named_on_the_console_then_the_vm_powers_off(
    corral_home: Path,
) -> None:
    assets = Assets.load(corral_home / "assets", "debian-cloud")
    scratch = Path(tempfile.mkdtemp(prefix="corral-k", dir="/tmp"))  # short socket path
    try:
        # An archive appended to the initramfs replaces its load list with one that
        # loads virtio_blk before the virtio core it needs.
        (scratch / "load").write_text("virtio_blk.ko\n")
        (scratch / "list").write_text(f"file /lib/modules/load 0644 {scratch / 'load'}\n")
        subprocess.run([str(GEN_CPIO), str(scratch / "list"), str(scratch / "x.cpio")], check=True)
        initramfs = scratch / "broken.cpio"
        initramfs.write_bytes(assets.initramfs.read_bytes() + (scratch / "x.cpio").read_bytes())
        channel = listen_unix(scratch / "channel.sock")
        spec = VmSpec(
            accel="tcg",
            cpus=1,
            memory_mib=256,
            kernel=assets.kernel,
            initramfs=initramfs,
            channel_socket=scratch / "channel.sock",
            console_log=scratch / "console.log",
            tsc_khz=assets.tsc_khz,
            acpi=assets.kernel_acpi,
        )
        qemu = QemuProcess(spec)
        qemu.start()
        pidfd = qemu.pidfd()
        exited, _, _ = select.select([pidfd], [], [], 60)
        os.close(pidfd)
        if not exited:
            qemu.kill()
        assert qemu.reap() == 0
        console = spec.console_log.read_text()
        assert "corral-agent: cannot load module virtio_blk.ko: unknown symbol" in console
        channel.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
