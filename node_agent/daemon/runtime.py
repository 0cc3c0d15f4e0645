"""The node's VMs, run through the embedded SDK: the same supervisors, state store and images.

A Sandbox resource's VM is the embedded sandbox named `k-<metadata.uid>`, so after a
restart the node agent finds (re-adopts) its VMs by resource UID, and a VM whose UID no
resource carries any more is garbage. VMs are detached: they outlive the node agent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from corral import CorralError, InvalidConfig, RegistryAuth
from corral import Sandbox as Handle
from corral import remove as remove_sandbox
from corral._paths import Paths
from corral._state import SandboxRecord, StateStore
from corral.api import Sandbox
from corral.node_agent.daemon.lifecycle import Observed

PREFIX = "k-"
HOST_SOURCES = ("/", ".", "bind:")
"""How the embedded runtime spells sources on the host: refused for cluster sandboxes."""
STOP_TIMEOUT = 10.0


def local_name(uid: str) -> str:
    """The embedded sandbox name of a resource UID (a UUID fits a DNS label with the prefix)."""
    return PREFIX + uid.lower()


def resource_uid(name: str) -> str | None:
    """The resource UID a local sandbox belongs to, or None when the node agent did not make it."""
    return name[len(PREFIX) :] if name.startswith(PREFIX) else None


@dataclass(frozen=True)
class LocalVM:
    """A local sandbox of a resource: what the lifecycle needs plus where its API listens."""

    observed: Observed
    socket: Path
    qemu_pid: int


class LocalRuntime:
    """Boots, observes and removes this node's VMs. Every call is keyed by resource UID."""

    def __init__(self, paths: Paths) -> None:
        self._paths = paths

    @cached_property
    def _store(self) -> StateStore:
        """Read at every poll: opened (and its schema checked) once, on first use."""
        return StateStore(self._paths.state_db)

    def observe(self) -> dict[str, LocalVM]:
        """Every VM the node agent made, by resource UID, from one read of the state store."""
        found = {}
        for record in self._store.list():
            uid = resource_uid(record.name)
            if uid is not None:
                found[uid] = self._vm(record)
        return found

    def _vm(self, record: SandboxRecord) -> LocalVM:
        status, reason = record.effective_status
        observed = Observed(
            status=status,
            reason=reason,
            boot_id=record.boot_id,
            accelerator=record.accel,
            started_at=record.started_at,
            main_exit=record.main_exit,
        )
        socket = self._paths.sandbox_dir(record.uid) / "api.sock"
        return LocalVM(observed, socket, record.qemu_pid)

    async def boot(
        self, sandbox: Sandbox, registry_auths: Mapping[str, RegistryAuth] | None = None
    ) -> None:
        """Boot the resource's VM; raises the SDK's ImageError, BootError or InvalidConfig."""
        spec = sandbox.spec
        if spec.image.startswith(HOST_SOURCES):
            # The CRD refuses these too; a node never trusts that alone.
            raise InvalidConfig(
                "spec.image", spec.image, "a cluster sandbox boots an image, never a node's path"
            )
        builder = (
            Handle.builder(local_name(sandbox.metadata.uid))
            .image(spec.image)
            .cpus(spec.resources.cpus)
            .memory(spec.resources.memory_mib)
            .disk(spec.resources.disk_mib)
            .env({item.name: item.value for item in spec.env})
            .pull_policy(spec.image_pull_policy)
        )
        if spec.command is not None:
            builder.entrypoint(spec.command)
        if spec.args is not None:
            builder.cmd(spec.args)
        if spec.working_dir is not None:
            builder.workdir(spec.working_dir)
        if registry_auths:
            builder.registry_auth(registry_auths)
        handle = await builder.create_detached()
        await handle.close()

    async def stop(self, uid: str) -> None:
        """Stop the VM gracefully (the guest gets a shutdown), then remove it."""
        with contextlib.suppress(CorralError, TimeoutError):
            handle = await Handle.get(local_name(uid))
            try:
                await handle.stop_and_wait(STOP_TIMEOUT)
            finally:
                await handle.close()
        self.remove(uid)

    def remove(self, uid: str) -> None:
        """Kill the VM if it still runs and delete its files and record; no VM is fine."""
        with contextlib.suppress(CorralError):
            remove_sandbox(local_name(uid), force=True)
