"""Host memory per idle sandbox: QEMU + supervisor memory beyond the guest's own RAM
pages, for 128 and 256 MiB guests. Target: overhead ≤ 40 MiB.

Four idle sandboxes of each size run at once (restored from their shape's boot snapshot,
as new sandboxes are). Two figures per sandbox: resident size (RSS), which counts the
QEMU binary, libpython and every shared library in full for each process, and
proportional size (PSS), which shares those pages among the processes mapping them —
what each further sandbox costs the host."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from bench.common import bench_home, emit
from corral import Sandbox

IDLE_SECONDS = 3
SANDBOXES = 4


def smaps_kib(pid: int, field: str, guest_mib: int = 0) -> tuple[int, int]:
    """(total, in guest RAM) of an smaps field: guest RAM is the mapping of exactly the
    guest's memory size."""
    total = guest = size = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith(f"{field}:"):
            value = int(line.split()[1])
            total += value
            if guest_mib and size == guest_mib * 1024:
                guest += value
    return total, guest


def overhead_mib(qemu_pid: int, supervisor_pid: int, memory_mib: int, field: str) -> float:
    qemu, guest = smaps_kib(qemu_pid, field, memory_mib)
    supervisor, _ = smaps_kib(supervisor_pid, field)
    return (qemu - guest + supervisor) / 1024


async def measure(memory_mib: int) -> dict[str, float | str]:
    warm = await Sandbox.builder(f"warm-{memory_mib}").memory(memory_mib).create()
    await warm.remove()  # its shape's boot snapshot stays
    sandboxes = [
        await Sandbox.builder(f"idle-{memory_mib}-{n}").memory(memory_mib).create()
        for n in range(SANDBOXES)
    ]
    await asyncio.sleep(IDLE_SECONDS)
    rss, pss, qemu_rss, supervisor_rss, guest_pages, modes = [], [], [], [], [], set()
    for sandbox in sandboxes:
        record = Sandbox.inspect(sandbox.name)
        modes.add(record.boot_mode)
        rss.append(overhead_mib(record.qemu_pid, record.supervisor_pid, memory_mib, "Rss"))
        pss.append(overhead_mib(record.qemu_pid, record.supervisor_pid, memory_mib, "Pss"))
        qemu_total, guest = smaps_kib(record.qemu_pid, "Rss", memory_mib)
        qemu_rss.append(qemu_total / 1024)
        guest_pages.append(guest / 1024)
        supervisor_rss.append(smaps_kib(record.supervisor_pid, "Rss")[0] / 1024)
    for sandbox in sandboxes:
        await sandbox.remove()
    prefix = f"guest_{memory_mib}mib"
    return {
        f"{prefix}_boot_mode": "/".join(sorted(modes)),
        f"{prefix}_qemu_rss_mib": round(statistics.median(qemu_rss), 1),
        f"{prefix}_guest_pages_mib": round(statistics.median(guest_pages), 1),
        f"{prefix}_supervisor_rss_mib": round(statistics.median(supervisor_rss), 1),
        f"{prefix}_overhead_rss_mib": round(statistics.median(rss), 1),
        f"{prefix}_overhead_pss_mib": round(statistics.median(pss), 1),
    }


async def main() -> None:
    with bench_home():
        figures = {**await measure(128), **await measure(256)}
    emit(
        "idle_sandbox_memory",
        sandboxes_at_once=SANDBOXES,
        **figures,
        target_overhead_mib=40,
    )
