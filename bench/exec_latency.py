"""Exec round trip of `true` (p50/p99 over 1000 calls) against the guest agent's own
spawn+wait time for `true`, reported by the agent in the EXIT frame. Target ≤ 2 times."""

from __future__ import annotations

import time

from bench.common import bench_home, emit, percentile
from corral import Exited, Sandbox

CALLS = 1000


async def main() -> None:
    with bench_home():
        sandbox = await Sandbox.builder("latency").create()
        for _ in range(20):
            await sandbox.exec("true")
        round_trips, agent_times = [], []
        for _ in range(CALLS):
            started = time.perf_counter()
            async with sandbox.exec_stream("true", stdin=False) as proc:
                async for event in proc:
                    if isinstance(event, Exited):
                        agent_times.append(event.run_ns / 1e9)
            round_trips.append(time.perf_counter() - started)
        await sandbox.remove()
    p50, p99 = percentile(round_trips, 0.5), percentile(round_trips, 0.99)
    agent_p50 = percentile(agent_times, 0.5)
    emit(
        "exec_true_round_trip",
        calls=CALLS,
        p50_ms=round(p50 * 1000, 3),
        p99_ms=round(p99 * 1000, 3),
        agent_spawn_wait_p50_ms=round(agent_p50 * 1000, 3),
        agent_spawn_wait_p99_ms=round(percentile(agent_times, 0.99) * 1000, 3),
        p50_vs_agent=round(p50 / agent_p50, 3),
        target_vs_agent=2.0,
    )
