"""Sandbox lifecycle with real VMs: detached survival, crashes, stale records, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import (
    BootError,
    ImageError,
    InvalidConfig,
    Sandbox,
    SandboxAlreadyExists,
    SandboxNotFound,
    SandboxNotRunning,
    remove,
)
from corral._protocol import PROTOCOL_VERSION, Frame, FrameType, encode_fields
from corral.node_agent.assets import Assets

pytestmark = pytest.mark.vm


def alive(pid: int) -> bool:
    """A zombie (exited, not yet reaped by whoever inherited it) is not alive."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_issue_example_and_cleanup_on_exit(corral_home: Path) -> None:
    data = os.urandom(100_000)
    async with await Sandbox.builder("demo").image("default").cpus(1).memory(256).create() as sb:
        out = await sb.exec("sh", ["-c", "echo hi; echo oops >&2; exit 3"])
        assert (out.stdout, out.stderr, out.exit_code) == (b"hi\n", b"oops\n", 3)
        await sb.fs.write("/tmp/x.bin", data)
        assert await sb.fs.read("/tmp/x.bin") == data
        uid = sb.uid
    with pytest.raises(SandboxNotFound):
        Sandbox.inspect("demo")
    assert not (corral_home / "sandboxes" / uid).exists()


def test_setup_built_a_minimal_qemu(corral_home: Path) -> None:
    qemu = Assets.load(corral_home / "assets").qemu
    assert qemu is not None, "setup records the QEMU it built in the assets manifest"
    devices = subprocess.run(
        [str(qemu), "-device", "help"], capture_output=True, text=True, check=True
    ).stdout
    assert "virtio-blk-device" in devices and "virtio-9p-device" in devices
    assert "virtio-blk-pci" not in devices and "e1000" not in devices, "no PCI devices built"


async def test_a_sandbox_runs_the_qemu_of_the_assets(corral_home: Path) -> None:
    qemu = Assets.load(corral_home / "assets").qemu
    assert qemu is not None
    async with await Sandbox.builder("which-qemu").create():
        pid = Sandbox.inspect("which-qemu").qemu_pid
        assert Path(f"/proc/{pid}/exe").resolve() == qemu.resolve()


