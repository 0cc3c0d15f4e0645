"""File throughput host→guest and guest→host (256 MiB through `sandbox.fs`), against the
raw virtio-serial throughput of the same VM setup: a second port on which the guest's
`dd` moves bytes in 1 MiB blocks with no protocol at all. Target ≥ 50 % of raw.
Both VMs get 1 GiB. `sandbox.fs` writes large files around the guest's page cache
(direct I/O), so the file is read twice: straight after the write, from the guest's disk,
and once the guest has read it into its page cache, which is the channel's figure. The
sandbox is restored from its shape's boot snapshot, as new sandboxes are. Every figure is
the median of ROUNDS transfers: single transfers on this kind of machine swing by ±40 %."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import bench_home, emit, raw_vm
from corral import Sandbox
from corral._paths import Paths
from corral._protocol import Frame, FrameType, decode_fields, encode_fields
from corral.node_agent import rootfs
from corral.node_agent.assets import Assets
from corral.node_agent.channel import GuestChannel
from corral.node_agent.image_defaults import DEFAULT_PATH
from corral.node_agent.launch import listen_unix
from corral.node_agent.vmm import Disk, QemuProcess, VmSpec, qemu_command

SIZE = 256 << 20
MEMORY_MIB = 1024
TIMEOUT = 600
CHUNK = 1 << 20
ROUNDS = 3
FIND_PORT = (
    "for p in /sys/class/virtio-ports/*; do "
    '[ "$(cat $p/name)" = corral.bench ] && dev=/dev/${p##*/}; done; '
)


class BenchQemu(QemuProcess):
    """The sandbox's VM plus one extra virtio-serial port for raw transfers."""

    def __init__(self, spec: VmSpec, bench_socket: Path) -> None:
        super().__init__(spec)
        self.bench_socket = bench_socket

    def start(self) -> None:
        command = [
            *qemu_command(self.spec),
            "-chardev", f"socket,id=bench,path={self.bench_socket}",
            "-device", "virtserialport,chardev=bench,name=corral.bench",
        ]  # fmt: skip
        self._process = subprocess.Popen(command)


class GuestShell:
    """Commands run on the raw VM's agent, straight over its channel: no Corral between."""

    def __init__(self, channel: GuestChannel) -> None:
        self.channel = channel
        self.frames: list[Frame] = []
        channel.on_frame = self.frames.append

    def run(self, stream: int, script: str) -> None:
        fields = [(1, "/bin/sh"), (1, "-c"), (1, script), (2, f"PATH={DEFAULT_PATH}")]
        request = encode_fields([*fields, (3, "/"), (4, "root")])
        self.channel.send(Frame(FrameType.EXEC, stream, request))

    def wait_for(self, done: Callable[[], bool]) -> None:
        if not self.channel.reactor.run_until(done, TIMEOUT):
            raise TimeoutError("the raw VM's guest did not answer")

    def expect(self, stream: int, line: bytes) -> None:
        """Wait for `line` on the stdout of the guest command on `stream`."""
        output = b""

        def said() -> bool:
            nonlocal output
            while self.frames:
                frame = self.frames.pop(0)
                if frame.stream != stream:
                    continue
                if frame.type is FrameType.STDOUT:
                    output += frame.payload
                elif frame.type in (FrameType.EXIT, FrameType.ERROR):
                    raise RuntimeError(f"guest command ended before saying {line!r}: {output!r}")
            return line + b"\n" in output

        self.wait_for(said)

    def wait_exit(self, stream: int) -> None:
        def exited() -> bool:
            while self.frames:
                frame = self.frames.pop(0)
                if frame.stream == stream and frame.type is FrameType.ERROR:
                    raise RuntimeError(decode_fields(frame.payload).str(3))
                if frame.stream == stream and frame.type is FrameType.EXIT:
                    return True
            return False

        self.wait_for(exited)


def receive(port: socket.socket) -> float:
    """Bytes per second of SIZE bytes arriving from the bench port."""
    started = time.perf_counter()
    received = 0
    while received < SIZE:
        data = port.recv(min(CHUNK, SIZE - received))
        if not data:
            raise RuntimeError("bench port closed early")
        received += len(data)
    return SIZE / (time.perf_counter() - started)


