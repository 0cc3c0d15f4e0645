"""File throughput host→guest and guest→host (256 MiB through `sandbox.fs`), against the
raw virtio-serial throughput of the same VM setup: a second port on which the guest's
`dd` moves bytes in 1 MiB blocks with no protocol at all. Target ≥ 50 % of raw.
Both VMs get 1 GiB, so the 256 MiB file stays in the guest's page cache and the figures
are the channel's, not the guest disk's writeback."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import bench_home, emit, raw_vm
from corral import Sandbox
from corral._paths import Paths
from corral._protocol import Frame, FrameType, decode_fields, encode_fields
from corral.node_agent import rootfs
from corral.node_agent.assets import Assets
from corral.node_agent.channel import GuestChannel
from corral.node_agent.vmm import Disk, QemuProcess, VmSpec, qemu_command

SIZE = 256 << 20
MEMORY_MIB = 1024
TIMEOUT = 300
CHUNK = 1 << 20
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


async def guest_exec(channel: GuestChannel, stream: int, script: str) -> None:
    fields = [(1, "/bin/sh"), (1, "-c"), (1, script), (2, f"PATH={rootfs.DEFAULT_PATH}")]
    channel.send(Frame(FrameType.EXEC, stream, encode_fields([*fields, (3, "/"), (4, "root")])))


async def wait_exit(channel: GuestChannel, stream: int) -> None:
    async for frame in channel.frames():
        if frame.stream == stream and frame.type in (FrameType.EXIT, FrameType.ERROR):
            if frame.type is FrameType.ERROR:
                raise RuntimeError(decode_fields(frame.payload).str(3))
            return


async def raw_throughput(home: Path) -> tuple[float, float, float]:
    """Bytes per second over a bare virtio-serial port: host→guest into /dev/null,
    guest→host, and host→guest into a guest file (the copy a file write cannot avoid)."""
    assets = Assets.load(Paths.from_env().assets)
    source = rootfs.resolve("default", assets.default_image)
    base = rootfs.base_disk(source, home / "images")
    scratch = Path(tempfile.mkdtemp(prefix="corral-raw", dir="/tmp"))
    try:
        upper = scratch / "upper.ext4"
        rootfs.upper_disk(upper, 2048, home / "images")
        spec, channel = await raw_vm(
            scratch,
            disks=[Disk(base, True), Disk(upper, False)],
            kernel_args=["corral.root=/dev/vda", "corral.upper=/dev/vdb"],
            memory_mib=MEMORY_MIB,
        )
        bench_connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        bench_connected = asyncio.get_running_loop().create_future()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            bench_connected.set_result((reader, writer))

        bench_server = await asyncio.start_unix_server(accept, path=str(scratch / "bench.sock"))
        qemu = BenchQemu(spec, scratch / "bench.sock")
        qemu.start()
        reader, writer = await bench_connected
        await channel.handshake()

        blocks = f"bs={CHUNK} count={SIZE // CHUNK}"
        block = os.urandom(CHUNK)
        into: dict[str, float] = {}
        for stream, target in ((1, "/dev/null"), (3, "/tmp/raw")):
            sink = f"dd if=$dev of={target} {blocks} iflag=fullblock"
            await guest_exec(channel, stream, FIND_PORT + sink)
            started = time.perf_counter()
            for _ in range(SIZE // CHUNK):
                writer.write(block)
                await writer.drain()
            await wait_exit(channel, stream)
            into[target] = SIZE / (time.perf_counter() - started)

        await guest_exec(channel, 2, FIND_PORT + f"dd if=/dev/zero of=$dev {blocks}")
        started = time.perf_counter()
        received = 0
        while received < SIZE:
            data = await reader.read(CHUNK)
            if not data:
                raise RuntimeError("bench port closed early")
            received += len(data)
        to_host = SIZE / (time.perf_counter() - started)
        qemu.kill()
        qemu.reap()
        writer.close()
        bench_server.close()
        await channel.close()
        return into["/dev/null"], to_host, into["/tmp/raw"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def corral_throughput() -> tuple[float, float]:
    sandbox = await Sandbox.builder("throughput").memory(MEMORY_MIB).create()
    data = os.urandom(SIZE)
    started = time.perf_counter()
    await sandbox.fs.write("/tmp/big", data)
    to_guest = SIZE / (time.perf_counter() - started)
    started = time.perf_counter()
    received = 0
    async for chunk in sandbox.fs.read_chunks("/tmp/big"):
        received += len(chunk)
    to_host = SIZE / (time.perf_counter() - started)
    assert received == SIZE
    await sandbox.remove()
    return to_guest, to_host


async def main() -> None:
    with bench_home() as home:
        async with asyncio.timeout(TIMEOUT):  # a stuck transfer fails the run, never hangs it
            raw_in, raw_out, raw_in_file = await raw_throughput(home)
            fs_in, fs_out = await corral_throughput()
    mib = 1 << 20
    emit(
        "fs_throughput_256mib",
        raw_host_to_guest_mib_s=round(raw_in / mib, 1),
        raw_guest_to_host_mib_s=round(raw_out / mib, 1),
        raw_host_to_guest_file_mib_s=round(raw_in_file / mib, 1),
        fs_write_mib_s=round(fs_in / mib, 1),
        fs_read_mib_s=round(fs_out / mib, 1),
        write_vs_raw=round(fs_in / raw_in, 3),
        read_vs_raw=round(fs_out / raw_out, 3),
        write_vs_raw_into_file=round(fs_in / raw_in_file, 3),
        target_vs_raw=0.5,
    )