async def test_the_supervisor_stays_lean(corral_home: Path) -> None:
    """Preparing (pulls, image hashing) happens in a child; what stays loads no TLS, no
    asyncio and no archive modules (rootfs's tarfile, shutil's bz2 and lzma), each seen
    by the native extension it maps."""
    async with await Sandbox.builder("lean").create() as sandbox:
        record = Sandbox.inspect("lean")
        maps = Path(f"/proc/{record.supervisor_pid}/maps").read_text()
        for library in ("libssl", "libcrypto", "/_asyncio.", "/_bz2.", "/_lzma."):
            assert library not in maps
        stat = Path(f"/proc/{record.qemu_pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[1]) == record.supervisor_pid
        assert (await sandbox.exec("true")).exit_code == 0


async def test_detached_sandbox_outlives_its_creator(corral_home: Path) -> None:
    created = run_python(
        """
        import asyncio
        from corral import Sandbox
        async def main():
            sb = await Sandbox.builder("survivor").create_detached()
            await sb.fs.write("/root/mark", b"made by a process that is gone")
        asyncio.run(main())
        """
    )
    assert created.returncode == 0, created.stderr
    sb = await Sandbox.get("survivor")
    assert await sb.fs.read("/root/mark") == b"made by a process that is gone"
    record = await sb.stop_and_wait()
    assert record.status == "stopped"
    await sb.close()
    with pytest.raises(SandboxNotRunning):
        await Sandbox.get("survivor")
    remove("survivor")


async def test_attached_sandbox_goes_away_with_its_owner(corral_home: Path) -> None:
    created = run_python(
        """
        import asyncio
        from corral import Sandbox
        async def main():
            await Sandbox.builder("owned").create()
        asyncio.run(main())
        """
    )
    assert created.returncode == 0, created.stderr
    for _ in range(200):
        if not any(record.name == "owned" for record in Sandbox.list()):
            break
        await asyncio.sleep(0.1)
    assert not any(record.name == "owned" for record in Sandbox.list())


async def test_qemu_killed_is_recorded_as_crashed(corral_home: Path) -> None:
    sb = await Sandbox.builder("victim").create_detached()
    os.kill(sb.record.qemu_pid or Sandbox.inspect("victim").qemu_pid, signal.SIGKILL)
    record = await sb.wait()
    assert record.status == "crashed"
    assert "signal 9" in record.reason
    with pytest.raises(SandboxNotRunning, match="crashed"):
        await sb.exec("true")
    await sb.close()
    remove("victim")


async def test_dead_supervisor_is_reported_stale_and_removable(corral_home: Path) -> None:
    sb = await Sandbox.builder("orphan").create_detached()
    record = Sandbox.inspect("orphan")
    os.kill(record.supervisor_pid, signal.SIGKILL)
    await sb.close()
    for _ in range(50):
        if Sandbox.inspect("orphan").effective_status[0] == "stale":
            break
        await asyncio.sleep(0.1)
    assert Sandbox.inspect("orphan").effective_status[0] == "stale"
    assert not alive(record.qemu_pid), "QEMU must not outlive its supervisor"
    remove("orphan", force=True)
    assert not (corral_home / "sandboxes" / record.uid).exists()


async def test_bad_configs_leave_nothing_behind(corral_home: Path) -> None:
    with pytest.raises(InvalidConfig, match="memory_mib"):
        await Sandbox.builder("bad").memory(0).create()
    with pytest.raises(ImageError, match="not found"):
        await Sandbox.builder("bad").image("/no/such/image").create()
    assert Sandbox.list() == []
    assert not any((corral_home / "sandboxes").glob("*"))


async def test_duplicate_name_is_refused_and_the_first_keeps_running(corral_home: Path) -> None:
    async with await Sandbox.builder("twin").create() as first:
        with pytest.raises(SandboxAlreadyExists):
            await Sandbox.builder("twin").create()
        assert (await first.exec("true")).exit_code == 0


async def test_garbage_from_a_client_harms_no_sandbox(corral_home: Path) -> None:
    async with (
        await Sandbox.builder("target").create() as target,
        await Sandbox.builder("bystander").create() as bystander,
    ):
        socket_path = corral_home / "sandboxes" / target.uid / "api.sock"
        for garbage in (os.urandom(4096), b"\xff" * 12, b"\x00\x00\x00\x05\x00\x00\x00\x01\x7e"):
            with socket.socket(socket.AF_UNIX) as raw:
                raw.connect(str(socket_path))
                raw.sendall(garbage)
                raw.shutdown(socket.SHUT_WR)
                raw.settimeout(5)
                while raw.recv(65536):
                    pass
        assert (await target.exec("echo", ["alive"])).stdout == b"alive\n"
        assert (await bystander.exec("echo", ["alive"])).stdout == b"alive\n"


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


async def test_a_client_that_stops_reading_is_cut_off_not_buffered(corral_home: Path) -> None:
    async with await Sandbox.builder("backlog").create() as sb:
        socket_path = corral_home / "sandboxes" / sb.uid / "api.sock"
        _, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(Frame(FrameType.HELLO, 0, encode_fields([(1, PROTOCOL_VERSION)])).encode())
        command = [(1, "/bin/sh"), (1, "-c"), (1, "cat /dev/zero"), (3, "/"), (4, "root")]
        for stream in range(1, 41):  # 40 streams x 2 MiB windows > the 64 MiB cap
            writer.write(Frame(FrameType.EXEC, stream, encode_fields(command)).encode())
        await writer.drain()
        supervisor = Sandbox.inspect("backlog").supervisor_pid
        count = "ps -o args | grep -c '^cat /dev/zero' || true"
        seen_running = False
        for _ in range(600):
            running = int((await sb.shell(count)).stdout)
            seen_running = seen_running or running > 0
            assert rss_kib(supervisor) < 160 * 1024
            if seen_running and running == 0:
                break
            await asyncio.sleep(0.1)
        assert seen_running and running == 0, "the silent client's commands should be killed"
        assert (await sb.exec("echo", ["alive"])).stdout == b"alive\n"
        writer.close()


@pytest.fixture
def broken_home(corral_home: Path, tmp_path: Path) -> Iterator[Path]:
    """A CORRAL_HOME whose initramfs has an /init the kernel cannot run."""
    home = Path(tempfile.mkdtemp(prefix="corral-b", dir="/tmp"))  # short socket paths
    (tmp_path / "init").write_text("not a program\n")
    (tmp_path / "list").write_text(
        f"dir /dev 0755\nnod /dev/console 0600 c 5 1\nfile /init 0755 {tmp_path / 'init'}\n"
    )
    gen_cpio = Path(__file__).resolve().parents[2] / "node_agent/guest/build/gen_cpio"
    subprocess.run([gen_cpio, tmp_path / "list", tmp_path / "initramfs.cpio"], check=True)
    (home / "assets").mkdir()
    manifest = json.loads((corral_home / "assets/current.json").read_text())
    manifest["initramfs"] = str(tmp_path / "initramfs.cpio")
    (home / "assets/current.json").write_text(json.dumps(manifest))
    yield home
    shutil.rmtree(home, ignore_errors=True)


async def test_a_guest_that_dies_during_boot_is_a_boot_error_with_the_console(
    broken_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(broken_home))
    with pytest.raises(BootError) as error:
        await Sandbox.builder("dies").create()
    assert error.value.message == "the guest did not come up: QEMU exited with status 0"
    assert "Failed to execute /init" in error.value.console
    assert str(error.value).count("console tail") == 1
    assert Sandbox.list() == []
