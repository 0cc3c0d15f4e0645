"""What the node agent does with one Sandbox and its VM, decided without I/O.

The reconciler observes the resource (from its watch) and the local VM (from the state
store), asks `decide()`, and carries the answer out: one action on the VM and, only when
the status would change, one status merge patch. Phases and restarts follow the Pod
model: a main process that exits ends the run (`Never`), is restarted on failure
(`OnFailure`) or always (`Always`), with an exponential back-off between quick restarts;
a VM that dies is a failure; `maxDuration` past the resource's creation fails it with
`DeadlineExceeded`. A finished run (Succeeded/Failed) is never booted again.

The node agent owns the `ImageReady`, `Booted` and `Ready` conditions and the phase,
boot ID, accelerator and start time; the operator owns `Scheduled` and node loss.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from corral.api import Condition, Event, Sandbox, set_condition

IMAGE_READY = "ImageReady"
BOOTED = "Booted"
READY = "Ready"
FINISHED = ("Succeeded", "Failed")
LIVE = ("creating", "running", "stopping")
BACKOFF_START = 10.0
BACKOFF_LIMIT = 300.0
STABLE_RUN = 60.0
"""A boot that lasted this long resets the back-off, as the kubelet's does after 10 min."""


class Action(enum.Enum):
    NOTHING = "nothing"
    BOOT = "boot"
    STOP = "stop"
    """Stop the VM (its run has ended) and remove it."""
    RESTART = "restart"
    """Remove the ended VM and boot a new one."""
    REMOVE = "remove"
    """Remove a VM that no longer runs."""
    RELEASE = "release"
    """The resource is being deleted: remove the VM, then the node agent's finalizer."""


@dataclass(frozen=True)
class Observed:
    """The local VM of a Sandbox, as its supervisor recorded it."""

    status: str
    """creating, running, stopping, stopped, crashed, failed or stale."""
    reason: str
    boot_id: str
    accelerator: str
    started_at: float
    """Unix time the current boot became ready (0 before)."""
    main_exit: str
    """"" without a main process, "running", "exited N", "killed by signal N", "failed: …"."""


@dataclass(frozen=True)
class History:
    """What the node agent remembers of a sandbox between reconciliations (in memory)."""

    failures: int = 0
    """Consecutive boot failures or quick restarts: the back-off exponent."""
    last_failure: float = 0.0
    """Unix time of the last failure or restart."""
    failure_reason: str = ""
    failure_message: str = ""

    def backoff(self) -> float:
        """Seconds to wait after `last_failure` before the next boot."""
        if self.failures == 0:
            return 0.0
        return min(BACKOFF_START * float(1 << (self.failures - 1)), BACKOFF_LIMIT)


@dataclass(frozen=True)
class Decision:
    action: Action = Action.NOTHING
    status: dict[str, Any] | None = None
    """A merge patch of the status; None when nothing changed."""
    events: list[Event] = field(default_factory=list)
    wake_in: float | None = None
    """Seconds until the sandbox must be looked at again (a back-off or a deadline)."""


_Condition = tuple[Literal["True", "False", "Unknown"], str, str]
"""A condition's status, reason and message."""


@dataclass(frozen=True)
class _Observation:
    """The status the node agent would write: phase, conditions, boot fields."""

    phase: str
    image: _Condition
    booted: _Condition
    ready: _Condition
    local: Observed | None = None


def decide(sandbox: Sandbox, local: Observed | None, history: History, now: datetime) -> Decision:
    """The action and status change for `sandbox`, given its VM here and its history."""
    if sandbox.metadata.deletion_timestamp is not None:
        return Decision(Action.RELEASE)
    if sandbox.status.phase in FINISHED:
        if local is None:
            return Decision()
        return Decision(Action.STOP if local.status in LIVE else Action.REMOVE)
    deadline = _deadline(sandbox)
    if deadline is not None and now >= deadline:
        message = f"ran past its maxDuration of {sandbox.spec.max_duration}"
        observation = _ended(local, "Failed", "DeadlineExceeded", message)
        return _finish(
            sandbox, observation, local, now, Event("Warning", "DeadlineExceeded", message)
        )
    wake = (deadline - now).total_seconds() if deadline is not None else None
    if local is None:
        booted = sandbox.status.boot_id
        if booted and sandbox.spec.restart_policy == "Never":
            # It ran here and its VM is gone (the node restarted, or someone removed it):
            # with Never that ends the run; the other policies boot it again below.
            message = f"the VM of boot {booted} is gone from the node"
            observation = _ended(None, "Failed", "VMLost", message)
            return _finish(sandbox, observation, None, now, Event("Warning", "VMLost", message))
        return _boot_or_wait(sandbox, history, now, wake)
    if local.status == "running":
        return _running(sandbox, local, history, now, wake)
    if local.status in LIVE:
        return Decision(wake_in=1.0)  # booting or stopping: its supervisor will say how it ends
    reason = f"the VM {local.status}: {local.reason}" if local.reason else f"the VM {local.status}"
    return _ended_run(sandbox, local, "VMFailed", reason, success=False, now=now, history=history)


def _running(
    sandbox: Sandbox, local: Observed, history: History, now: datetime, wake: float | None
) -> Decision:
    main = local.main_exit
    if main in ("", "running"):
        observation = _Observation(
            "Running",
            ("True", "Pulled", f"image {sandbox.spec.image} is on the node"),
            ("True", "Booted", f"boot {local.boot_id} on {local.accelerator}"),
            ("True", "Ready", "the guest agent accepts exec"),
            local,
        )
        return Decision(status=_patch(sandbox, observation, now), wake_in=wake)
    success = main == "exited 0"
    return _ended_run(
        sandbox,
        local,
        "Completed" if success else "MainProcessFailed",
        f"the main process {main}",
        success=success,
        now=now,
        history=history,
    )


