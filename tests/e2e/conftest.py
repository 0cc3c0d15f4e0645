"""One whole cluster (corral.testing.cluster) per test module: booting VMs under TCG is
the slow part, so a module's tests share its node agents and clean up after themselves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dependencies
import pytest

from corral.testing.cluster import Cluster, run_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        with run_cluster(tmp_path_factory.mktemp("cluster")) as running:
            yield running
    except FileNotFoundError as exc:
        dependencies.missing(str(exc))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """The condition of `type_` in the object's status; fails the test when absent."""
    conditions = obj.get("status", {}).get("conditions", [])
    found = next((c for c in conditions if c["type"] == type_), None)
    assert found is not None, f"no {type_} condition in {obj.get('status')}"
    return found
