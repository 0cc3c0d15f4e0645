"""Test helper: build layers with tarfile and images as OCI layout directories, the
input `skopeo copy oci:DIR:TAG docker://…` pushes to a registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import zstandard

MEDIA = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def entry(name: str, data: bytes = b"", **fields: Any) -> tuple[tarfile.TarInfo, bytes]:
    """A tar entry: a regular file unless `type` says otherwise (e.g. tarfile.SYMTYPE)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755 if fields.get("type") == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def busybox_layer() -> bytes:
    """/bin/busybox (busybox-static), the applets the tests use, and the usual dirs."""
    binary = Path("/bin/busybox").read_bytes()
    applets = ["sh", "ls", "cat", "echo", "env", "pwd", "id"]
    dirs = ["dev", "proc", "sys", "run", "etc", "root", "work"]
    return tar(
        *(entry(name, type=tarfile.DIRTYPE) for name in ["bin", *dirs]),
        entry("bin/busybox", binary, mode=0o755),
        *(entry(f"bin/{name}", type=tarfile.SYMTYPE, linkname="busybox") for name in applets),
        entry("tmp", type=tarfile.DIRTYPE, mode=0o1777),
    )


def tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout directory; `tag()` names a manifest or index in index.json."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs/sha256").mkdir(parents=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.tags: list[dict[str, Any]] = []

    def blob(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = digest_of(data)
        (self.path / "blobs/sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def image(
        self,
        layers: list[bytes],
        config: dict[str, Any] | None = None,
        compression: str = "gzip",
        architecture: str = "amd64",
    ) -> dict[str, Any]:
        """A manifest whose layers are the tar streams `layers`, compressed."""
        diff_ids = [digest_of(layer) for layer in layers]
        document = {
            "architecture": architecture,
            "os": "linux",
            "config": config or {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_blob = self.blob(
            json.dumps(document).encode(), "application/vnd.oci.image.config.v1+json"
        )
        layer_blobs = [
            self.blob(compress(layer, compression), MEDIA[compression]) for layer in layers
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_blob,
            "layers": layer_blobs,
        }
        platform = {"os": "linux", "architecture": architecture}
        return self.blob(
            json.dumps(manifest).encode(),
            "application/vnd.oci.image.manifest.v1+json",
            platform=platform,
        )

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        document = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
        return self.blob(json.dumps(document).encode(), "application/vnd.oci.image.index.v1+json")

    def tag(self, descriptor: dict[str, Any], name: str) -> None:
        annotations = {"org.opencontainers.image.ref.name": name}
        self.tags.append({**descriptor, "annotations": annotations})
        index = {"schemaVersion": 2, "manifests": self.tags}
        (self.path / "index.json").write_text(json.dumps(index))
