"""The Volume resource: named storage a Sandbox mounts, with a fixed size that is its quota.

A disk volume is an ext4 image on one node (so it pins the sandboxes that use it to
that node, recorded once in `status.nodeName`); a tmpfs volume lives in the guest's
memory and is empty at every boot. Behaviour comes with the volumes issue; the
schema is fixed now so manifests written today stay valid.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from corral.api._meta import (
    ApiModel,
    Condition,
    PrinterColumn,
    Resource,
    Rule,
    conditions_field,
    immutable,
    set_once,
    validations,
)

MAX_VOLUME_MIB = 1024 * 1024

_TMPFS_IS_PRIVATE = Rule(
    "self.type != 'tmpfs' || self.accessMode == 'ReadWriteOnce'",
    "a tmpfs volume is private to one sandbox, so its accessMode must be ReadWriteOnce",
    field_path=".accessMode",
)
_DISKS_ONLY_GROW = Rule(
    "self.type == 'tmpfs' || self.sizeMiB >= oldSelf.sizeMiB",
    "a disk volume can grow but not shrink",
    field_path=".sizeMiB",
)


class VolumeSpec(ApiModel):
    """The desired volume."""

    model_config = ConfigDict(json_schema_extra=validations(_TMPFS_IS_PRIVATE, _DISKS_ONLY_GROW))

    type: Literal["disk", "tmpfs"] = Field(default="disk", json_schema_extra=immutable())
    """disk: an ext4 image on a node that outlives sandboxes; tmpfs: guest memory, empty
    at every boot."""
    size_mib: int = Field(ge=1, le=MAX_VOLUME_MIB)
    """The size in MiB, which is also the quota: writes beyond it fail with ENOSPC."""
    access_mode: Literal["ReadWriteOnce", "ReadOnlyMany"] = Field(
        default="ReadWriteOnce", json_schema_extra=immutable()
    )
    """ReadWriteOnce: one sandbox mounts it read-write; ReadOnlyMany: any number mount it
    read-only."""


class VolumeStatus(ApiModel):
    """What the operator observed about the volume."""

    phase: Literal["Pending", "Available", "InUse", "Failed"] | None = None
    """Pending until created on a node, then Available or InUse; Failed when it cannot be."""
    conditions: list[Condition] = conditions_field()
    """Observations by Kubernetes conventions."""
    node_name: str | None = Field(
        default=None, min_length=1, max_length=253, json_schema_extra=set_once()
    )
    """The node holding a disk volume; set once when it is first created."""


class Volume(Resource):
    """Named storage for sandboxes: an ext4 disk on one node, or a tmpfs."""

    plural: ClassVar[str] = "volumes"
    short_names: ClassVar[tuple[str, ...]] = ("cvol",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Type", "string", ".spec.type", "disk or tmpfs."),
        PrinterColumn("Size", "integer", ".spec.sizeMiB", "Size (and quota) in MiB."),
        PrinterColumn("Access", "string", ".spec.accessMode", "How sandboxes may mount it."),
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
        PrinterColumn("Node", "string", ".status.nodeName", "The node holding it."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
    )

    kind: Literal["Volume"] = "Volume"
    spec: VolumeSpec
    status: VolumeStatus = VolumeStatus()
