"""How to reach each registry: TLS or plain HTTP, which CA, which credentials.

Read from two files at the boundary and then passed explicitly:
- `$CORRAL_HOME/registries.json`: `{"host[:port]": {"insecure": true, "ca_file": "…"}}`.
  A registry is spoken to over plain HTTP only when it is listed as insecure there.
- Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
  the `auths` section, with base64 `auth` ("user:password") or `username`/`password`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral._errors import ImageError
from corral.node_agent.images.reference import DOCKER_HUB

MAX_SETTINGS_BYTES = 1 << 20


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class RegistryHost:
    insecure: bool = False
    """Plain HTTP instead of TLS."""
    ca_file: Path | None = None
    """PEM bundle of the CAs trusted for this registry (instead of the system's)."""


@dataclass(frozen=True)
class RegistrySettings:
    hosts: Mapping[str, RegistryHost] = field(default_factory=dict)
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
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


def read_docker_auths(path: Path) -> dict[str, Credentials]:
    """The `auths` of a Docker config file, keyed by registry as references name it."""
    auths = _read_json(path).get("auths", {})
    if not isinstance(auths, dict):
        raise ImageError(f"{path}: auths is not an object")
    found = {}
    for key, value in auths.items():
        if not isinstance(value, dict):
            raise ImageError(f"{path}: auths entry {key!r} is not an object")
        credentials = _entry_credentials(value, f"{path}: auths entry {key!r}")
        if credentials is not None:
            found[registry_key(key)] = credentials
    return found


def _entry_credentials(entry: dict[str, object], what: str) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ImageError(f"{what}: auth is not base64 of 'user:password'") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ImageError(f"{what}: auth is not base64 of 'user:password'")
        return Credentials(username, password)
    plain_user, plain_password = entry.get("username"), entry.get("password")
    if isinstance(plain_user, str) and isinstance(plain_password, str):
        return Credentials(plain_user, plain_password)
    return None


def registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host
