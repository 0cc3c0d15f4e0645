"""Wire conventions shared by every resource: names, times, durations, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from corral.api import Condition, ObjectMeta
from corral.api._meta import Duration, camel


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("image", "image"),
        ("image_pull_policy", "imagePullPolicy"),
        ("boot_id", "bootID"),
        ("memory_mib", "memoryMiB"),
        ("ip", "ip"),
        ("node_name", "nodeName"),
    ],
)
def test_camel_keeps_kubernetes_acronyms(name: str, wire: str) -> None:
    assert camel(name) == wire


DURATION = TypeAdapter(Duration)


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [("90s", 90, "1m30s"), ("1h30m", 5400, "1h30m"), ("500ms", 0.5, "500ms"), ("0s", 0, "0s")],
)
def test_durations_are_go_strings_on_the_wire(text: str, seconds: float, canonical: str) -> None:
    value = DURATION.validate_python(text)
    assert value == timedelta(seconds=seconds)
    assert DURATION.dump_python(value, mode="json") == canonical


@pytest.mark.parametrize("text", ["1 hour", "1.5h", "-1s", "1d", ""])
def test_durations_reject_what_cel_and_python_may_read_differently(text: str) -> None:
    with pytest.raises(ValidationError):
        DURATION.validate_python(text)


def test_times_are_rfc3339_seconds_in_utc() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    condition = Condition(type="Ready", status="True", reason="Booted", last_transition_time=moment)
    wire = condition.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire == {
        "type": "Ready",
        "status": "True",
        "reason": "Booted",
        "message": "",
        "lastTransitionTime": "2024-05-01T12:00:00Z",
    }
    assert Condition.model_validate(wire).last_transition_time == moment.replace(microsecond=0)


def test_unknown_fields_are_ignored_like_a_kubernetes_client() -> None:
    meta = ObjectMeta.model_validate({"name": "a", "managedFields": [], "selfLink": "x"})
    assert meta.name == "a"


@pytest.mark.parametrize("reason", ["", "not camel", "Trailing,"])
def test_a_condition_reason_is_a_stable_identifier(reason: str) -> None:
    with pytest.raises(ValidationError):
        Condition(
            type="Ready", status="True", reason=reason, last_transition_time=datetime.now(UTC)
        )
