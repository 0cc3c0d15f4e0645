"""What every Corral resource shares: the model base, object metadata, conditions, times.

Owns the JSON conventions of the Kubernetes API (camelCase names with upper-case
acronyms, RFC 3339 second-precision times, Go duration strings) and the markers
the models use to ask `corral.api.crd` for CEL transition rules. The resource
modules (`_sandbox`, `_volume`, `_network`) build on it; nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

GROUP = "corral.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "corral"

# Words Kubernetes spells in capitals inside camelCase names (podIP, bootID, memoryMiB).
_ACRONYMS = {"id": "ID", "ip": "IP", "mib": "MiB", "cidr": "CIDR"}
# The key under which a field's schema carries its transition marker to the generator.
TRANSITION_KEY = "x-corral-transition"


def camel(name: str) -> str:
    """`boot_id` → `bootID`: the JSON name of a snake_case field."""
    first, *rest = name.split("_")
    return first + "".join(_ACRONYMS.get(word, word.capitalize()) for word in rest)


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, immutable.

    Unknown fields are ignored rather than rejected, as Kubernetes clients do, so an
    operator keeps reading objects written by a newer version of the schema.
    Attribute docstrings become the schema's descriptions, so they are the API docs.
    """

    model_config = ConfigDict(
        alias_generator=camel,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


def immutable() -> dict[str, Any]:
    """Field marker: the value cannot change (nor appear or vanish) after creation."""
    return {TRANSITION_KEY: "immutable"}


def set_once() -> dict[str, Any]:
    """Field marker: the value may be set later, but once set it never changes or goes."""
    return {TRANSITION_KEY: "set-once"}


def map_list(*keys: str) -> dict[str, Any]:
    """Field marker: a list of objects keyed by `keys`, merged by key (server-side apply,
    strategic merge) rather than replaced whole."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


@dataclass(frozen=True)
class Rule:
    """One `x-kubernetes-validations` entry: a CEL expression and the message when false."""

    rule: str
    message: str
    field_path: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


def validations(*rules: Rule) -> dict[str, Any]:
    """Schema extra carrying CEL rules, for a `Field` or a model's `json_schema_extra`."""
    return {"x-kubernetes-validations": [rule.to_json() for rule in rules]}


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]
"""A `metav1.Time`: RFC 3339 in UTC at second precision, as the API server writes times."""

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"


def _parse_duration(value: object) -> object:
    """Accept a Go duration string (`1h30m`, `90s`, `500ms`); anything else is left to pydantic."""
    if not isinstance(value, str):
        return value
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration like 30m, 1h30m or 90s")
    parts = _DURATION_PART.findall(value)
    return timedelta(seconds=sum(int(n) * _DURATION_UNITS[unit] for n, unit in parts))


def _format_duration(value: timedelta) -> str:
    millis = round(value.total_seconds() * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    seconds, millis = divmod(millis, 1000)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "maxLength": 64}),
]
"""A `metav1.Duration`: a Go duration string on the wire (`1h30m`), a `timedelta` in Python.
Only h, m, s and ms units with whole numbers: what CEL's `duration()` and Python agree on."""


class Condition(ApiModel):
    """An observation of one aspect of the resource (`metav1.Condition`)."""

    type: str = Field(
        max_length=316, pattern=r"^([a-z0-9.-]+/)?[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$"
    )
    """The aspect observed, in CamelCase: Scheduled, ImageReady, Booted, Ready, Unsupported."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(
        max_length=1024, min_length=1, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    )
    """Why the status is what it is, in CamelCase; stable, so programs can match it."""
    message: str = Field(default="", max_length=32768)
    """Details for humans."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The `metadata.generation` the condition was computed from."""
    last_transition_time: Time
    """When the status last changed (not when it was last checked)."""


def conditions_field() -> Any:
    """The `status.conditions` field every resource has: at most 16, one per type."""
    return Field(default_factory=list, max_length=16, json_schema_extra=map_list("type"))


class ObjectMeta(ApiModel):
    """The parts of `metadata` the controllers read; the API server owns the rest."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None


@dataclass(frozen=True)
class PrinterColumn:
    """An `additionalPrinterColumns` entry: what `kubectl get` shows for the resource."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


class Resource(ApiModel):
    """A top-level custom resource; subclasses add `kind`, `spec` and `status` fields.

    The class variables are the CRD's names and presentation, kept beside the model so
    the model stays the single source of the CRD.
    """

    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    printer_columns: ClassVar[tuple[PrinterColumn, ...]]

    api_version: Literal["corral.dev/v1alpha1"] = "corral.dev/v1alpha1"
    metadata: ObjectMeta = ObjectMeta()
