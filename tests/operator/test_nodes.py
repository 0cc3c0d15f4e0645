"""Node records from node-agent Leases: capacity, accelerator, labels, version and
readiness by the grace period; malformed leases are named errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.operator.nodes import NodeRecordError, parse_lease
from corral.operator.placement import Usage

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=40)


def lease(renewed: str | None = "2026-01-01T11:59:50.000000Z", **annotations: str) -> Any:
    return {
        "metadata": {
            "name": "n1",
            "labels": {"corral.dev/node-agent": "true", "zone": "a"},
            "annotations": {
                "corral.dev/cpus": "8",
                "corral.dev/memory-mib": "16384",
                "corral.dev/accelerator": "kvm",
                "corral.dev/version": "0.1.0",
                **annotations,
            },
        },
        "spec": {"holderIdentity": "n1", "renewTime": renewed} if renewed else {},
    }


def test_a_fresh_lease_is_a_ready_node() -> None:
    node = parse_lease(lease(), NOW, GRACE)
    assert node.name == "n1"
    assert node.capacity == Usage(8, 16384)
    assert node.accelerator == "kvm"
    assert node.version == "0.1.0"
    assert node.ready
    assert node.allocated == Usage()


def test_the_agent_label_is_not_a_node_label() -> None:
    assert dict(parse_lease(lease(), NOW, GRACE).labels) == {"zone": "a"}


@pytest.mark.parametrize(
    ("renewed", "ready"),
    [
        ("2026-01-01T11:59:20Z", True),  # exactly the grace period ago
        ("2026-01-01T11:59:19Z", False),
        ("2026-01-01T11:59:20.5+00:00", True),
        ("2026-01-01T11:59:00", False),  # no zone: UTC, as the API server writes
        (None, False),  # never renewed
    ],
)
def test_readiness_is_a_renewal_within_the_grace_period(renewed: str | None, ready: bool) -> None:
    assert parse_lease(lease(renewed), NOW, GRACE).ready is ready


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"corral.dev/cpus": "many"}, "lease n1: annotation corral.dev/cpus='many' is not a whole"),
        ({"corral.dev/memory-mib": "-1"}, "annotation corral.dev/memory-mib='-1' is not a whole"),
        ({"corral.dev/accelerator": "xen"}, "corral.dev/accelerator='xen' is neither 'kvm' nor"),
    ],
)
def test_malformed_annotations_are_named(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(NodeRecordError, match=re.escape(message)):
        parse_lease(lease(**annotations), NOW, GRACE)


def test_a_missing_annotation_is_named() -> None:
    obj = lease()
    del obj["metadata"]["annotations"]["corral.dev/cpus"]
    with pytest.raises(NodeRecordError, match=re.escape("annotation corral.dev/cpus=None")):
        parse_lease(obj, NOW, GRACE)


def test_a_malformed_renew_time_is_named() -> None:
    with pytest.raises(
        NodeRecordError, match=re.escape("spec.renewTime='yesterday' is not a time")
    ):
        parse_lease(lease("yesterday"), NOW, GRACE)
