"""Placement: which node a Sandbox runs on, decided without I/O.

The Sandbox handler (`corral.operator.sandboxes`) reads the node records
(`corral.operator.nodes`) and what is already placed, then asks `plan()`. A node is a
candidate when its lease is fresh, its labels match the sandbox's nodeSelector and its
free vCPUs and memory cover the request. Among candidates, KVM beats TCG (a TCG guest is
an order of magnitude slower), then the least-allocated node wins, as kube-scheduler's
LeastAllocated scores it, so sandboxes spread; ties go to the first name. When no node
fits, the answer is a sentence saying why, which becomes the `Scheduled` condition's
message, so it names the constraint and the numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from corral.api import NODE_LABEL, Sandbox

ACCELERATOR_LABEL = "corral.dev/accelerator"
"""A label every node implicitly carries (`kvm` or `tcg`), so a nodeSelector can ask for KVM."""
_FINISHED = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Usage:
    """vCPUs and MiB of memory, requested by sandboxes or free on a node."""

    cpus: int = 0
    memory_mib: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpus + other.cpus, self.memory_mib + other.memory_mib)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpus - other.cpus, self.memory_mib - other.memory_mib)

    def fits(self, need: Usage) -> bool:
        """Whether `need` fits in this much."""
        return self.cpus >= need.cpus and self.memory_mib >= need.memory_mib


@dataclass(frozen=True)
class NodeRecord:
    """A node as the operator sees it: what its agent registered and what is placed there."""

    name: str
    capacity: Usage
    accelerator: str
    ready: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    allocated: Usage = Usage()
    version: str = ""

    @property
    def free(self) -> Usage:
        """What is left for another sandbox (negative when overcommitted)."""
        return self.capacity - self.allocated

    def matches(self, selector: Mapping[str, str]) -> bool:
        """Whether the node carries every label of `selector` (its accelerator included)."""
        labels = {**self.labels, ACCELERATOR_LABEL: self.accelerator}
        return all(labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True)
class Placed:
    """The sandbox goes to `node`."""

    node: str


@dataclass(frozen=True)
class Unschedulable:
    """No node fits now; `message` says why. The handler retries later."""

    message: str


def request(sandbox: Sandbox) -> Usage:
    """What a sandbox takes from its node while it runs."""
    resources = sandbox.spec.resources
    return Usage(resources.cpus, resources.memory_mib)


def allocations(sandboxes: Iterable[Sandbox]) -> dict[str, Usage]:
    """Per node, the sum of what its placed, unfinished sandboxes request."""
    out: dict[str, Usage] = {}
    for sandbox in sandboxes:
        node = sandbox.metadata.labels.get(NODE_LABEL)
        if node and sandbox.status.phase not in _FINISHED:
            out[node] = out.get(node, Usage()) + request(sandbox)
    return out


def plan(sandbox: Sandbox, nodes: Iterable[NodeRecord]) -> Placed | Unschedulable:
    """Choose the node for `sandbox`, or say why none fits."""
    nodes = list(nodes)
    ready = [n for n in nodes if n.ready]
    if not ready:
        return Unschedulable(_none_ready(nodes))
    selector = sandbox.spec.node_selector
    selected = [n for n in ready if n.matches(selector)]
    if not selected:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return Unschedulable(f"no ready node matches nodeSelector {wanted}")
    need = request(sandbox)
    fitting = [
        n for n in selected if n.free.cpus >= need.cpus and n.free.memory_mib >= need.memory_mib
    ]
    if not fitting:
        return Unschedulable(_insufficient(need, selected))
    best = min(fitting, key=lambda n: (n.accelerator != "kvm", -_score(n, need), n.name))
    return Placed(best.name)


def _score(node: NodeRecord, need: Usage) -> float:
    """kube-scheduler's LeastAllocated: the mean fraction of each resource left after placing."""
    left = node.free - need
    cpu = left.cpus / node.capacity.cpus if node.capacity.cpus else 0.0
    memory = left.memory_mib / node.capacity.memory_mib if node.capacity.memory_mib else 0.0
    return (cpu + memory) / 2


def _none_ready(nodes: list[NodeRecord]) -> str:
    if not nodes:
        return "no node is ready: no node agent has registered"
    names = ", ".join(sorted(n.name for n in nodes))
    return f"no node is ready: the leases of {names} are past their grace period"


def _insufficient(need: Usage, nodes: list[NodeRecord]) -> str:
    most_memory = max(nodes, key=lambda n: (n.free.memory_mib, n.name))
    most_cpus = max(nodes, key=lambda n: (n.free.cpus, n.name))
    reasons = []
    if most_memory.free.memory_mib < need.memory_mib:
        reasons.append(
            f"insufficient memory: need {need.memory_mib} MiB, "
            f"best node has {max(most_memory.free.memory_mib, 0)} MiB free"
        )
    if most_cpus.free.cpus < need.cpus:
        reasons.append(
            f"insufficient cpus: need {need.cpus}, best node has {max(most_cpus.free.cpus, 0)} free"
        )
    if reasons:
        return "; ".join(reasons)
    detail = ", ".join(
        f"{n.name} has {n.free.cpus} cpus and {n.free.memory_mib} MiB"
        for n in sorted(nodes, key=lambda n: n.name)
    )
    return (
        f"insufficient capacity: no node has both {need.cpus} cpus and "
        f"{need.memory_mib} MiB free ({detail})"
    )
