"""The control plane's cost: API writes per sandbox lifecycle (target ≤ 10), and N Sandboxes
applied at once across two node agents — time to all Scheduled and all Running — against
N cold boots run directly on the runtime, as concurrently as the two agents boot, in the
same run. N is $CORRAL_BENCH_SANDBOXES (default 100)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import bench_home, emit
from corral import Sandbox
from corral.testing.cluster import Cluster, run_cluster, sandbox_manifest, until

SANDBOXES = int(os.environ.get("CORRAL_BENCH_SANDBOXES", "100"))
PARALLEL_BOOTS = 4
"""Each node agent boots this many VMs at once (its default), so the baseline boots twice
as many at once as one agent does."""
NODES = 2
MEMORY_MIB = 64


def manifest(name: str) -> dict[str, Any]:
    return sandbox_manifest(name, resources={"cpus": 1, "memoryMiB": MEMORY_MIB})


def writes_per_lifecycle(cluster: Cluster) -> dict[str, int]:
    """Successful writes, by resource, for create → Running → deleted; heartbeats excluded."""
    cluster.server.log.clear()
    cluster.kubectl.apply(manifest("counted"))
    cluster.wait_ready("counted")
    cluster.kubectl("delete", "sbx", "counted", "--timeout=120s", timeout=130)
    counts = cluster.server.log.writes()
    return {kind: n for kind, n in sorted(counts.items()) if kind != "leases"}


def apply_many(cluster: Cluster, count: int) -> tuple[float, float]:
    """Seconds from one `kubectl apply` of `count` Sandboxes to all Scheduled, to all Running."""
    names = [f"many-{i:03d}" for i in range(count)]
    items = {"apiVersion": "v1", "kind": "List", "items": [manifest(n) for n in names]}
    started = time.perf_counter()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(items), timeout=300)
    scheduled = running = None
    while running is None:
        listed = cluster.kubectl.json("get", "sbx")["items"]
        states = [item.get("status", {}) for item in listed if item["metadata"]["name"] in names]
        now = time.perf_counter() - started
        if scheduled is None and sum(bool(s.get("nodeName")) for s in states) == count:
            scheduled = now
        if sum(s.get("phase") == "Running" for s in states) == count:
            running = now
        elif now > 60 * 30:
            raise RuntimeError(f"not all {count} sandboxes ran within 30 min")
        time.sleep(0.5)
    assert scheduled is not None
    cluster.kubectl("delete", "sbx", "--all", "--timeout=600s", timeout=610)
    until(lambda: not cluster.kubectl("get", "sbx", "-o", "name").stdout, timeout=300)
    return scheduled, running


async def direct_boots(count: int, parallel: int) -> float:
    """Seconds to boot `count` detached sandboxes on the runtime, `parallel` at a time."""
    gate = asyncio.Semaphore(parallel)

    async def boot(index: int) -> None:
        async with gate:
            builder = Sandbox.builder(f"direct-{index:03d}").memory(MEMORY_MIB)
            sandbox = await builder.create_detached()
            await sandbox.close()

    started = time.perf_counter()
    await asyncio.gather(*(boot(i) for i in range(count)))
    return time.perf_counter() - started


async def main() -> None:
    with bench_home():
        baseline = await direct_boots(SANDBOXES, PARALLEL_BOOTS * NODES)
    with tempfile.TemporaryDirectory(prefix="corral-bench-cluster") as scratch:
        memory = MEMORY_MIB * SANDBOXES
        with run_cluster(Path(scratch), NODES, cpus=64, memory_mib=memory) as cluster:
            writes = writes_per_lifecycle(cluster)
            emit(
                "cluster_api_writes",
                writes=sum(writes.values()),
                by_resource=writes,
                target_max=10,
            )
            scheduled, running = apply_many(cluster, SANDBOXES)
    emit(
        "cluster_apply_many",
        sandboxes=SANDBOXES,
        nodes=NODES,
        all_scheduled_s=round(scheduled, 2),
        all_running_s=round(running, 2),
        direct_runtime_boots_s=round(baseline, 2),
        running_vs_direct=round(running / baseline, 2),
    )
