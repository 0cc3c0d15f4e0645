"""Conditions keep their transition time while the status holds, so an unchanged
observation compares equal and no status write follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from corral.api import Condition, find_condition, set_condition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def test_a_new_condition_is_appended() -> None:
    ready = Condition(type="Ready", status="True", reason="Booted", last_transition_time=T0)
    out = set_condition([ready], "Scheduled", "False", "Unschedulable", "full", 3, T1)
    assert out[0] == ready
    assert out[1] == Condition(
        type="Scheduled",
        status="False",
        reason="Unschedulable",
        message="full",
        observed_generation=3,
        last_transition_time=T1,
    )


def test_the_same_observation_is_equal() -> None:
    first = set_condition([], "Scheduled", "False", "Unschedulable", "full", 1, T0)
    assert set_condition(first, "Scheduled", "False", "Unschedulable", "full", 1, T1) == first


def test_a_new_message_keeps_the_transition_time() -> None:
    first = set_condition([], "Scheduled", "False", "Unschedulable", "full", 1, T0)
    second = set_condition(first, "Scheduled", "False", "Unschedulable", "fuller", 1, T1)
    assert second != first
    assert second[0].last_transition_time == T0


def test_a_flip_moves_the_transition_time() -> None:
    first = set_condition([], "Scheduled", "False", "Unschedulable", "full", 1, T0)
    second = set_condition(first, "Scheduled", "True", "Placed", "on a", 1, T1)
    assert len(second) == 1
    assert second[0].last_transition_time == T1


def test_find() -> None:
    conditions = set_condition([], "Scheduled", "True", "Placed", "", 1, T0)
    assert find_condition(conditions, "Scheduled") is conditions[0]
    assert find_condition(conditions, "Ready") is None
