"""What every benchmark shares: a private CORRAL_HOME, timing, percentiles, output."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral._paths import Paths
from corral.node_agent import accel
from corral.node_agent.assets import Assets
from corral.node_agent.channel import GuestChannel
from corral.node_agent.launch import listen_unix
from corral.node_agent.reactor import Reactor
from corral.node_agent.vmm import Disk, VmSpec
from corral.testing.home import isolated_home


@contextmanager
def bench_home() -> Iterator[Path]:
    """A fresh CORRAL_HOME whose assets are the ones `make setup` built."""
    try:
        with isolated_home() as home:
            yield home
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def raw_vm(
    scratch: Path,
    disks: list[Disk] | None = None,
    kernel_args: list[str] | None = None,
    memory_mib: int = 256,
) -> tuple[VmSpec, GuestChannel]:
    """A sandbox-shaped VM spec with its channel listening, for baselines without Corral."""
    assets = Assets.load(Paths.from_env().assets)
    choice = accel.choose("auto", accel.probe_host(), assets.kernel_pvm)
    channel = GuestChannel(listen_unix(scratch / "channel.sock"), Reactor())
    spec = VmSpec(
        accel=choice.accel,
        cpus=1,
        memory_mib=memory_mib,
        kernel=assets.kernel,
        initramfs=assets.initramfs,
        channel_socket=channel.socket_path,
        console_log=scratch / "console.log",
        disks=disks or [],
        kernel_args=kernel_args or [],
        tsc_khz=assets.tsc_khz,
        qemu=assets.qemu,
    )
    return spec, channel


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(benchmark: str, **figures: object) -> None:
    print(json.dumps({"benchmark": benchmark, **figures}), flush=True)
