"""Conditions and Events by Kubernetes conventions, computed without I/O.

A handler states the condition it observes; `set_condition()` returns the new list,
keeping `lastTransitionTime` when the status did not flip, so an unchanged observation
yields an equal list and the handler can skip the status write. An `Event` is what a
handler decides to post about a transition; posting it is the handler's I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from corral.api._meta import Condition


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about a resource."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def set_condition(
    conditions: Sequence[Condition],
    type: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """`conditions` with `type` set to the given observation, other types untouched."""
    old = find_condition(conditions, type)
    since = old.last_transition_time if old and old.status == status else now
    new = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=since,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == type else c for c in conditions]


def find_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    """The condition of `type`, if any."""
    return next((c for c in conditions if c.type == type), None)
