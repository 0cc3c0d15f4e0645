"""Manifests, indexes and image configs: parsed from untrusted JSON and validated.

Pure. A registry is untrusted, so every document is bounded in size before it is
parsed, every field that is used is type-checked, and every digest is well formed.
OCI and Docker v2 media types are both accepted; anything else is an ImageError that
names the document and the field.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from typing import Any

from corral._errors import ImageError
from corral.node_agent.images.reference import validate_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
CONFIG_TYPES = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "tar",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
}

MAX_MANIFEST_BYTES = 4 << 20
"""The limit the distribution project itself enforces on manifests."""
MAX_CONFIG_BYTES = 8 << 20
MAX_LAYERS = 256
MAX_INDEX_ENTRIES = 1024
MAX_BLOB_BYTES = 64 << 30

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str = ""  # "os/architecture[/variant]" in index entries, else ""


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config a sandbox uses; empty means "not set"."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    created: str = ""
    """RFC 3339 time the image was built, as the config says it."""
    architecture: str = ""
    os: str = ""


def host_platform() -> str:
    """The platform an index entry must match: linux and this host's architecture."""
    machine = platform.machine()
    return f"linux/{_ARCHITECTURES.get(machine, machine)}"


def _load(data: bytes, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise ImageError(f"{what} is {len(data)} bytes, more than the {limit} allowed")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ImageError(f"{what} is not a JSON object")
    return document


def _descriptor(value: object, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ImageError(f"{what}: not a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise ImageError(f"{what}: mediaType and digest must be strings")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_BYTES:
        raise ImageError(f"{what}: size {size!r} is not an integer in 0..{MAX_BLOB_BYTES}")
    try:
        validate_digest(digest)
    except ImageError as exc:
        raise ImageError(f"{what}: {exc}") from None
    return Descriptor(media_type, digest, size, _platform(value.get("platform"), what))


def _platform(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, dict):
        raise ImageError(f"{what}: platform is not an object")
    parts = [value.get("os"), value.get("architecture")]
    if value.get("variant"):
        parts.append(value.get("variant"))
    if not all(isinstance(part, str) for part in parts):
        raise ImageError(f"{what}: platform os/architecture/variant must be strings")
    return "/".join(str(part) for part in parts)


def _media_type(document: dict[str, Any], declared: str, what: str) -> str:
    if document.get("schemaVersion") != 2:
        raise ImageError(f"{what}: schemaVersion {document.get('schemaVersion')!r} is not 2")
    inner = document.get("mediaType", declared)
    if declared and inner != declared:
        raise ImageError(f"{what}: served as {declared!r} but says it is {inner!r}")
    if not isinstance(inner, str):
        raise ImageError(f"{what}: mediaType must be a string")
    return inner


@dataclass(frozen=True)
class Index:
    """An OCI index or a Docker manifest list: one manifest per platform."""

    entries: tuple[Descriptor, ...]

    def pick(self, wanted: str, what: str) -> Descriptor:
        """The manifest for `wanted` ("linux/amd64"); variants are not compared."""
        for entry in self.entries:
            if (
                entry.media_type in MANIFEST_TYPES
                and entry.platform.split("/")[:2] == (wanted.split("/")[:2])
            ):
                return entry
        available = ", ".join(sorted({e.platform or "?" for e in self.entries})) or "none"
        raise ImageError(f"{what}: no image for {wanted} (available: {available})")


def parse(data: bytes, declared: str, what: str) -> Manifest | Index:
    """Parse a manifest or an index served with media type `declared` ("" if unknown)."""
    document = _load(data, what, MAX_MANIFEST_BYTES)
    media_type = _media_type(document, declared, what)
    if media_type in INDEX_TYPES:
        return _index(document, what)
    if media_type in MANIFEST_TYPES:
        return _manifest(document, what)
    raise ImageError(f"{what}: unsupported manifest media type {media_type!r}")


def _manifest(document: dict[str, Any], what: str) -> Manifest:
    config = _descriptor(document.get("config"), f"{what} config")
    if config.media_type not in CONFIG_TYPES:
        raise ImageError(f"{what}: unsupported config media type {config.media_type!r}")
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        raise ImageError(f"{what}: layers must be a list of at most {MAX_LAYERS}")
    parsed = tuple(_descriptor(layer, f"{what} layer {i}") for i, layer in enumerate(layers))
    for i, layer in enumerate(parsed):
        if layer.media_type not in LAYER_TYPES:
            raise ImageError(f"{what} layer {i}: unsupported media type {layer.media_type!r}")
    return Manifest(config, parsed)


def _index(document: dict[str, Any], what: str) -> Index:
    entries = document.get("manifests")
    if not isinstance(entries, list) or len(entries) > MAX_INDEX_ENTRIES:
        raise ImageError(f"{what}: manifests must be a list of at most {MAX_INDEX_ENTRIES}")
    return Index(tuple(_descriptor(entry, f"{what} entry {i}") for i, entry in enumerate(entries)))


def parse_config(data: bytes, what: str) -> ImageConfig:
    document = _load(data, what, MAX_CONFIG_BYTES)
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ImageError(f"{what}: config is not an object")
    return ImageConfig(
        entrypoint=_strings(config.get("Entrypoint"), f"{what} Entrypoint"),
        cmd=_strings(config.get("Cmd"), f"{what} Cmd"),
        env=_strings(config.get("Env"), f"{what} Env"),
        workdir=_string(config.get("WorkingDir"), f"{what} WorkingDir"),
        user=_string(config.get("User"), f"{what} User"),
        created=_string(document.get("created"), f"{what} created"),
        architecture=_string(document.get("architecture"), f"{what} architecture"),
        os=_string(document.get("os"), f"{what} os"),
    )


def _strings(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ImageError(f"{what} must be a list of strings, not {value!r:.80}")
    return list(value)


def _string(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageError(f"{what} must be a string, not {value!r:.80}")
    return value
