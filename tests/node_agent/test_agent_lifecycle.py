"""The node agent's lifecycle decisions: boot, report, restart by policy, finish, release,
back off — and write nothing when the status already says it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.api import Event, Sandbox
from corral.node_agent.daemon.lifecycle import (
    Action,
    History,
    Observed,
    boot_failed,
    decide,
    restarted,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RUNNING = Observed("running", "", "b00t", "tcg", NOW.timestamp() - 5, "")


def sandbox(status: dict[str, Any] | None = None, **spec: Any) -> Sandbox:
    return Sandbox.model_validate(
        {
            "metadata": {
                "name": "s",
                "namespace": "default",
                "uid": "u1",
                "generation": 1,
                "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T11:59:00Z",
            },
            "spec": {"image": "default", **spec},
            "status": status or {"phase": "Pending", "nodeName": "n1"},
        }
    )


def applied(resource: Sandbox, patch: dict[str, Any] | None) -> Sandbox:
    obj = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    obj["status"] = {**obj["status"], **(patch or {})}
    return Sandbox.model_validate(obj)


def conditions(patch: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    assert patch is not None
    return {c["type"]: (c["status"], c["reason"]) for c in patch["conditions"]}


def test_an_unbooted_sandbox_boots() -> None:
    assert decide(sandbox(), None, History(), NOW).action is Action.BOOT


def test_a_running_vm_is_reported_once() -> None:
    decision = decide(sandbox(), RUNNING, History(), NOW)
    assert decision.action is Action.NOTHING
    patch = decision.status
    assert patch is not None
    assert (patch["phase"], patch["bootID"], patch["accelerator"]) == ("Running", "b00t", "tcg")
    assert patch["startedAt"] == "2026-01-01T11:59:55Z"
    assert conditions(patch) == {
        "ImageReady": ("True", "Pulled"),
        "Booted": ("True", "Booted"),
        "Ready": ("True", "Ready"),
    }
    again = decide(applied(sandbox(), patch), RUNNING, History(), NOW + timedelta(seconds=30))
    assert again.status is None and again.action is Action.NOTHING


def test_the_operators_conditions_survive() -> None:
    scheduled = {
        "type": "Scheduled",
        "status": "True",
        "reason": "Placed",
        "message": "placed on node n1",
        "lastTransitionTime": "2026-01-01T11:59:01Z",
    }
    resource = sandbox({"phase": "Pending", "nodeName": "n1", "conditions": [scheduled]})
    patch = decide(resource, RUNNING, History(), NOW).status
    assert conditions(patch)["Scheduled"] == ("True", "Placed")


def test_a_node_lost_sandbox_is_ready_again_with_the_same_boot() -> None:
    running = applied(sandbox(), decide(sandbox(), RUNNING, History(), NOW).status)
    lost = running.model_dump(mode="json", by_alias=True, exclude_none=True)
    lost["status"]["phase"] = "Unknown"
    for condition in lost["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition.update(status="False", reason="NodeLost")
    patch = decide(Sandbox.model_validate(lost), RUNNING, History(), NOW).status
    assert patch is not None and patch["phase"] == "Running" and "bootID" not in patch
    assert conditions(patch)["Ready"] == ("True", "Ready")


@pytest.mark.parametrize(
    ("main", "policy", "action", "phase"),
    [
        ("exited 0", "Never", Action.STOP, "Succeeded"),
        ("exited 3", "Never", Action.STOP, "Failed"),
        ("killed by signal 9", "Never", Action.STOP, "Failed"),
        ("exited 0", "OnFailure", Action.STOP, "Succeeded"),
        ("exited 3", "OnFailure", Action.RESTART, "Running"),
        ("exited 0", "Always", Action.RESTART, "Running"),
    ],
)
def test_the_main_process_ends_the_run_by_restart_policy(
    main: str, policy: str, action: Action, phase: str
) -> None:
    resource = sandbox(restartPolicy=policy)
    vm = Observed("running", "", "b00t", "tcg", NOW.timestamp() - 5, main)
    decision = decide(resource, vm, History(), NOW)
    assert decision.action is action
    assert decision.status is not None
    assert decision.status["phase"] == phase


def test_a_finished_run_stops_its_vm_and_never_boots_again() -> None:
    done = sandbox({"phase": "Succeeded", "nodeName": "n1"})
    vm = Observed("running", "", "b00t", "tcg", NOW.timestamp() - 5, "exited 0")
    assert decide(done, vm, History(), NOW).action is Action.STOP
    stopped = Observed("stopped", "", "b00t", "tcg", NOW.timestamp() - 5, "exited 0")
    assert decide(done, stopped, History(), NOW).action is Action.REMOVE
    assert decide(done, None, History(), NOW).action is Action.NOTHING


def test_a_crashed_vm_fails_the_run_or_restarts_it() -> None:
    crashed = Observed("crashed", "qemu killed by signal 9", "b00t", "tcg", 1.0, "running")
    never = decide(sandbox(), crashed, History(), NOW)
    assert never.action is Action.REMOVE
    assert never.status is not None and never.status["phase"] == "Failed"
    assert "signal 9" in {c["type"]: c for c in never.status["conditions"]}["Ready"]["message"]
    assert never.events == [Event("Warning", "VMFailed", "the VM crashed: qemu killed by signal 9")]
    again = decide(sandbox(restartPolicy="Always"), crashed, History(), NOW)
    assert again.action is Action.RESTART


def test_quick_restarts_back_off_and_a_stable_run_resets() -> None:
    vm = Observed("running", "", "b00t", "tcg", NOW.timestamp() - 1, "exited 1")
    history = restarted(History(), vm, NOW)
    assert history.failures == 1 and history.backoff() == 10
    soon = decide(sandbox(restartPolicy="OnFailure"), vm, history, NOW + timedelta(seconds=3))
    assert soon.action is Action.NOTHING and soon.wake_in == pytest.approx(7)
    later = decide(sandbox(restartPolicy="OnFailure"), vm, history, NOW + timedelta(seconds=11))
    assert later.action is Action.RESTART
    history = restarted(history, vm, NOW)
    assert history.backoff() == 20
    stable = Observed("running", "", "b00t", "tcg", NOW.timestamp() - 600, "exited 1")
    assert restarted(history, stable, NOW).backoff() == 10


def test_max_duration_fails_the_run_with_deadline_exceeded() -> None:
    resource = sandbox(maxDuration="2m")
    early = decide(resource, RUNNING, History(), NOW)
    assert early.wake_in == pytest.approx(60)
    late = decide(resource, RUNNING, History(), NOW + timedelta(minutes=2))
    assert late.action is Action.STOP
    assert late.status is not None and late.status["phase"] == "Failed"
    assert conditions(late.status)["Ready"] == ("False", "DeadlineExceeded")


def test_a_failed_pull_is_pending_and_retried_after_a_back_off() -> None:
    resource = sandbox(restartPolicy="Always")
    history, decision = boot_failed(resource, History(), "ImagePullFailed", "no such image", NOW)
    assert decision.status is not None and "phase" not in decision.status  # still Pending
    assert conditions(decision.status)["ImageReady"] == ("False", "ImagePullFailed")
    assert decision.events == [Event("Warning", "ImagePullFailed", "no such image")]
    assert decide(resource, None, history, NOW + timedelta(seconds=5)).action is Action.NOTHING
    assert decide(resource, None, history, NOW + timedelta(seconds=10)).action is Action.BOOT


def test_a_failed_boot_with_restart_policy_never_fails_the_run() -> None:
    _, decision = boot_failed(sandbox(), History(), "BootFailed", "guest did not come up", NOW)
    assert decision.status is not None and decision.status["phase"] == "Failed"
    assert conditions(decision.status)["Booted"] == ("False", "BootFailed")


def test_a_deleted_sandbox_is_released() -> None:
    resource = sandbox()
    deleting = resource.model_copy(
        update={"metadata": resource.metadata.model_copy(update={"deletion_timestamp": NOW})}
    )
    assert decide(deleting, RUNNING, History(), NOW).action is Action.RELEASE


def test_a_vanished_vm_fails_a_never_run_and_boots_again_otherwise() -> None:
    ran = {"phase": "Running", "nodeName": "n1", "bootID": "b00t"}
    gone = decide(sandbox(ran), None, History(), NOW)
    assert gone.action is Action.NOTHING
    assert gone.status is not None and gone.status["phase"] == "Failed"
    assert conditions(gone.status)["Ready"] == ("False", "VMLost")
    assert [e.reason for e in gone.events] == ["VMLost"]
    again = decide(sandbox(ran, restartPolicy="Always"), None, History(), NOW)
    assert again.action is Action.BOOT
