"""The Sandbox resource: one microVM, placed on a node and run by that node's agent.

The spec mirrors what the runtime supports (`corral._config.SandboxConfig`), spelled
the Kubernetes way; its bounds are the runtime's. Everything that shapes the booted
VM is immutable: a change would need a new VM, and Corral never silently replaces
one. What only matters for future pulls, restarts and deadlines stays mutable.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from corral._config import MAX_CPUS, MAX_MEMORY_MIB, MIN_MEMORY_MIB
from corral.api._meta import (
    ApiModel,
    Condition,
    Duration,
    PrinterColumn,
    Resource,
    Rule,
    Time,
    conditions_field,
    immutable,
    map_list,
    set_once,
    validations,
)

MIN_DISK_MIB = 64
MAX_DISK_MIB = 1024 * 1024
_PATH = r"^/"
_IMAGE = r"^[^/.\s]\S*$"
"""A reference: no leading '/' or '.', which the embedded runtime reads as a host path."""
_NOT_A_HOST_PATH = Rule(
    "!self.startsWith('bind:')",
    "must be an image reference, not a directory of the node (bind:)",
)


class LocalObjectReference(ApiModel):
    """A reference to an object by name in the same namespace."""

    name: str = Field(min_length=1, max_length=253)
    """The object's name."""


class Resources(ApiModel):
    """The VM's size: whole vCPUs and MiB, the units QEMU is given.

    Memory is an integer in MiB rather than a Kubernetes quantity ("512Mi") so the
    schema itself can bound it and no rounding happens between the resource and the VM.
    """

    cpus: int = Field(default=1, ge=1, le=MAX_CPUS)
    """Virtual CPUs."""
    memory_mib: int = Field(default=256, ge=MIN_MEMORY_MIB, le=MAX_MEMORY_MIB)
    """Guest memory in MiB."""
    disk_mib: int = Field(default=2048, ge=MIN_DISK_MIB, le=MAX_DISK_MIB)
    """Size of the writable root layer in MiB (sparse on the node)."""


class EnvVar(ApiModel):
    """One environment variable of the sandbox's processes."""

    name: str = Field(min_length=1, max_length=256, pattern=r"^[^=]+$")
    """The variable's name; it cannot contain '='."""
    value: str = Field(default="", max_length=8192)
    """The variable's value."""


class VolumeMount(ApiModel):
    """A Volume of the same namespace mounted into the sandbox."""

    name: str = Field(min_length=1, max_length=253)
    """The Volume resource's name."""
    mount_path: str = Field(min_length=2, max_length=4096, pattern=r"^/.")
    """Where the volume appears in the guest; absolute, not the root."""
    read_only: bool = False
    """Mount read-only."""


_ONE_MOUNT_PER_VOLUME = Rule(
    "!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, w.name == v.name))",
    "a volume can be mounted only once per sandbox",
    field_path=".volumes",
)


class SandboxSpec(ApiModel):
    """The desired sandbox. Fields that shape the booted VM are immutable."""

    model_config = ConfigDict(json_schema_extra=validations(_ONE_MOUNT_PER_VOLUME))

    image: str = Field(
        min_length=1,
        max_length=1024,
        pattern=_IMAGE,
        json_schema_extra={**immutable(), **validations(_NOT_A_HOST_PATH)},
    )
    """The OCI image reference (`registry/repo:tag` or `…@sha256:…`) the root disk is built from,
    or `default` (the node's built-in image). Never a path on the node: the embedded
    runtime's local sources (`/dir`, `./dir`, `bind:/dir`) would hand a tenant the node's
    files, so the schema refuses them."""
    image_pull_policy: Literal["Always", "IfMissing", "Never"] = "IfMissing"
    """When the node pulls the image: on every boot, only when not cached, or never."""
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=map_list("name"),
    )
    """Secrets (type kubernetes.io/dockerconfigjson) holding registry credentials."""
    resources: Resources = Field(default=Resources(), json_schema_extra=immutable())
    """vCPUs, memory and root-disk size; fixed at boot."""
    command: list[str] | None = Field(default=None, max_length=256, json_schema_extra=immutable())
    """Replaces the image's Entrypoint."""
    args: list[str] | None = Field(default=None, max_length=256, json_schema_extra=immutable())
    """Replaces the image's Cmd."""
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        json_schema_extra={**map_list("name"), **immutable()},
    )
    """Environment of the main process, added to the image's."""
    working_dir: str | None = Field(
        default=None, max_length=4096, pattern=_PATH, json_schema_extra=immutable()
    )
    """Absolute working directory of the main process; the image's by default."""
    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=32, json_schema_extra=immutable()
    )
    """Labels a node must carry for the sandbox to be placed there."""
    restart_policy: Literal["Never", "OnFailure", "Always"] = "Never"
    """What happens when the main process exits: a sandbox is a run, so Never by default."""
    max_duration: Duration | None = Field(
        default=None,
        json_schema_extra=validations(
            Rule("duration(self) >= duration('1s')", "must be at least 1s")
        ),
    )
    """Lifetime after which the sandbox is stopped whatever its restart policy (`30m`, `2h`).
    It may be changed to extend or shorten a running sandbox's deadline."""
    volumes: list[VolumeMount] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={**map_list("mountPath"), **immutable()},
    )
    """Volumes to mount. Not supported yet: the sandbox gets an `Unsupported` condition."""
    network_policy_name: str | None = Field(default=None, min_length=1, max_length=253)
    """The NetworkPolicy of the same namespace that governs egress; public-only when unset.
    Not supported yet: the sandbox gets an `Unsupported` condition."""


class SandboxStatus(ApiModel):
    """What the operator and the node agent observed; written through the status subresource."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    """Pending until booted, Running, Succeeded or Failed once stopped, Unknown when the node
    is lost."""
    conditions: list[Condition] = conditions_field()
    """Scheduled, ImageReady, Booted, Ready and Unsupported, by Kubernetes conventions."""
    node_name: str | None = Field(
        default=None, min_length=1, max_length=253, json_schema_extra=set_once()
    )
    """The node the sandbox is placed on; set once by the operator, never changed."""
    boot_id: str | None = Field(default=None, max_length=64)
    """Identifies the current boot of the VM: a new value means a new VM, not a re-adoption."""
    accelerator: Literal["kvm", "tcg"] | None = None
    """How the VM is virtualized on its node."""
    ip: str | None = Field(default=None, max_length=45)
    """The sandbox's address on the node's sandbox network."""
    started_at: Time | None = None
    """When the current boot's main process started."""


class Sandbox(Resource):
    """A microVM sandbox booted from an OCI image on one node of the cluster."""

    plural: ClassVar[str] = "sandboxes"
    short_names: ClassVar[tuple[str, ...]] = ("sbx",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
        PrinterColumn(
            "Ready",
            "string",
            '.status.conditions[?(@.type=="Ready")].status',
            "Whether the sandbox accepts exec.",
        ),
        PrinterColumn("Node", "string", ".status.nodeName", "The node it is placed on."),
        PrinterColumn("Image", "string", ".spec.image", "The OCI image."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("IP", "string", ".status.ip", "The sandbox's address.", priority=1),
        PrinterColumn("Boot ID", "string", ".status.bootID", "The current boot.", priority=1),
    )

    kind: Literal["Sandbox"] = "Sandbox"
    spec: SandboxSpec
    status: SandboxStatus = SandboxStatus()
