"""The sandbox configuration: the one model every layer (SDK, CLI, supervisor) shares."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from corral._errors import InvalidConfig

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
DEFAULT_IMAGE = "default"
MAX_CPUS = 64
MIN_MEMORY_MIB = 64
MAX_MEMORY_MIB = 256 * 1024


class SandboxConfig(BaseModel):
    """What a sandbox is made of. Units are in the field names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    cpus: int = Field(default=1, ge=1, le=MAX_CPUS)
    memory_mib: int = Field(default=256, ge=MIN_MEMORY_MIB, le=MAX_MEMORY_MIB)
    disk_mib: int = Field(default=2048, ge=64, le=1024 * 1024)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    kernel: str | None = None
    pull_policy: Literal["Always", "IfMissing", "Never"] = "IfMissing"
    """When to ask the registry for an image reference: every time, only when the image
    is not in the local store, or never (a missing image is then an error)."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValueError(f"environment variable name {key!r} is not valid")
        return env

    @field_validator("workdir")
    @classmethod
    def _absolute_workdir(cls, workdir: str | None) -> str | None:
        if workdir is not None and not workdir.startswith("/"):
            raise ValueError("must be an absolute path")
        return workdir

    @field_validator("cpus")
    @classmethod
    def _host_cpus(cls, cpus: int) -> int:
        available = os.cpu_count() or 1
        if cpus > available:
            raise ValueError(f"this host has only {available} CPUs")
        return cpus


def build_config(**values: object) -> SandboxConfig:
    """Validate settings, turning pydantic's error into one that names the field."""
    try:
        return SandboxConfig.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "config"
        raise InvalidConfig(field, error.get("input"), error["msg"]) from None
