"""Prometheus metrics of this node's sandboxes, read from their QEMU processes in /proc.

At each scrape, `SandboxCollector` reads for every running sandbox (from the
`SandboxDirectory`) its QEMU process's CPU time, resident memory and block I/O:

    corral_sandbox_cpu_seconds_total         user + system CPU time of the VM process
    corral_sandbox_memory_bytes              resident set size of the VM process
    corral_sandbox_disk_read_bytes_total     bytes the VM process read from storage
    corral_sandbox_disk_write_bytes_total    bytes the VM process wrote to storage
    corral_node_sandboxes                    sandboxes running on the node

labelled namespace, name, node, accelerator and boot_id (the node gauge: node). A
process that is gone, or whose pid now belongs to something else, is skipped; a scrape
never fails because of one sandbox. Network I/O is not reported yet: the runtime gives
sandboxes no network so far. `main` serves the registry with `start_metrics` on its own
plain-HTTP port (metrics hold no secrets; a Service scrapes them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.node_agent.daemon.directory import LocalSandbox, SandboxDirectory

LABELS = ("namespace", "name", "node", "accelerator", "boot_id")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessUsage:
    cpu_seconds: float
    rss_bytes: int
    read_bytes: int | None
    """None when /proc/PID/io is not readable (another user's process, no accounting)."""
    write_bytes: int | None


def process_usage(pid: int, proc: Path = PROC) -> ProcessUsage | None:
    """What `pid` has used, or None when it is gone or is not a QEMU process."""
    base = proc / str(pid)
    try:
        if b"qemu-system" not in (base / "cmdline").read_bytes():
            return None
        stat = (base / "stat").read_text()
        statm = (base / "statm").read_text()
    except OSError:
        return None
    return usage_from(stat, statm, _read_io(base))


def usage_from(stat: str, statm: str, io: str | None) -> ProcessUsage | None:
    """Parse /proc/PID/{stat,statm,io}; None when they are not what the kernel writes."""
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        utime, stime = int(fields[11]), int(fields[12])
        rss_pages = int(statm.split()[1])
    except (IndexError, ValueError):
        return None
    counters = _io_counters(io)
    return ProcessUsage(
        cpu_seconds=(utime + stime) / TICKS,
        rss_bytes=rss_pages * PAGE,
        read_bytes=counters.get("read_bytes"),
        write_bytes=counters.get("write_bytes"),
    )


def _read_io(base: Path) -> str | None:
    try:
        return (base / "io").read_text()
    except OSError:
        return None


def _io_counters(io: str | None) -> dict[str, int]:
    counters: dict[str, int] = {}
    for line in (io or "").splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            counters[key.strip()] = int(value)
    return counters


class SandboxCollector(Collector):
    """Reads the sandboxes' usage at scrape time (nothing is sampled in between)."""

    def __init__(self, directory: SandboxDirectory, node_name: str, proc: Path = PROC) -> None:
        self._directory = directory
        self._node_name = node_name
        self._proc = proc

    def collect(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "corral_sandbox_cpu_seconds", "CPU time of the sandbox's VM process.", labels=LABELS
        )
        memory = GaugeMetricFamily(
            "corral_sandbox_memory_bytes",
            "Resident memory of the sandbox's VM process.",
            labels=LABELS,
        )
        read = CounterMetricFamily(
            "corral_sandbox_disk_read_bytes",
            "Bytes the sandbox's VM read from storage.",
            labels=LABELS,
        )
        written = CounterMetricFamily(
            "corral_sandbox_disk_write_bytes",
            "Bytes the sandbox's VM wrote to storage.",
            labels=LABELS,
        )
        sandboxes = self._directory.running()
        for sandbox in sandboxes:
            usage = process_usage(sandbox.qemu_pid, self._proc)
            if usage is None:
                continue
            labels = self._labels(sandbox)
            cpu.add_metric(labels, usage.cpu_seconds)
            memory.add_metric(labels, usage.rss_bytes)
            if usage.read_bytes is not None:
                read.add_metric(labels, usage.read_bytes)
            if usage.write_bytes is not None:
                written.add_metric(labels, usage.write_bytes)
        count = GaugeMetricFamily(
            "corral_node_sandboxes", "Sandboxes running on this node.", labels=("node",)
        )
        count.add_metric([self._node_name], len(sandboxes))
        yield from (cpu, memory, read, written, count)

    def _labels(self, sandbox: LocalSandbox) -> list[str]:
        return [
            sandbox.namespace,
            sandbox.name,
            self._node_name,
            sandbox.accelerator,
            sandbox.boot_id,
        ]


def sandbox_registry(directory: SandboxDirectory, node_name: str) -> CollectorRegistry:
    """A registry holding only the sandbox collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SandboxCollector(directory, node_name))
    return registry


async def start_metrics(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Serve `GET /metrics` on plain HTTP; the runner (`await runner.cleanup()` stops it)
    and the bound port (`port` 0: an ephemeral one)."""

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    for address in runner.addresses:
        if isinstance(address, tuple):
            return runner, int(address[1])
    await runner.cleanup()
    raise RuntimeError("the metrics server is not listening")
