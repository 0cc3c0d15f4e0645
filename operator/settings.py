"""The operator's settings, passed explicitly from `corral.operator.main` to the handlers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from corral.api import SYSTEM_NAMESPACE


@dataclass(frozen=True)
class OperatorSettings:
    """How one operator replica runs."""

    namespace: str = SYSTEM_NAMESPACE
    """The operator's own namespace, where node agents keep their Leases."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose Sandboxes it handles; all (cluster-wide) when empty."""
    node_grace: timedelta = timedelta(seconds=40)
    """How long a node may go without renewing its Lease before it is not ready
    (kube-controller-manager's node-monitor-grace-period, 40 s)."""
    recheck_interval: float = 10.0
    """Seconds between reconciliations of each Sandbox; an unschedulable one is re-planned."""
    peering: str | None = "corral-operator"
    """The KopfPeering object replicas coordinate through, one active at a time;
    None runs standalone (one replica, or a cluster without the KopfPeering CRD)."""
    priority: int = 0
    """Peering priority: the highest-priority live replica is the active one."""
    kubeconfig: Path | None = None
    """The kubeconfig to use; the in-cluster service account when None."""
