"""What the Sandbox handler decides to write: the label, the status and the Events, and
nothing at all when the object already says it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from corral.api import NODE_LABEL, Event, Sandbox
from corral.operator.placement import NodeRecord, Usage
from corral.operator.sandboxes import Step, decide, needs_nodes, unsupported

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(seconds=10)
BIG = NodeRecord("big", Usage(4, 4096), "kvm", ready=True)
SMALL = NodeRecord("small", Usage(2, 256), "kvm", ready=True)


def sandbox(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "s", "namespace": "default", "generation": 2, "labels": {}},
        "spec": {"image": "alpine", "resources": {"memoryMiB": 512}, **spec},
    }


def applied(obj: dict[str, Any], step: Step) -> dict[str, Any]:
    """`obj` after the handler wrote `step`."""
    out = {**obj, "metadata": {**obj["metadata"]}, "status": {**obj.get("status", {})}}
    if step.label:
        out["metadata"]["labels"] = {**obj["metadata"]["labels"], NODE_LABEL: step.label}
    out["status"].update(step.status or {})
    return out


def run(obj: dict[str, Any], nodes: list[NodeRecord], now: datetime = NOW) -> Step:
    return decide(Sandbox.model_validate(obj), nodes, now)


def test_placing_writes_label_status_and_an_event() -> None:
    step = run(sandbox(), [SMALL, BIG])
    assert step.label == "big"
    assert step.status is not None
    assert step.status["nodeName"] == "big"
    assert step.status["phase"] == "Pending"
    assert step.status["conditions"] == [
        {
            "type": "Scheduled",
            "status": "True",
            "reason": "Placed",
            "message": "placed on node big",
            "observedGeneration": 2,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    assert step.events == [Event("Normal", "Placed", "placed on node big")]


def test_a_placed_sandbox_on_a_live_node_writes_nothing() -> None:
    obj = applied(sandbox(), run(sandbox(), [BIG]))
    assert needs_nodes(Sandbox.model_validate(obj))
    assert run(obj, [BIG], LATER) == Step()


def test_a_finished_sandbox_needs_no_nodes() -> None:
    obj = applied(sandbox(), run(sandbox(), [BIG]))
    obj["status"]["phase"] = "Succeeded"
    assert not needs_nodes(Sandbox.model_validate(obj))
    assert run(obj, [], LATER) == Step()


def test_a_lost_node_marks_its_sandboxes_unknown_once() -> None:
    obj = applied(sandbox(), run(sandbox(), [BIG]))
    obj["status"]["phase"] = "Running"
    lost = NodeRecord("big", Usage(4, 4096), "kvm", ready=False)
    step = run(obj, [lost], LATER)
    message = "node big stopped renewing its lease; the sandbox's state is unknown"
    assert step.label is None
    assert step.status is not None and step.status["phase"] == "Unknown"
    ready = {c["type"]: c for c in step.status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "NodeLost", message)
    assert step.events == [Event("Warning", "NodeLost", message)]
    assert run(applied(obj, step), [lost], LATER + timedelta(seconds=10)) == Step()


def test_an_unregistered_node_is_lost_too() -> None:
    obj = applied(sandbox(), run(sandbox(), [BIG]))
    step = run(obj, [SMALL], LATER)
    assert step.status is not None and step.status["phase"] == "Unknown"
    assert [e.reason for e in step.events] == ["NodeLost"]


def test_a_sandbox_being_deleted_is_not_marked_lost() -> None:
    obj = applied(sandbox(), run(sandbox(), [BIG]))
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:05Z"
    assert run(obj, [], LATER) == Step()


def test_a_lost_status_write_is_completed_from_the_label() -> None:
    obj = sandbox()
    obj["metadata"]["labels"] = {NODE_LABEL: "big"}
    step = run(obj, [BIG])
    assert step.label is None
    assert step.status is not None and step.status["nodeName"] == "big"
    assert step.events == []


def test_a_lost_label_write_is_completed_from_the_status() -> None:
    obj = applied(sandbox(), run(sandbox(), [BIG]))
    obj["metadata"]["labels"] = {}
    assert run(obj, [BIG], LATER) == Step(label="big")


def test_unschedulable_warns_once_and_rewrites_only_a_changed_message() -> None:
    first = run(sandbox(), [SMALL])
    message = "insufficient memory: need 512 MiB, best node has 256 MiB free"
    assert first.label is None
    assert first.events == [Event("Warning", "Unschedulable", message)]
    assert first.status is not None
    (scheduled,) = first.status["conditions"]
    assert (scheduled["status"], scheduled["reason"], scheduled["message"]) == (
        "False",
        "Unschedulable",
        message,
    )
    obj = applied(sandbox(), first)
    assert run(obj, [SMALL], LATER) == Step()
    changed = run(obj, [], LATER)
    assert changed.events == []
    assert changed.status is not None
    (scheduled,) = changed.status["conditions"]
    assert scheduled["message"] == "no node is ready: no node agent has registered"
    assert scheduled["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_pending_then_placed_when_a_node_fits() -> None:
    obj = applied(sandbox(), run(sandbox(), [SMALL]))
    step = run(obj, [SMALL, BIG], LATER)
    assert step.label == "big"
    assert step.events == [Event("Normal", "Placed", "placed on node big")]
    assert step.status is not None and "phase" not in step.status


def test_volumes_are_unsupported_and_not_placed() -> None:
    obj = sandbox(volumes=[{"name": "workspace", "mountPath": "/work"}])
    assert not needs_nodes(Sandbox.model_validate(obj))
    step = run(obj, [BIG])
    assert step.label is None
    assert step.status is not None
    conditions = {c["type"]: c for c in step.status["conditions"]}
    message = "spec.volumes: not supported yet, so the sandbox is not placed"
    assert conditions["Unsupported"]["status"] == "True"
    assert conditions["Unsupported"]["reason"] == "VolumesUnsupported"
    assert conditions["Unsupported"]["message"] == message
    assert conditions["Scheduled"]["status"] == "False"
    assert conditions["Scheduled"]["reason"] == "Unsupported"
    assert step.events == [Event("Warning", "Unsupported", message)]
    assert run(applied(obj, step), [BIG], LATER) == Step()


def test_a_network_policy_is_unsupported() -> None:
    spec = Sandbox.model_validate(sandbox(networkPolicyName="pypi-only"))
    assert unsupported(spec) == (
        "NetworkPolicyNameUnsupported",
        "spec.networkPolicyName: not supported yet, so the sandbox is not placed",
    )


def test_both_unsupported_fields_are_named() -> None:
    obj = sandbox(volumes=[{"name": "v", "mountPath": "/v"}], networkPolicyName="p")
    assert unsupported(Sandbox.model_validate(obj)) == (
        "VolumesUnsupported",
        "spec.volumes and spec.networkPolicyName: not supported yet, so the sandbox is not placed",
    )


def test_a_phase_set_by_the_node_agent_is_kept() -> None:
    obj = sandbox()
    obj["metadata"]["labels"] = {NODE_LABEL: "big"}
    obj["status"] = {"phase": "Running", "nodeName": "big"}
    step = run(obj, [BIG])
    assert step.status is not None and "phase" not in step.status
