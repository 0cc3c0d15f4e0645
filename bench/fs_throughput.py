"""File throughput host→guest and guest→host (256 MiB through `sandbox.fs`), against the
raw virtio-serial throughput of the same VM setup: a second port on which the guest's
`dd` moves bytes in 1 MiB blocks with no protocol at all. Target ≥ 50 % of raw.
Both VMs get 1 GiB. `sandbox.fs` writes large files around the guest's page cache
(direct I/O), so the file is read twice: straight after the write, from the guest's disk,
and once the guest has read it into its page cache, which is the channel's figure. The
sandbox is restored from its shape's boot snapshot, as new sandboxes are. Both VMs run
at once and each round moves the bytes over the raw port, then through `sandbox.fs`:
single transfers on this kind of machine swing by ±40 % and its pace drifts over a run,
so every figure is the median of ROUNDS rounds and every ratio the median of the
rounds' own ratios."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
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
from corral.node_agent.image_defaults import DEFAULT_PATH
from corral.node_agent.launch import listen_unix
from corral.node_agent.vmm import Disk, QemuProcess, VmSpec, qemu_command

SIZE = 256 << 20
MEMORY_MIB = 1024
TIMEOUT = 600
CHUNK = 1 << 20
ROUNDS = 7
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


class RawPort:
    """A raw VM of the sandbox's shape with its bench port, and one guest shell, run
    straight over the agent's channel (no Corral between), that moves SIZE bytes through
    the port whenever it reads a word on its stdin. The shell keeps the port open through
    every transfer: while the guest has a port closed QEMU stops reading its socket and
    looks again only when its main loop next wakes, which an idle guest can put off
    indefinitely (a dd per transfer, reopening the port, stalled about one run in four).
    """

    STREAM = 1

    def __init__(self, home: Path, scratch: Path) -> None:
        assets = Assets.load(Paths.from_env().assets)
        base = rootfs.base_disk(rootfs.resolve("default", assets.default_image), home / "images")
        upper = scratch / "upper.ext4"
        rootfs.upper_disk(upper, 2048, home / "images")
        spec, self.channel = raw_vm(
            scratch,
            disks=[Disk(base, True), Disk(upper, False)],
            kernel_args=["corral.root=/dev/vda", "corral.upper=/dev/vdb"],
            memory_mib=MEMORY_MIB,
        )
        self.frames: list[Frame] = []
        self.output = b""
        self.channel.on_frame = self.frames.append
        self.listening = listen_unix(scratch / "bench.sock")
        self.listening.settimeout(TIMEOUT)
        self.qemu = BenchQemu(spec, scratch / "bench.sock")
        self.port: socket.socket | None = None
        self.block = os.urandom(CHUNK)

    def start(self) -> None:
        self.qemu.start()
        self.port, _ = self.listening.accept()
        self.port.settimeout(TIMEOUT)  # a stuck transfer fails the run, never hangs it
        if self.channel.handshake(timeout=TIMEOUT) is None:
            raise RuntimeError("the raw VM's guest did not greet")
        blocks = f"bs={CHUNK} count={SIZE // CHUNK}"
        read = f"{blocks} iflag=fullblock 2>/dev/null; echo done"
        script = (
            f"{FIND_PORT} exec 3<>$dev; echo open; while read op; do case $op in "
            f"null) dd <&3 of=/dev/null {read};; file) dd <&3 of=/tmp/raw {read};; "
            f"out) dd if=/dev/zero >&3 {blocks} 2>/dev/null;; esac; done"
        )
        fields = [(1, "/bin/sh"), (1, "-c"), (1, script), (2, f"PATH={DEFAULT_PATH}")]
        request = encode_fields([*fields, (3, "/"), (4, "root"), (9, 1)])
        self.channel.send(Frame(FrameType.EXEC, self.STREAM, request))
        self.expect(b"open")
        self.channel.send(Frame(FrameType.INFO, 9, b""))  # wakes QEMU's loop (see above)

    def ask(self, op: str) -> None:
        self.channel.send(Frame(FrameType.STDIN, self.STREAM, f"{op}\n".encode()))

    def expect(self, line: bytes) -> None:
        """Run the channel until the shell has said `line`."""

        def said() -> bool:
            while self.frames:
                frame = self.frames.pop(0)
                if frame.stream != self.STREAM:
                    continue
                if frame.type is FrameType.STDOUT:
                    self.output += frame.payload
                elif frame.type is FrameType.ERROR:
                    raise RuntimeError(decode_fields(frame.payload).str(3))
                elif frame.type is FrameType.EXIT:
                    raise RuntimeError(f"the guest shell exited: {self.output!r}")
            return line + b"\n" in self.output

        if not self.channel.reactor.run_until(said, TIMEOUT):
            raise TimeoutError(f"the raw VM's guest did not say {line!r}")
        self.output = self.output.split(line + b"\n", 1)[1]

    def host_to_guest(self, into: str = "null") -> float:
        """Bytes per second of SIZE bytes into the port, until the guest's dd has them."""
        assert self.port is not None, "start() first"
        self.ask(into)
        started = time.perf_counter()
        for _ in range(SIZE // CHUNK):
            self.port.sendall(self.block)
        self.expect(b"done")
        return SIZE / (time.perf_counter() - started)

    def guest_to_host(self) -> float:
        """Bytes per second of SIZE bytes arriving from the port."""
        assert self.port is not None, "start() first"
        self.ask("out")
        started = time.perf_counter()
        received = 0
        while received < SIZE:
            data = self.port.recv(min(CHUNK, SIZE - received))
            if not data:
                raise RuntimeError("bench port closed early")
            received += len(data)
        return SIZE / (time.perf_counter() - started)

    def close(self) -> None:
        """Leaves no VM behind, also after a failed run."""
        if self.qemu.pid:
            self.qemu.kill()
            self.qemu.reap()
        if self.port is not None:
            self.port.close()
        self.listening.close()
        self.channel.close()


async def read_rate(sandbox: Sandbox, path: str) -> float:
    started = time.perf_counter()
    received = 0
    async for chunk in sandbox.fs.read_chunks(path):
        received += len(chunk)
    elapsed = time.perf_counter() - started
    assert received == SIZE
    return SIZE / elapsed


async def measure(home: Path, scratch: Path) -> dict[str, list[float]]:
    """Every round moves SIZE bytes each way over the raw port, then through
    `sandbox.fs`, so that each Corral figure has a raw one taken moments before."""
    warm = await Sandbox.builder("warm").memory(MEMORY_MIB).create()
    await warm.remove()  # its shape's boot snapshot stays: the sandbox below is a usual one
    sandbox = await Sandbox.builder("throughput").memory(MEMORY_MIB).create()
    raw = RawPort(home, scratch)
    data = os.urandom(SIZE)
    figures: dict[str, list[float]] = {}
    try:
        raw.start()
        for _ in range(ROUNDS):
            round_figures = {"raw_in": raw.host_to_guest(), "raw_out": raw.guest_to_host()}
            started = time.perf_counter()
            await sandbox.fs.write("/tmp/big", data)
            round_figures["fs_in"] = SIZE / (time.perf_counter() - started)
            round_figures["fs_out_disk"] = await read_rate(sandbox, "/tmp/big")
            cache = await sandbox.exec("sh", ["-c", "cat /tmp/big > /dev/null"])  # page cache
            assert cache.exit_code == 0
            round_figures["fs_out"] = await read_rate(sandbox, "/tmp/big")
            for name, value in round_figures.items():
                figures.setdefault(name, []).append(value)
        figures["raw_in_file"] = [raw.host_to_guest(into="file")]
    finally:
        raw.close()
        await sandbox.remove()
    return figures


def ratio(figures: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """The median of the rounds' own ratios: the machine's pace drifts between rounds."""
    pairs = zip(figures[numerator], figures[denominator], strict=True)
    return round(statistics.median(a / b for a, b in pairs), 3)


async def main() -> None:
    with bench_home() as home:
        scratch = Path(tempfile.mkdtemp(prefix="corral-raw", dir="/tmp"))
        try:
            async with asyncio.timeout(TIMEOUT):  # a stuck transfer fails the run
                figures = await measure(home, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    mib = 1 << 20
    medians = {name: round(statistics.median(values) / mib, 1) for name, values in figures.items()}
    emit(
        "fs_throughput_256mib",
        rounds=ROUNDS,
        raw_host_to_guest_mib_s=medians["raw_in"],
        raw_guest_to_host_mib_s=medians["raw_out"],
        raw_host_to_guest_file_mib_s=medians["raw_in_file"],
        fs_write_mib_s=medians["fs_in"],
        fs_read_mib_s=medians["fs_out"],
        fs_read_from_guest_disk_mib_s=medians["fs_out_disk"],
        write_vs_raw=ratio(figures, "fs_in", "raw_in"),
        read_vs_raw=ratio(figures, "fs_out", "raw_out"),
        read_from_guest_disk_vs_raw=ratio(figures, "fs_out_disk", "raw_out"),
        write_vs_raw_into_file=round(medians["fs_in"] / medians["raw_in_file"], 3),
        target_vs_raw=0.5,
    )
