"""Node records from node-agent Leases: who can run sandboxes, with what, and whether alive.

Each node agent keeps one `coordination.k8s.io` Lease in the operator's namespace, named
after its node and labelled `corral.dev/node-agent`, and renews it as its heartbeat.
Its annotations carry what it registered (vCPUs, memory, accelerator, version); its
other labels are the node's labels that a Sandbox's nodeSelector matches. A node whose
lease was last renewed longer ago than the grace period is not ready. `parse_lease()` is
pure; `list_nodes()` is the one API call. The Sandbox handler calls both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio import client as k8s

from corral.api import (
    ACCELERATOR_ANNOTATION,
    AGENT_LABEL,
    CPUS_ANNOTATION,
    MEMORY_ANNOTATION,
    VERSION_ANNOTATION,
)
from corral.operator.placement import NodeRecord, Usage

logger = logging.getLogger(__name__)


class NodeRecordError(ValueError):
    """A Lease that does not describe a node; the message names the field and value."""


def parse_lease(lease: Mapping[str, Any], now: datetime, grace: timedelta) -> NodeRecord:
    """The node a Lease (as JSON) registers; not ready when unrenewed for longer than `grace`."""
    meta = lease.get("metadata") or {}
    name = meta.get("name", "")
    annotations = meta.get("annotations") or {}
    cpus = _integer(name, annotations, CPUS_ANNOTATION)
    memory = _integer(name, annotations, MEMORY_ANNOTATION)
    accelerator = annotations.get(ACCELERATOR_ANNOTATION)
    if accelerator not in ("kvm", "tcg"):
        raise NodeRecordError(
            f"lease {name}: annotation {ACCELERATOR_ANNOTATION}={accelerator!r} "
            "is neither 'kvm' nor 'tcg'"
        )
    renewed = (lease.get("spec") or {}).get("renewTime")
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != AGENT_LABEL}
    return NodeRecord(
        name=name,
        capacity=Usage(cpus, memory),
        accelerator=accelerator,
        ready=renewed is not None and now - _time(name, renewed) <= grace,
        labels=labels,
        version=annotations.get(VERSION_ANNOTATION, ""),
    )


async def list_nodes(
    api: k8s.ApiClient, namespace: str, now: datetime, grace: timedelta
) -> list[NodeRecord]:
    """Every node registered in `namespace`; malformed leases are logged and left out."""
    leases = await k8s.CoordinationV1Api(api).list_namespaced_lease(
        namespace, label_selector=AGENT_LABEL
    )
    records = []
    for lease in leases.items:
        try:
            records.append(parse_lease(api.sanitize_for_serialization(lease), now, grace))
        except NodeRecordError as exc:
            logger.warning("ignoring a node: %s", exc)
    return records


def _integer(name: str, annotations: Mapping[str, str], key: str) -> int:
    value = annotations.get(key)
    if value is None or not value.isdigit():
        raise NodeRecordError(f"lease {name}: annotation {key}={value!r} is not a whole number")
    return int(value)


def _time(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise NodeRecordError(f"lease {name}: spec.renewTime={value!r} is not a time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
