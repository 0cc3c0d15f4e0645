"""The placement planner: readiness, nodeSelector, capacity and least-allocated scoring,
and the sentences that explain why a sandbox stays Pending."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api import NODE_LABEL, Sandbox
from corral.operator.placement import (
    NodeRecord,
    Placed,
    Unschedulable,
    Usage,
    allocations,
    plan,
    request,
)


def sandbox(
    cpus: int = 1,
    memory: int = 512,
    selector: dict[str, str] | None = None,
    node: str | None = None,
    phase: str | None = None,
) -> Sandbox:
    obj: dict[str, Any] = {
        "metadata": {"name": "s", "labels": {NODE_LABEL: node} if node else {}},
        "spec": {
            "image": "alpine",
            "resources": {"cpus": cpus, "memoryMiB": memory},
            "nodeSelector": selector or {},
        },
        "status": {"phase": phase} if phase else {},
    }
    return Sandbox.model_validate(obj)


def node(
    name: str,
    cpus: int = 4,
    memory: int = 4096,
    used: tuple[int, int] = (0, 0),
    accelerator: str = "kvm",
    ready: bool = True,
    **labels: str,
) -> NodeRecord:
    return NodeRecord(
        name=name,
        capacity=Usage(cpus, memory),
        accelerator=accelerator,
        ready=ready,
        labels=labels,
        allocated=Usage(*used),
    )


def test_the_only_fitting_node_is_chosen() -> None:
    nodes = [node("small", memory=256), node("big", memory=8192)]
    assert plan(sandbox(memory=512), nodes) == Placed("big")


def test_least_allocated_node_wins() -> None:
    nodes = [node("busy", used=(3, 3000)), node("idle", used=(1, 1000))]
    assert plan(sandbox(), nodes) == Placed("idle")


def test_score_weighs_cpus_and_memory_relative_to_capacity() -> None:
    # a: 1/2 cpus, 3/4 memory left after placing → 0.625; b: 3/4, 1/4 → 0.5
    nodes = [node("a", cpus=2, memory=2048), node("b", cpus=4, memory=1024)]
    assert plan(sandbox(cpus=1, memory=512), nodes) == Placed("a")


def test_ties_go_to_the_first_name() -> None:
    assert plan(sandbox(), [node("b"), node("a"), node("c")]) == Placed("a")


def test_kvm_beats_a_less_allocated_tcg_node() -> None:
    nodes = [node("emulated", accelerator="tcg"), node("kvm", used=(3, 3000))]
    assert plan(sandbox(), nodes) == Placed("kvm")


def test_a_tcg_node_is_used_when_no_kvm_node_fits() -> None:
    nodes = [node("emulated", accelerator="tcg"), node("kvm", memory=256)]
    assert plan(sandbox(), nodes) == Placed("emulated")


def test_exactly_full_fits() -> None:
    assert plan(sandbox(cpus=2, memory=512), [node("n", 2, 512)]) == Placed("n")


def test_node_selector_filters_by_labels() -> None:
    nodes = [node("a", zone="x"), node("b", zone="y", disk="ssd")]
    assert plan(sandbox(selector={"zone": "y"}), nodes) == Placed("b")
    assert plan(sandbox(selector={"zone": "y", "disk": "ssd"}), nodes) == Placed("b")


def test_node_selector_can_ask_for_the_accelerator() -> None:
    nodes = [node("a", accelerator="tcg"), node("b", accelerator="kvm", used=(3, 3000))]
    assert plan(sandbox(selector={"corral.dev/accelerator": "tcg"}), nodes) == Placed("a")


def test_no_node_matches_the_selector() -> None:
    nodes = [node("a", zone="x")]
    result = plan(sandbox(selector={"zone": "y", "disk": "ssd"}), nodes)
    assert result == Unschedulable("no ready node matches nodeSelector disk=ssd, zone=y")


def test_a_not_ready_node_is_skipped() -> None:
    nodes = [node("stale", ready=False), node("fresh", used=(3, 3000))]
    assert plan(sandbox(), nodes) == Placed("fresh")


def test_no_node_is_ready() -> None:
    result = plan(sandbox(), [node("b", ready=False), node("a", ready=False)])
    assert result == Unschedulable(
        "no node is ready: the leases of a, b are past their grace period"
    )


def test_no_node_registered() -> None:
    assert plan(sandbox(), []) == Unschedulable("no node is ready: no node agent has registered")


def test_insufficient_memory_names_need_and_best_free() -> None:
    nodes = [node("a", memory=256), node("b", memory=1024, used=(0, 900))]
    assert plan(sandbox(memory=512), nodes) == Unschedulable(
        "insufficient memory: need 512 MiB, best node has 256 MiB free"
    )


def test_insufficient_cpus() -> None:
    nodes = [node("a", cpus=2), node("b", cpus=4, used=(3, 0))]
    assert plan(sandbox(cpus=4), nodes) == Unschedulable(
        "insufficient cpus: need 4, best node has 2 free"
    )


def test_insufficient_memory_and_cpus() -> None:
    result = plan(sandbox(cpus=8, memory=8192), [node("a")])
    assert result == Unschedulable(
        "insufficient memory: need 8192 MiB, best node has 4096 MiB free; "
        "insufficient cpus: need 8, best node has 4 free"
    )


def test_no_single_node_has_both() -> None:
    nodes = [node("cpu", cpus=8, memory=256), node("mem", cpus=1, memory=8192)]
    result = plan(sandbox(cpus=2, memory=1024), nodes)
    assert result == Unschedulable(
        "insufficient capacity: no node has both 2 cpus and 1024 MiB free "
        "(cpu has 8 cpus and 256 MiB, mem has 1 cpus and 8192 MiB)"
    )


def test_overcommitted_node_reports_zero_free() -> None:
    result = plan(sandbox(memory=512), [node("a", memory=256, used=(0, 512))])
    assert result == Unschedulable("insufficient memory: need 512 MiB, best node has 0 MiB free")


def test_capacity_is_only_checked_on_selected_ready_nodes() -> None:
    nodes = [node("big", memory=8192, ready=False), node("small", memory=256, zone="x")]
    result = plan(sandbox(memory=512, selector={"zone": "x"}), nodes)
    assert result == Unschedulable("insufficient memory: need 512 MiB, best node has 256 MiB free")


def test_allocations_sum_placed_unfinished_sandboxes() -> None:
    placed = [
        sandbox(cpus=1, memory=512, node="a"),
        sandbox(cpus=2, memory=256, node="a", phase="Running"),
        sandbox(cpus=1, memory=128, node="b", phase="Pending"),
        sandbox(cpus=4, memory=4096, node="a", phase="Succeeded"),
        sandbox(cpus=4, memory=4096, node="b", phase="Failed"),
        sandbox(cpus=4, memory=4096),
    ]
    assert allocations(placed) == {"a": Usage(3, 768), "b": Usage(1, 128)}


@pytest.mark.parametrize(("cpus", "memory"), [(1, 256), (3, 2048)])
def test_request_is_the_spec_resources(cpus: int, memory: int) -> None:
    assert request(sandbox(cpus=cpus, memory=memory)) == Usage(cpus, memory)
