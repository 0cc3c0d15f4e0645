"""The node agent's Prometheus metrics, read from a real VM's QEMU process over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster_exec.conftest import StaticDirectory, local_sandbox
from corral.node_agent.daemon.directory import LocalSandbox
from corral.node_agent.daemon.metrics import (
    PAGE,
    TICKS,
    process_usage,
    sandbox_registry,
    start_metrics,
    usage_from,
)

pytestmark = pytest.mark.vm


def samples(text: str) -> dict[tuple[str, str], float]:
    """(sample name, sandbox name or node) -> value."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, sample.labels.get("name", sample.labels.get("node", ""))] = (
                sample.value
            )
    return found


async def test_a_running_sandbox_reports_cpu_memory_and_disk(shared_sandbox: str) -> None:
    vm = local_sandbox(shared_sandbox)
    gone = LocalSandbox("default", "gone", "u2", Path("/nonexistent"), 2**22 + 1, "tcg", "b")
    not_qemu = LocalSandbox(
        "default", "reused", "u3", Path("/nonexistent"), os.getpid(), "tcg", "c"
    )
    registry = sandbox_registry(StaticDirectory([vm, gone, not_qemu]), "node-1")
    runner, port = await start_metrics(registry, "127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            assert response.status == 200
            text = await response.text()
    finally:
        await runner.cleanup()
    found = samples(text)
    assert found["corral_sandbox_memory_bytes", "sb"] > 16 * 2**20
    assert found["corral_sandbox_cpu_seconds_total", "sb"] > 0
    assert found["corral_sandbox_disk_read_bytes_total", "sb"] >= 0
    assert found["corral_sandbox_disk_write_bytes_total", "sb"] >= 0
    assert found["corral_node_sandboxes", "node-1"] == 3
    assert not any(name in ("gone", "reused") for _, name in found)
    assert 'boot_id="boot-1"' in text and 'namespace="default"' in text and 'node="node-1"' in text


def test_proc_files_are_parsed_as_the_kernel_writes_them() -> None:
    stat = "4242 (qemu (x) y) S 1 2 3 0 -1 4194560 10 0 0 0 250 150 0 0 20 0 3 0 100 1 2"
    usage = usage_from(
        stat, "1000 300 20 1 0 50 0", "rchar: 9\nread_bytes: 4096\nwrite_bytes: 512\n"
    )
    assert usage is not None
    assert usage.cpu_seconds == 400 / TICKS
    assert usage.rss_bytes == 300 * PAGE
    assert (usage.read_bytes, usage.write_bytes) == (4096, 512)
    assert usage_from(stat, "1000 300", None) is not None
    assert usage_from("garbage", "", None) is None


def test_a_missing_process_is_none(tmp_path: Path) -> None:
    assert process_usage(1, tmp_path) is None