def raw_throughput(home: Path) -> tuple[float, float, float]:
    """Bytes per second over a bare virtio-serial port: host→guest into /dev/null,
    guest→host, and host→guest into a guest file (the copy a file write cannot avoid)."""
    assets = Assets.load(Paths.from_env().assets)
    source = rootfs.resolve("default", assets.default_image)
    base = rootfs.base_disk(source, home / "images")
    scratch = Path(tempfile.mkdtemp(prefix="corral-raw", dir="/tmp"))
    qemu: BenchQemu | None = None
    try:
        upper = scratch / "upper.ext4"
        rootfs.upper_disk(upper, 2048, home / "images")
        spec, channel = raw_vm(
            scratch,
            disks=[Disk(base, True), Disk(upper, False)],
            kernel_args=["corral.root=/dev/vda", "corral.upper=/dev/vdb"],
            memory_mib=MEMORY_MIB,
        )
        listening = listen_unix(scratch / "bench.sock")
        listening.settimeout(TIMEOUT)
        qemu = BenchQemu(spec, scratch / "bench.sock")
        qemu.start()
        port, _ = listening.accept()
        port.settimeout(TIMEOUT)  # a stuck transfer fails the run, never hangs it
        if channel.handshake(timeout=TIMEOUT) is None:
            raise RuntimeError("the raw VM's guest did not greet")
        shell = GuestShell(channel)

        blocks = f"bs={CHUNK} count={SIZE // CHUNK}"
        read = f"{blocks} iflag=fullblock 2>/dev/null; echo in"
        # One guest shell keeps the port open through every run: while the guest has a
        # port closed QEMU stops reading its socket and looks again only when its main
        # loop next wakes, which an idle guest can put off indefinitely (a dd per run,
        # reopening the port, stalled about one run in four). After the open, an INFO
        # request on the agent's channel wakes that loop.
        sinks = f"exec 3<$dev; echo open; for r in $(seq {ROUNDS}); do "
        sinks += f"dd <&3 of=/dev/null {read}; done; dd <&3 of=/tmp/raw {read}"
        shell.run(1, FIND_PORT + sinks)
        shell.expect(1, b"open")
        channel.send(Frame(FrameType.INFO, 9, b""))
        block = os.urandom(CHUNK)

        def send() -> float:
            """Bytes per second of SIZE bytes into the port, until the guest's dd has them."""
            started = time.perf_counter()
            for _ in range(SIZE // CHUNK):
                port.sendall(block)
            shell.expect(1, b"in")
            return SIZE / (time.perf_counter() - started)

        into_null = [send() for _ in range(ROUNDS)]
        into_file = send()
        shell.wait_exit(1)

        sources = f"exec 3>$dev; for r in $(seq {ROUNDS}); do "
        sources += f"dd if=/dev/zero >&3 {blocks} 2>/dev/null; done"
        shell.run(2, FIND_PORT + sources)
        to_host = [receive(port) for _ in range(ROUNDS)]
        port.close()
        listening.close()
        channel.close()
        return statistics.median(into_null), statistics.median(to_host), into_file
    finally:
        if qemu is not None:  # a failed run leaves no VM behind
            qemu.kill()
            qemu.reap()
        shutil.rmtree(scratch, ignore_errors=True)


async def read_rate(sandbox: Sandbox, path: str) -> float:
    started = time.perf_counter()
    received = 0
    async for chunk in sandbox.fs.read_chunks(path):
        received += len(chunk)
    elapsed = time.perf_counter() - started
    assert received == SIZE
    return SIZE / elapsed


async def corral_throughput() -> tuple[float, float, float]:
    warm = await Sandbox.builder("warm").memory(MEMORY_MIB).create()
    await warm.remove()  # its shape's boot snapshot stays: the sandbox below is a usual one
    sandbox = await Sandbox.builder("throughput").memory(MEMORY_MIB).create()
    data = os.urandom(SIZE)
    writes, cached_reads, disk_reads = [], [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await sandbox.fs.write("/tmp/big", data)
        writes.append(SIZE / (time.perf_counter() - started))
        disk_reads.append(await read_rate(sandbox, "/tmp/big"))
        cache = await sandbox.exec("sh", ["-c", "cat /tmp/big > /dev/null"])  # page cache
        assert cache.exit_code == 0
        cached_reads.append(await read_rate(sandbox, "/tmp/big"))
    await sandbox.remove()
    median = statistics.median
    return median(writes), median(cached_reads), median(disk_reads)


async def main() -> None:
    with bench_home() as home:
        raw_in, raw_out, raw_in_file = raw_throughput(home)
        async with asyncio.timeout(TIMEOUT):  # a stuck transfer fails the run, never hangs it
            fs_in, fs_out, fs_out_disk = await corral_throughput()
    mib = 1 << 20
    emit(
        "fs_throughput_256mib",
        rounds=ROUNDS,
        raw_host_to_guest_mib_s=round(raw_in / mib, 1),
        raw_guest_to_host_mib_s=round(raw_out / mib, 1),
        raw_host_to_guest_file_mib_s=round(raw_in_file / mib, 1),
        fs_write_mib_s=round(fs_in / mib, 1),
        fs_read_mib_s=round(fs_out / mib, 1),
        fs_read_from_guest_disk_mib_s=round(fs_out_disk / mib, 1),
        write_vs_raw=round(fs_in / raw_in, 3),
        read_vs_raw=round(fs_out / raw_out, 3),
        read_from_guest_disk_vs_raw=round(fs_out_disk / raw_out, 3),
        write_vs_raw_into_file=round(fs_in / raw_in_file, 3),
        target_vs_raw=0.5,
    )
