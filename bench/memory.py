"""Host memory per idle sandbox: QEMU + supervisor resident memory beyond the guest's
own RAM pages, for 128 and 256 MiB guests. Target: overhead ≤ 40 MiB."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.common import bench_home, emit
from corral import Sandbox

IDLE_SECONDS = 3


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def guest_ram_rss_kib(pid: int, memory_mib: int) -> int:
    """Resident size of the mapping that backs guest RAM (the one of exactly its size)."""
    size, rss, in_ram = 0, 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1])
            in_ram = size == memory_mib * 1024
        elif line.startswith("Rss:") and in_ram:
            rss += int(line.split()[1])
    return rss


async def measure(memory_mib: int) -> dict[str, float]:
    sandbox = await Sandbox.builder(f"idle-{memory_mib}").memory(memory_mib).create()
    await asyncio.sleep(IDLE_SECONDS)
    record = Sandbox.inspect(sandbox.name)
    qemu = rss_kib(record.qemu_pid)
    guest = guest_ram_rss_kib(record.qemu_pid, memory_mib)
    supervisor = rss_kib(record.supervisor_pid)
    await sandbox.remove()
    return {
        f"guest_{memory_mib}mib_qemu_rss_mib": round(qemu / 1024, 1),
        f"guest_{memory_mib}mib_guest_pages_mib": round(guest / 1024, 1),
        f"guest_{memory_mib}mib_supervisor_rss_mib": round(supervisor / 1024, 1),
        f"guest_{memory_mib}mib_overhead_mib": round((qemu - guest + supervisor) / 1024, 1),
    }


async def main() -> None:
    with bench_home():
        figures = {**await measure(128), **await measure(256)}
    emit("idle_sandbox_memory", **figures, target_overhead_mib=40)
