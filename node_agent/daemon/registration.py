"""The node's registration and heartbeat: one Lease per node in the system namespace.

The operator reads these Leases (corral.operator.nodes) to place sandboxes: capacity,
accelerator and version in annotations, the node's labels as labels, liveness from
`spec.renewTime`. Clients read the agent's HTTPS endpoint and certificate from them.
`lease()` is pure; `Heartbeat` does the writes: it registers (create, or take over the
Lease a previous run left), then renews `renewTime` every interval, and registers again
whenever the Lease went missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client as k8s

from corral._kube import MERGE_PATCH
from corral.api import (
    ACCELERATOR_ANNOTATION,
    AGENT_LABEL,
    CA_ANNOTATION,
    CPUS_ANNOTATION,
    ENDPOINT_ANNOTATION,
    MEMORY_ANNOTATION,
    VERSION_ANNOTATION,
)

logger = logging.getLogger(__name__)
HOSTNAME_LABEL = "kubernetes.io/hostname"
"""Every node carries its name as the kubelet labels Nodes, so a nodeSelector can pin one."""


@dataclass(frozen=True)
class Registration:
    """What this node offers and where its API listens."""

    node: str
    cpus: int
    memory_mib: int
    accelerator: str
    version: str
    endpoint: str
    ca_pem: str
    labels: Mapping[str, str] = field(default_factory=dict)
    lease_seconds: int = 40


def micro_time(moment: datetime) -> str:
    """A `metav1.MicroTime` as the API server writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(registration: Registration, now: datetime) -> dict[str, Any]:
    """The Lease object (as JSON) that registers the node, renewed at `now`."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": registration.node,
            "labels": {
                HOSTNAME_LABEL: registration.node,
                **registration.labels,
                AGENT_LABEL: "true",
            },
            "annotations": {
                CPUS_ANNOTATION: str(registration.cpus),
                MEMORY_ANNOTATION: str(registration.memory_mib),
                ACCELERATOR_ANNOTATION: registration.accelerator,
                VERSION_ANNOTATION: registration.version,
                ENDPOINT_ANNOTATION: registration.endpoint,
                CA_ANNOTATION: registration.ca_pem,
            },
        },
        "spec": {
            "holderIdentity": registration.node,
            "leaseDurationSeconds": registration.lease_seconds,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
        },
    }


class Heartbeat:
    """Keeps the node's Lease registered and renewed."""

    def __init__(self, api: k8s.ApiClient, namespace: str, registration: Registration) -> None:
        self._leases = k8s.CoordinationV1Api(api)
        self._namespace = namespace
        self._registration = registration

    async def register(self) -> None:
        """Create the Lease, or replace what a previous run of this node left in it."""
        body: Any = lease(self._registration, datetime.now(UTC))  # sent as JSON as it is
        try:
            await self._leases.create_namespaced_lease(self._namespace, body)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
            existing = await self._leases.read_namespaced_lease(
                self._registration.node, self._namespace
            )
            body["metadata"]["resourceVersion"] = existing.metadata.resource_version
            await self._leases.replace_namespaced_lease(
                self._registration.node, self._namespace, body
            )

    async def renew(self) -> None:
        """Move `renewTime` to now; register again if the Lease is gone."""
        body = {"spec": {"renewTime": micro_time(datetime.now(UTC))}}
        try:
            await self._leases.patch_namespaced_lease(
                self._registration.node, self._namespace, body, **MERGE_PATCH
            )
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
            await self.register()

    async def run(self, interval: float) -> None:
        """Renew every `interval` seconds until cancelled; API errors are logged and retried."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except (k8s.ApiException, OSError) as exc:
                logger.warning("could not renew the node's lease: %s", exc)
