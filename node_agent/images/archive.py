"""`corral image load`: images from an OCI layout directory or an OCI / Docker archive.

Formats: an OCI image layout (a directory with `oci-layout` and `index.json`), the same
layout tarred (`oci-archive:`), and `docker save`'s archive (`manifest.json` with
`Config`, `RepoTags` and `Layers`; `docker-archive:`), plain or compressed. A Docker
archive's image gets an OCI manifest written for it (deterministic JSON, so the same
archive always loads as the same digest and so the same root disk).

An archive is untrusted, like a registry: every entry name is checked (no absolute
paths, no `..`) before anything is used, the entry count is bounded, symlinks and hard
links are followed only inside the archive, JSON documents are bounded in size, and
every blob goes through the blob store, which checks its size and digest before it is
visible. The tar is read in place, never extracted. A layout directory's file that is
a symlink is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from corral._errors import ImageError
from corral.node_agent.images import manifest
from corral.node_agent.images.blobs import Sink
from corral.node_agent.images.manifest import Descriptor
from corral.node_agent.images.reference import parse, validate_digest
from corral.node_agent.images.store import Image, ImageStore

MAX_MEMBERS = 100_000
MAX_LINK_DEPTH = 8
CHUNK = 1 << 20
REF_NAME = "org.opencontainers.image.ref.name"
FULL_NAME = "io.containerd.image.name"


class _Files:
    """Named files of a layout directory or an archive, each opened bounded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if not path.exists():
            raise ImageError(f"{path}: no such file or directory")
        if path.is_file():
            self._index_archive()

    def _index_archive(self) -> None:
        try:
            self.tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 (closed by close())
            for count, member in enumerate(self.tar, 1):
                if count > MAX_MEMBERS:
                    raise ImageError(f"{self.path}: more than {MAX_MEMBERS} entries")
                name = _clean(member.name, f"{self.path}: entry")
                if name in self.members:
                    raise ImageError(f"{self.path}: entry {member.name!r} appears twice")
                self.members[name] = member
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ImageError(f"{self.path} is not a readable tar archive: {exc}") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        if self.tar is not None:
            return name in self.members
        return (self.path / name).is_file()

    @contextlib.contextmanager
    def open(self, name: str, size: int) -> Iterator[IO[bytes]]:
        """The file `name`, which must be a regular file of at most `size` bytes."""
        what = f"{self.path}: {name!r}"
        name = _clean(name, f"{self.path}: file")
        if self.tar is None:
            try:
                fd = os.open(self.path / name, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as exc:
                raise ImageError(f"{what}: cannot open ({exc.strerror})") from None
            with os.fdopen(fd, "rb") as file:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_size > size:
                    raise ImageError(f"{what} is not a regular file of at most {size} bytes")
                yield file
            return
        member = self._member(name, what)
        if member.size > size:
            raise ImageError(f"{what} is {member.size} bytes, more than the {size} expected")
        content = self.tar.extractfile(member)
        assert content is not None  # a regular member always has content
        with content:
            yield content

    def _member(self, name: str, what: str) -> tarfile.TarInfo:
        for _ in range(MAX_LINK_DEPTH):
            member = self.members.get(name)
            if member is None:
                raise ImageError(f"{what} is not in the archive")
            if member.isreg():
                return member
            if not (member.issym() or member.islnk()):
                raise ImageError(f"{what} is not a regular file")
            base = posixpath.dirname(name) if member.issym() else ""
            name = _clean(posixpath.join(base, member.linkname), f"{what}: link")
        raise ImageError(f"{what}: more than {MAX_LINK_DEPTH} links")

    def read(self, name: str, limit: int) -> bytes:
        with self.open(name, limit) as file:
            return file.read(limit + 1)


def _clean(name: str, what: str) -> str:
    """`name` normalised; absolute names and `..` (path traversal) are refused."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts or "\0" in name:
        raise ImageError(f"{what} {name!r} is absolute or escapes the archive")
    return "/".join(parts)


async def load(path: Path, store: ImageStore, tag: str | None = None) -> list[Image]:
    """Import every image of the layout or archive at `path`; the images recorded."""
    files = _Files(path)
    try:
        if files.exists("index.json"):
            found = await _oci(files, store)
        elif files.exists("manifest.json"):
            found = await _docker(files, store)
        else:
            raise ImageError(
                f"{path} is neither an OCI layout (index.json) nor a Docker archive (manifest.json)"
            )
    finally:
        files.close()
    if not found:
        raise ImageError(f"{path} holds no image")
    if tag is not None:
        if len(found) > 1:
            raise ImageError(f"{path} holds {len(found)} images: --tag names only one")
        found = [([tag], found[0][1])]
    images = []
    for names, digest in found:
        if not names:
            raise ImageError(f"{path}: image {digest} has no name in the archive: give a tag")
        for name in names:
            reference = parse(name)
            store.record(reference, digest)
            images.append(store.image(reference, digest))
    return images


async def _oci(files: _Files, store: ImageStore) -> list[tuple[list[str], str]]:
    """(names, manifest digest) of each image in the layout's index.json."""
    index = manifest.parse(
        files.read("index.json", manifest.MAX_MANIFEST_BYTES), manifest.OCI_INDEX, "index.json"
    )
    assert isinstance(index, manifest.Index)
    found = []
    raw = json.loads(files.read("index.json", manifest.MAX_MANIFEST_BYTES))["manifests"]
    for entry, document in zip(index.entries, raw, strict=True):
        annotations = document.get("annotations") or {}
        name = annotations.get(FULL_NAME) or annotations.get(REF_NAME) or ""
        names = [name] if isinstance(name, str) and ("/" in name or ":" in name) else []
        found.append((names, await _oci_image(files, store, entry)))
    return found


async def _oci_image(files: _Files, store: ImageStore, entry: Descriptor) -> str:
    data = await _copy_small(files, store, entry, manifest.MAX_MANIFEST_BYTES)
    found = manifest.parse(data, entry.media_type, f"manifest {entry.digest}")
    if isinstance(found, manifest.Index):
        picked = found.pick(manifest.host_platform(), f"index {entry.digest}")
        return await _oci_image(files, store, picked)
    await _copy_small(files, store, found.config, manifest.MAX_CONFIG_BYTES)
    for layer in found.layers:
        await _copy(files, store, _blob_name(layer.digest), layer.digest, layer.size)
    return entry.digest


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + validate_digest(digest).removeprefix("sha256:")


async def _copy_small(
    files: _Files, store: ImageStore, descriptor: Descriptor, limit: int
) -> bytes:
    if descriptor.size > limit:
        raise ImageError(f"blob {descriptor.digest}: {descriptor.size} bytes is too large")
    await _copy(files, store, _blob_name(descriptor.digest), descriptor.digest, descriptor.size)
    return store.blobs.read(descriptor.digest, limit)


async def _copy(files: _Files, store: ImageStore, name: str, digest: str, size: int) -> None:
    """Store the file `name` as blob `digest`; the blob store checks size and digest."""
    if store.blobs.has(digest):
        return

    async def download(sink: Sink) -> None:
        sink.restart()
        with files.open(name, size) as file:
            while chunk := file.read(CHUNK):
                sink.write(chunk)

    await store.blobs.fetch(digest, size, download)


async def _docker(files: _Files, store: ImageStore) -> list[tuple[list[str], str]]:
    """(names, manifest digest) of each image in a `docker save` manifest.json."""
    what = "manifest.json"
    try:
        entries = json.loads(files.read(what, manifest.MAX_MANIFEST_BYTES))
    except ValueError as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or len(entries) > manifest.MAX_INDEX_ENTRIES:
        raise ImageError(f"{what} is not a list of at most {manifest.MAX_INDEX_ENTRIES}")
    return [
        await _docker_image(files, store, entry, f"{what} entry {i}")
        for i, entry in enumerate(entries)
    ]


async def _docker_image(
    files: _Files, store: ImageStore, entry: Any, what: str
) -> tuple[list[str], str]:
    if not isinstance(entry, dict):
        raise ImageError(f"{what} is not an object")
    config_name, tags, layers = (
        entry.get("Config"),
        entry.get("RepoTags") or [],
        entry.get("Layers"),
    )
    if not isinstance(config_name, str) or not isinstance(layers, list):
        raise ImageError(f"{what}: Config must be a file name and Layers a list")
    if not all(isinstance(tag, str) for tag in tags) or len(layers) > manifest.MAX_LAYERS:
        raise ImageError(f"{what}: RepoTags must be names, Layers at most {manifest.MAX_LAYERS}")
    config = files.read(config_name, manifest.MAX_CONFIG_BYTES)
    manifest.parse_config(config, f"{what} config {config_name!r}")
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    store.blobs.put(config_digest, config)
    descriptors = [
        await _docker_layer(files, store, name, f"{what} layer {name!r}") for name in layers
    ]
    document = {
        "schemaVersion": 2,
        "mediaType": manifest.OCI_MANIFEST,
        "config": {
            "mediaType": manifest.CONFIG_TYPES[0],
            "digest": config_digest,
            "size": len(config),
        },
        "layers": descriptors,
    }
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    manifest.parse(data, manifest.OCI_MANIFEST, what)
    store.blobs.put(digest, data)
    return list(tags), digest


async def _docker_layer(files: _Files, store: ImageStore, name: Any, what: str) -> dict[str, Any]:
    """A layer of a Docker archive: hashed once to learn its digest, then stored (and
    hashed again) by the blob store. Compressed layers keep their compression."""
    if not isinstance(name, str):
        raise ImageError(f"{what}: not a file name")
    hasher, size, head = hashlib.sha256(), 0, b""
    with files.open(name, manifest.MAX_BLOB_BYTES) as file:
        while chunk := file.read(CHUNK):
            head = head or chunk[:4]
            hasher.update(chunk)
            size += len(chunk)
    digest = "sha256:" + hasher.hexdigest()
    kind = "gzip" if head[:2] == b"\x1f\x8b" else "zstd" if head == b"\x28\xb5\x2f\xfd" else "tar"
    media_type = next(key for key, value in manifest.LAYER_TYPES.items() if value == kind)
    await _copy(files, store, name, digest, size)
    return {"mediaType": media_type, "digest": digest, "size": size}