def _ended_run(
    sandbox: Sandbox,
    local: Observed,
    reason: str,
    message: str,
    *,
    success: bool,
    now: datetime,
    history: History,
) -> Decision:
    """The main process or the VM ended: restart, or record the run's outcome."""
    policy = sandbox.spec.restart_policy
    if policy == "Always" or (policy == "OnFailure" and not success):
        wait = history.last_failure + history.backoff() - now.timestamp()
        observation = _Observation(
            "Running",
            ("True", "Pulled", f"image {sandbox.spec.image} is on the node"),
            ("False", reason, message),
            ("False", "Restarting", f"{message}; restartPolicy {policy} restarts it"),
            local,
        )
        patch = _patch(sandbox, observation, now)
        if wait > 0:
            return Decision(status=patch, wake_in=wait)
        event = Event("Normal" if success else "Warning", "Restarting", f"{message}; restarting")
        return Decision(Action.RESTART, patch, [event])
    phase = "Succeeded" if success else "Failed"
    observation = _ended(local, phase, reason, message)
    return _finish(
        sandbox, observation, local, now, Event("Normal" if success else "Warning", reason, message)
    )


def _finish(
    sandbox: Sandbox,
    observation: _Observation,
    local: Observed | None,
    now: datetime,
    event: Event,
) -> Decision:
    """Record the final phase first, then stop the VM: a lost write is decided again."""
    if local is None:
        action = Action.NOTHING
    else:
        action = Action.STOP if local.status in LIVE else Action.REMOVE
    return Decision(action, _patch(sandbox, observation, now), [event])


def _ended(local: Observed | None, phase: str, reason: str, message: str) -> _Observation:
    booted: _Condition = (
        ("True", "Booted", f"boot {local.boot_id}")
        if local and local.boot_id
        else ("False", reason, message)
    )
    return _Observation(
        phase,
        ("True", "Pulled", "the image was on the node"),
        booted,
        ("False", reason, message),
        local,
    )


def _boot_or_wait(
    sandbox: Sandbox, history: History, now: datetime, wake: float | None
) -> Decision:
    wait = history.last_failure + history.backoff() - now.timestamp()
    if history.failures and wait > 0:
        image_failed = history.failure_reason == "ImagePullFailed"
        waiting = f"{history.failure_message}; retrying in {wait:.0f}s"
        observation = _Observation(
            "Pending",
            ("False", "ImagePullFailed", waiting)
            if image_failed
            else ("True", "Pulled", f"image {sandbox.spec.image} is on the node"),
            ("False", "WaitingForImage" if image_failed else history.failure_reason, waiting),
            ("False", "NotBooted", waiting),
        )
        patch = _patch(sandbox, observation, now)
        return Decision(status=patch, wake_in=min(wait, wake) if wake else wait)
    return Decision(Action.BOOT, wake_in=wake)


def boot_failed(
    sandbox: Sandbox, history: History, reason: str, message: str, now: datetime
) -> tuple[History, Decision]:
    """The history after a failed boot, and what to write: Failed for `Never`, else Pending."""
    history = History(history.failures + 1, now.timestamp(), reason, message)
    if sandbox.spec.restart_policy == "Never":
        observation = _Observation(
            "Failed",
            ("False", reason, message)
            if reason == "ImagePullFailed"
            else ("True", "Pulled", f"image {sandbox.spec.image} is on the node"),
            ("False", reason, message),
            ("False", reason, message),
        )
        return history, Decision(
            status=_patch(sandbox, observation, now), events=[Event("Warning", reason, message)]
        )
    decision = _boot_or_wait(sandbox, history, now, None)
    return history, Decision(
        status=decision.status, events=[Event("Warning", reason, message)], wake_in=decision.wake_in
    )


def restarted(history: History, local: Observed | None, now: datetime) -> History:
    """The history after a restart: quick runs grow the back-off, a stable run resets it."""
    ran = now.timestamp() - local.started_at if local and local.started_at else 0.0
    failures = 1 if ran >= STABLE_RUN else history.failures + 1
    return History(failures, now.timestamp(), "Restarting", "restarting after the run ended")


def _deadline(sandbox: Sandbox) -> datetime | None:
    created = sandbox.metadata.creation_timestamp
    limit = sandbox.spec.max_duration
    if created is None or limit is None:
        return None
    return created + limit


def _patch(sandbox: Sandbox, observation: _Observation, now: datetime) -> dict[str, Any] | None:
    """The status merge patch that turns the current status into `observation`, or None."""
    status = sandbox.status
    generation = sandbox.metadata.generation
    conditions: list[Condition] = list(status.conditions)
    for type_, (state, reason, message) in (
        (IMAGE_READY, observation.image),
        (BOOTED, observation.booted),
        (READY, observation.ready),
    ):
        conditions = set_condition(conditions, type_, state, reason, message, generation, now)
    patch: dict[str, Any] = {}
    if conditions != status.conditions:
        patch["conditions"] = [
            c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions
        ]
    if observation.phase != status.phase:
        patch["phase"] = observation.phase
    local = observation.local
    if local is not None and local.boot_id:
        if status.boot_id != local.boot_id:
            patch["bootID"] = local.boot_id
        if local.accelerator and status.accelerator != local.accelerator:
            patch["accelerator"] = local.accelerator
        started = datetime.fromtimestamp(int(local.started_at), UTC)
        if local.started_at and status.started_at != started:
            patch["startedAt"] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    return patch or None
