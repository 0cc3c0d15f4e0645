"""Which of this node's sandboxes run here, by their Kubernetes namespace and name.

The reconciler owns the answer (it knows both the resources it watches and the VMs it
runs); the HTTPS API and the metrics collector only read it through `SandboxDirectory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class LocalSandbox:
    """A running VM of a Sandbox resource placed on this node."""

    namespace: str
    name: str
    uid: str
    """The Sandbox resource's metadata.uid."""
    socket: Path
    """The supervisor's unix socket: speaks the Corral protocol (docs/protocol.md)."""
    qemu_pid: int
    accelerator: str
    boot_id: str


class SandboxDirectory(Protocol):
    """Read-only view of the running sandboxes, for the API server and the metrics."""

    def find(self, namespace: str, name: str) -> LocalSandbox | None:
        """The running sandbox of that resource, or None when it does not run here."""
        ...

    def running(self) -> list[LocalSandbox]:
        """Every sandbox running on this node."""
        ...
