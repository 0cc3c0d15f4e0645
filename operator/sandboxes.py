"""The Sandbox handler: places sandboxes on nodes and notices when a node is lost.

Registered by `corral.operator.main`. kopf's timer calls `SandboxHandler.reconcile` for
each Sandbox as soon as the operator sees it (created, or found when the operator starts)
and then every `recheck_interval` seconds; it parses the object, calls the pure
`decide()` (which calls the placement planner), and writes only what differs from the
object: the `corral.dev/node` label together with the node agent's finalizer (so a
deletion waits until that node's agent removed the VM), then the status (`nodeName`,
`Scheduled` and `Unsupported` conditions), then an Event on a transition. Unschedulable
sandboxes are re-planned on the next tick. A placed sandbox whose node stopped renewing
its Lease is marked `Unknown` with `Ready=False/NodeLost` and a Warning Event — never
replaced: its VM may still run; its node agent writes `Ready` again when it comes back.
Decisions are serialized by a lock, so two placements never count the same free
capacity; the writes carry the resourceVersion that was decided on, so a stale view
loses with a conflict instead of overwriting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import kopf
from kubernetes_asyncio import client as k8s
from pydantic import ValidationError

from corral._kube import MERGE_PATCH
from corral.api import (
    GROUP,
    NODE_AGENT_FINALIZER,
    NODE_LABEL,
    VERSION,
    Condition,
    Event,
    Sandbox,
    find_condition,
    set_condition,
)
from corral.operator.nodes import list_nodes
from corral.operator.placement import (
    NodeRecord,
    Placed,
    Usage,
    allocations,
    plan,
    request,
)
from corral.operator.settings import OperatorSettings

PLURAL = "sandboxes"
SCHEDULED = "Scheduled"
READY = "Ready"
NODE_LOST = "NodeLost"
_FINISHED = ("Succeeded", "Failed")
NODES_FRESH = 1.0
"""Seconds one listing of the node Leases serves every decision."""
UNSUPPORTED = "Unsupported"
MANAGER = "corral-operator"
"""The field manager of the operator's writes."""
_PATCH: dict[str, Any] = {**MERGE_PATCH, "field_manager": MANAGER}


@dataclass(frozen=True)
class Step:
    """What reconciling one sandbox writes; the default writes nothing."""

    label: str | None = None
    """The node to record in the `corral.dev/node` label (with the node agent's finalizer)."""
    status: dict[str, Any] | None = None
    """A merge patch of the status."""
    events: list[Event] = field(default_factory=list)


def unsupported(sandbox: Sandbox) -> tuple[str, str] | None:
    """The reason and message when the spec uses what Corral cannot do yet."""
    spec = sandbox.spec
    problems = []
    if spec.volumes:
        problems.append(("VolumesUnsupported", "spec.volumes"))
    if spec.network_policy_name:
        problems.append(("NetworkPolicyNameUnsupported", "spec.networkPolicyName"))
    if not problems:
        return None
    fields = " and ".join(name for _, name in problems)
    return problems[0][0], f"{fields}: not supported yet, so the sandbox is not placed"


def placed_on(sandbox: Sandbox) -> str | None:
    """The node the sandbox is placed on, from its status or (if that write was lost) label."""
    return sandbox.status.node_name or sandbox.metadata.labels.get(NODE_LABEL)


def needs_nodes(sandbox: Sandbox) -> bool:
    """Whether deciding needs the nodes: to place it, or to check its node is alive."""
    if placed_on(sandbox) is not None:
        return sandbox.status.phase not in _FINISHED
    return unsupported(sandbox) is None


class _Scheduled(NamedTuple):
    status: Literal["True", "False"]
    reason: str
    message: str


def decide(sandbox: Sandbox, nodes: Sequence[NodeRecord], now: datetime) -> Step:
    """What to write for `sandbox` given the nodes (with their allocations)."""
    conditions = sandbox.status.conditions
    generation = sandbox.metadata.generation
    events = []
    node = placed_on(sandbox)
    problem = unsupported(sandbox)
    patch: dict[str, Any] = {}
    if node is not None:
        scheduled = _Scheduled("True", "Placed", f"placed on node {node}")
        lost = _lost(sandbox, node, nodes)
        if lost is not None:
            old = find_condition(conditions, READY)
            if old is None or old.reason != NODE_LOST:
                events.append(Event("Warning", NODE_LOST, lost))
            conditions = set_condition(conditions, READY, "False", NODE_LOST, lost, generation, now)
            if sandbox.status.phase != "Unknown":
                patch["phase"] = "Unknown"
    elif problem is not None:
        reason, message = problem
        conditions = set_condition(
            conditions, UNSUPPORTED, "True", reason, message, generation, now
        )
        scheduled = _Scheduled("False", "Unsupported", message)
    else:
        decision = plan(sandbox, nodes)
        if isinstance(decision, Placed):
            node = decision.node
            scheduled = _Scheduled("True", "Placed", f"placed on node {node}")
            events.append(Event("Normal", "Placed", scheduled.message))
        else:
            scheduled = _Scheduled("False", "Unschedulable", decision.message)
    old = find_condition(conditions, SCHEDULED)
    if scheduled.status == "False" and (old is None or old.reason != scheduled.reason):
        events.append(Event("Warning", scheduled.reason, scheduled.message))
    conditions = set_condition(conditions, SCHEDULED, *scheduled, generation, now)
    if conditions != sandbox.status.conditions:
        patch["conditions"] = [_json(c) for c in conditions]
    if node is not None and sandbox.status.node_name != node:
        patch["nodeName"] = node
    if sandbox.status.phase is None:
        patch["phase"] = "Pending"
    label = node if node and sandbox.metadata.labels.get(NODE_LABEL) != node else None
    return Step(label=label, status=patch or None, events=events)


