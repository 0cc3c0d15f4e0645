"""Host memory per idle sandbox: QEMU + supervisor memory beyond the guest's own RAM
pages, for 128 and 256 MiB guests. Target: overhead ≤ 40 MiB.

Four idle sandboxes of each size run at once (restored from their shape's boot snapshot,
as new sandboxes are). Two figures per sandbox: resident size (RSS), which counts the
QEMU binary, libpython and every shared library in full for each process, and
proportional size (PSS), which shares those pages among the processes mapping them —
what each further sandbox costs the host. Baseline, in the same run: the same sandboxes
on the distribution's full `qemu-system-x86_64` instead of Corral's minimal build. Under
TCG, part of QEMU's overhead is its translated-code cache (an anonymous executable
mapping), reported on its own: a KVM host has none."""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path

from bench.common import bench_home, emit
from corral import Sandbox

IDLE_SECONDS = 3
SANDBOXES = 4


def usage(pid: int, guest_mib: int = 0) -> dict[str, int]:
    """KiB resident ("Rss") and proportional ("Pss") of a process, of those in guest RAM
    ("guest Rss", "guest Pss": the mapping of exactly its size), and resident in anonymous
    executable mappings ("code Rss": TCG's translated code). One read of smaps."""
    totals = dict.fromkeys(("Rss", "Pss", "guest Rss", "guest Pss", "code Rss"), 0)
    size, anonymous_code = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        field, _, value = line.partition(":")
        if field == "Size":
            size = int(value.split()[0])
        elif field in ("Rss", "Pss"):
            totals[field] += int(value.split()[0])
            if guest_mib and size == guest_mib * 1024:
                totals[f"guest {field}"] += int(value.split()[0])
            if anonymous_code and field == "Rss":
                totals["code Rss"] += int(value.split()[0])
        elif " " in field:  # a mapping's header: range, perms, offset, dev, inode[, path]
            header = line.split()
            anonymous_code = header[1] == "rwxp" and len(header) == 5
    return totals


async def measure(memory_mib: int) -> dict[str, float | str]:
    warm = await Sandbox.builder(f"warm-{memory_mib}").memory(memory_mib).create()
    await warm.remove()  # its shape's boot snapshot stays
    sandboxes = [
        await Sandbox.builder(f"idle-{memory_mib}-{n}").memory(memory_mib).create()
        for n in range(SANDBOXES)
    ]
    await asyncio.sleep(IDLE_SECONDS)
    rss, pss, qemu_rss, supervisor_rss, guest_pages, code, modes = [], [], [], [], [], [], set()
    for sandbox in sandboxes:
        record = Sandbox.inspect(sandbox.name)
        modes.add(record.boot_mode)
        qemu, supervisor = usage(record.qemu_pid, memory_mib), usage(record.supervisor_pid)
        rss.append((qemu["Rss"] - qemu["guest Rss"] + supervisor["Rss"]) / 1024)
        pss.append((qemu["Pss"] - qemu["guest Pss"] + supervisor["Pss"]) / 1024)
        qemu_rss.append(qemu["Rss"] / 1024)
        guest_pages.append(qemu["guest Rss"] / 1024)
        code.append(qemu["code Rss"] / 1024)
        supervisor_rss.append(supervisor["Rss"] / 1024)
    for sandbox in sandboxes:
        await sandbox.remove()
    prefix = f"guest_{memory_mib}mib"
    return {
        f"{prefix}_boot_mode": "/".join(sorted(modes)),
        f"{prefix}_qemu_rss_mib": round(statistics.median(qemu_rss), 1),
        f"{prefix}_guest_pages_mib": round(statistics.median(guest_pages), 1),
        f"{prefix}_qemu_translated_code_rss_mib": round(statistics.median(code), 1),
        f"{prefix}_supervisor_rss_mib": round(statistics.median(supervisor_rss), 1),
        f"{prefix}_overhead_rss_mib": round(statistics.median(rss), 1),
        f"{prefix}_overhead_pss_mib": round(statistics.median(pss), 1),
    }


def use_distro_qemu(home: Path) -> None:
    """Point `home` at the same assets minus Corral's QEMU build: the runtime then runs
    the `qemu-system-x86_64` on PATH."""
    assets = home / "assets"
    manifest = json.loads((assets / "current.json").read_text())
    manifest.pop("qemu", None)
    assets.unlink()
    assets.mkdir()
    (assets / "current.json").write_text(json.dumps(manifest))


async def main() -> None:
    with bench_home():
        figures = {**await measure(128), **await measure(256)}
    with bench_home() as home:
        use_distro_qemu(home)
        baseline = {**await measure(128), **await measure(256)}
    ratios = {
        f"guest_{size}mib_overhead_{kind}_vs_distro_qemu": round(
            float(figures[f"guest_{size}mib_overhead_{kind}_mib"])
            / float(baseline[f"guest_{size}mib_overhead_{kind}_mib"]),
            3,
        )
        for size in (128, 256)
        for kind in ("rss", "pss")
    }
    emit(
        "idle_sandbox_memory",
        sandboxes_at_once=SANDBOXES,
        **figures,
        **{f"distro_qemu_{key}": value for key, value in baseline.items()},
        **ratios,
        target_overhead_mib=40,
    )
