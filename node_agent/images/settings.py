"""How to reach each registry: TLS or plain HTTP, which CA, which credentials.

Read from two files at the boundary and then passed explicitly:
- `$CORRAL_HOME/registries.json`: `{"host[:port]": {"insecure": true, "ca_file": "…"}}`.
  A registry is spoken to over plain HTTP only when it is listed as insecure there.
- Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
  the `auths` section (parsed by the SDK's `registry_auths_from_docker_config`).
Credentials given to one pull (`RegistryAuth`) are laid over these for that pull only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral._errors import ImageError
from corral._images import RegistryAuth, registry_auths_from_docker_config

MAX_SETTINGS_BYTES = 1 << 20


@dataclass(frozen=True)
class RegistryHost:
    insecure: bool = False
    """Plain HTTP instead of TLS."""
    ca_file: Path | None = None
    """PEM bundle of the CAs trusted for this registry (instead of the system's)."""


@dataclass(frozen=True)
class RegistrySettings:
    hosts: Mapping[str, RegistryHost] = field(default_factory=dict)
    credentials: Mapping[str, RegistryAuth] = field(default_factory=dict)
    concurrency: int = 3
    """Layers downloaded at once."""

    def host(self, registry: str) -> RegistryHost:
        return self.hosts.get(registry, RegistryHost())


def load(home: Path) -> RegistrySettings:
    """Settings from `home`/registries.json and the user's Docker config (both optional)."""
    docker = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    return RegistrySettings(
        hosts=_read_hosts(home / "registries.json"), credentials=read_docker_auths(docker)
    )


def _read_json(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SETTINGS_BYTES + 1)
    except FileNotFoundError:
        return {}
    if len(data) > MAX_SETTINGS_BYTES:
        raise ImageError(f"{path} is larger than {MAX_SETTINGS_BYTES} bytes")
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ImageError(f"{path} is not a JSON object")
    return document


def _read_hosts(path: Path) -> dict[str, RegistryHost]:
    hosts = {}
    for name, value in _read_json(path).items():
        if not isinstance(value, dict):
            raise ImageError(f"{path}: entry {name!r} is not an object")
        insecure, ca_file = value.get("insecure", False), value.get("ca_file")
        if not isinstance(insecure, bool) or not isinstance(ca_file, str | None):
            raise ImageError(f"{path}: entry {name!r}: insecure is a bool, ca_file a path")
        hosts[name] = RegistryHost(insecure, Path(ca_file) if ca_file else None)
    return hosts


def read_docker_auths(path: Path) -> dict[str, RegistryAuth]:
    """The `auths` of a Docker config file, keyed by registry as references name it."""
    return registry_auths_from_docker_config(_read_json(path), source=str(path))