def _lost(sandbox: Sandbox, node: str, nodes: Sequence[NodeRecord]) -> str | None:
    """Why the sandbox's node counts as lost, or None while it is alive (or the run ended)."""
    if sandbox.status.phase in _FINISHED or sandbox.metadata.deletion_timestamp is not None:
        return None
    record = next((n for n in nodes if n.name == node), None)
    if record is None:
        return f"node {node} is no longer registered; the sandbox's state is unknown"
    if not record.ready:
        return f"node {node} stopped renewing its lease; the sandbox's state is unknown"
    return None


class SandboxHandler:
    """The kopf timer for Sandboxes, with the API client and lock it shares across them."""

    def __init__(self, settings: OperatorSettings, api: k8s.ApiClient) -> None:
        self._settings = settings
        self._api = api
        self._objects = k8s.CustomObjectsApi(api)
        self._lock = asyncio.Lock()
        self._nodes_cache: tuple[float, list[NodeRecord]] = (float("-inf"), [])

    def register(self, registry: kopf.OperatorRegistry) -> None:
        """Add this handler's timer to `registry`."""
        kopf.timer(
            GROUP,
            VERSION,
            PLURAL,
            id="reconcile",
            interval=self._settings.recheck_interval,
            registry=registry,
        )(self.reconcile)

    async def reconcile(self, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        """Decide and write what changed for one Sandbox."""
        try:
            sandbox = Sandbox.model_validate(dict(body))
        except ValidationError as exc:  # the CRD schema lets nothing like this through
            raise kopf.PermanentError(f"not a Sandbox this operator can read: {exc}") from exc
        async with self._lock:
            nodes = await self._nodes() if needs_nodes(sandbox) else []
            step = decide(sandbox, nodes, datetime.now(UTC))
            try:
                await self._write(sandbox, step)
            except k8s.ApiException as exc:
                if exc.status != 409:
                    raise
                logger.info("the sandbox changed meanwhile; deciding again on the next tick")
                return
            if step.label is not None:
                self._count_placement(step.label, request(sandbox))
        for event in step.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)

    def _count_placement(self, node: str, need: Usage) -> None:
        """Add a placement just written to the listed allocations, so the next decision
        counts it without listing every placed sandbox again."""
        listed_at, nodes = self._nodes_cache
        counted = [replace(n, allocated=n.allocated + need) if n.name == node else n for n in nodes]
        self._nodes_cache = (listed_at, counted)

    async def _nodes(self) -> list[NodeRecord]:
        """The nodes with their allocations: one listing serves decisions for a moment
        (placements made meanwhile are counted in it, under the decision lock)."""
        loop = asyncio.get_running_loop()
        listed_at, nodes = self._nodes_cache
        if loop.time() - listed_at < NODES_FRESH:
            return nodes
        nodes = await self._list_nodes()
        self._nodes_cache = (loop.time(), nodes)
        return nodes

    async def _list_nodes(self) -> list[NodeRecord]:
        now = datetime.now(UTC)
        settings = self._settings
        records = await list_nodes(self._api, settings.namespace, now, settings.node_grace)
        placed = await self._objects.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=NODE_LABEL
        )
        used = allocations(Sandbox.model_validate(item) for item in placed["items"])
        return [replace(r, allocated=used.get(r.name, r.allocated)) for r in records]

    async def _write(self, sandbox: Sandbox, step: Step) -> None:
        """Merge-patch the label, then the status, each only if `step` has it."""
        meta = sandbox.metadata
        version = meta.resource_version
        args = (GROUP, VERSION, meta.namespace, PLURAL, meta.name)
        if step.label is not None:
            finalizers = [f for f in meta.finalizers if f != NODE_AGENT_FINALIZER]
            body = {
                "metadata": {
                    "labels": {NODE_LABEL: step.label},
                    "finalizers": [*finalizers, NODE_AGENT_FINALIZER],
                    "resourceVersion": version,
                }
            }
            updated = await self._objects.patch_namespaced_custom_object(*args, body, **_PATCH)
            version = updated["metadata"]["resourceVersion"]
        if step.status is not None:
            body = {"metadata": {"resourceVersion": version}, "status": step.status}
            await self._objects.patch_namespaced_custom_object_status(*args, body, **_PATCH)


def _json(condition: Condition) -> dict[str, Any]:
    return condition.model_dump(mode="json", by_alias=True, exclude_none=True)
