"""A minimal kopf operator for the acceptance test: create/update/delete handlers,
a finalizer (kopf adds one because of the delete handler) and status patches.

`run()` runs it in the calling thread until `stop` is set; `build_registry()`
keeps the handlers out of kopf's global registry so tests stay independent.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from .manifests import GROUP, PLURAL, VERSION

FINALIZER = "test.corral.dev/cleanup"


@dataclass
class Journal:
    """What the handlers saw, for the test to assert on."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def build_registry(
    server: str, ca_path: Path, token: str, journal: Journal
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.watching.server_timeout = 30
        settings.watching.client_timeout = 40
        settings.networking.request_timeout = 10

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=server, ca_path=str(ca_path), token=token, default_namespace="default"
        )

    @kopf.on.create(GROUP, VERSION, PLURAL, id="created", registry=registry)
    def created(
        name: str, body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any
    ) -> dict[str, Any]:
        journal.created.append(name)
        kopf.info(body, reason="Created", message="the widget is ready")
        patch.status["phase"] = "Ready"
        patch.status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Created"}]
        return {"size": spec["size"]}

    @kopf.on.update(GROUP, VERSION, PLURAL, id="updated", field="spec.size", registry=registry)
    def updated(name: str, new: Any, patch: kopf.Patch, **_: Any) -> None:
        journal.updated.append(name)
        patch.status["observedSize"] = new

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="deleted", registry=registry)
    def deleted(name: str, **_: Any) -> None:
        journal.deleted.append(name)

    return registry


def run(registry: kopf.OperatorRegistry, stop: threading.Event, ready: threading.Event) -> None:
    """Run the operator on a fresh loop in this thread, watching the default namespace."""
    asyncio.run(
        kopf.operator(
            registry=registry,
            standalone=True,
            namespaces=["default"],
            stop_flag=stop,
            ready_flag=ready,
        )
    )
