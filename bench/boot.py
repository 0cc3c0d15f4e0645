"""Cold start: `corral run` and SDK create→exec-ready, against a raw QEMU boot to init
of the same kernel and initramfs in the same run. Target: create→ready ≤ 1.25 times raw.

A new sandbox normally restores its shape's boot snapshot (the warm-up sandbox records
it); the same creates with snapshots off show the full boot."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import bench_home, emit, median, raw_vm
from corral import Sandbox
from corral._paths import Paths
from corral.node_agent import accel, snapshots
from corral.node_agent.assets import Assets
from corral.node_agent.vmm import QemuProcess

RUNS = 7
INIT_MARKER = b"corral-agent: init"


async def raw_boot_to_init() -> float:
    """QEMU start → the agent's first console line, with no Corral around it."""
    scratch = Path(tempfile.mkdtemp(prefix="corral-raw", dir="/tmp"))
    try:
        spec, channel = raw_vm(scratch)
        qemu = QemuProcess(spec)
        started = time.perf_counter()
        qemu.start()
        while INIT_MARKER not in _read(spec.console_log):
            if time.perf_counter() - started > 30:
                raise RuntimeError("raw boot did not reach init in 30 s")
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        qemu.kill()
        qemu.reap()
        channel.close()
        return elapsed
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


async def sdk_create_ready(name: str, snapshot: bool = True) -> float:
    os.environ[snapshots.ENABLED_ENV] = "1" if snapshot else "0"
    try:
        started = time.perf_counter()
        sandbox = await Sandbox.builder(name).create()
        elapsed = time.perf_counter() - started
    finally:
        del os.environ[snapshots.ENABLED_ENV]
    expected = "snapshot" if snapshot else "cold"
    if Sandbox.inspect(name).boot_mode != expected:
        raise RuntimeError(f"{name} did not boot {expected}")
    await sandbox.remove()
    return elapsed


def cli_run_true() -> float:
    started = time.perf_counter()
    corral = Path(sys.executable).parent / "corral"
    subprocess.run([str(corral), "run", "default", "--", "/bin/true"], check=True)
    return time.perf_counter() - started


async def main() -> None:
    with bench_home():
        assets = Assets.load(Paths.from_env().assets)
        choice = accel.choose("auto", accel.probe_host(), assets.kernel_pvm)
        warm = await Sandbox.builder("warm-image-cache").create()
        await warm.remove()
        raw, ready, cold, end_to_end = [], [], [], []
        for index in range(RUNS):
            raw.append(await raw_boot_to_init())
            ready.append(await sdk_create_ready(f"boot-{index}"))
            cold.append(await sdk_create_ready(f"cold-{index}", snapshot=False))
            end_to_end.append(cli_run_true())
        emit(
            "cold_start",
            accel=choice.accel,
            runs=RUNS,
            raw_boot_to_init_s=round(median(raw), 4),
            create_to_ready_s=round(median(ready), 4),
            cold_create_to_ready_s=round(median(cold), 4),
            corral_run_true_s=round(median(end_to_end), 4),
            ready_vs_raw=round(median(ready) / median(raw), 3),
            cold_ready_vs_raw=round(median(cold) / median(raw), 3),
            target_ready_vs_raw=1.25,
        )
