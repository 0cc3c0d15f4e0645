"""Local images: which manifest a reference names, and an image's tree from its blobs.

Lives under `$CORRAL_HOME/images/`: `blobs/` (the BlobStore) and `refs/`, one small
JSON file per pulled reference (by tag or by digest) naming its manifest digest, written
atomically after every blob it needs is stored. The records are the roots from which
`corral image prune` finds the blobs still needed. An image is present when its
manifest, config and layers all are. A layer that fails to unpack (hostile or corrupt)
is deleted along with the reference, so nothing of it stays cached.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral._errors import ImageError
from corral.node_agent.images import manifest
from corral.node_agent.images.blobs import BlobStore, HashingReader
from corral.node_agent.images.manifest import Descriptor, ImageConfig
from corral.node_agent.images.reference import Reference, parse, validate_digest
from corral.node_agent.images.unpack import CHUNK, Unpacker, UnpackLimits


@dataclass(frozen=True)
class Image:
    reference: Reference
    digest: str
    """The manifest's digest (for this host's platform): the image's identity."""
    config: ImageConfig
    layers: tuple[Descriptor, ...]

    def describe(self) -> dict[str, Any]:
        """The image as JSON: what `corral image inspect` prints and the SDK's `Image`
        is read from."""
        config = self.config
        return {
            "reference": str(self.reference),
            "digest": self.digest,
            "size": sum(layer.size for layer in self.layers),
            "created": config.created,
            "architecture": config.architecture,
            "os": config.os,
            "config": {
                "entrypoint": config.entrypoint,
                "cmd": config.cmd,
                "env": config.env,
                "workdir": config.workdir,
                "user": config.user,
            },
            "layers": [
                {"digest": layer.digest, "size": layer.size, "media_type": layer.media_type}
                for layer in self.layers
            ],
        }


class ImageStore:
    """Owns `<root>/blobs` and `<root>/refs`; `root` is `$CORRAL_HOME/images`."""

    def __init__(self, root: Path) -> None:
        self.blobs = BlobStore(root / "blobs")
        self.refs = root / "refs"

    def _ref_path(self, reference: Reference) -> Path:
        return self.refs / (hashlib.sha256(str(reference).encode()).hexdigest() + ".json")

    def record(self, reference: Reference, digest: str) -> None:
        """Remember that `reference` names manifest `digest` (a digest reference is
        recorded too, so that listing and pruning see the image)."""
        self.refs.mkdir(parents=True, exist_ok=True)
        document = {"reference": str(reference), "digest": digest}
        fd, partial = tempfile.mkstemp(dir=self.refs, prefix=".partial-")
        with os.fdopen(fd, "w") as file:
            json.dump(document, file)
        os.replace(partial, self._ref_path(reference))

    def forget(self, reference: Reference) -> bool:
        """Drop the record of `reference` (its blobs stay until a prune); whether it was
        there."""
        try:
            self._ref_path(reference).unlink()
        except FileNotFoundError:
            return False
        return True

    def records(self) -> list[tuple[Reference, str]]:
        """Every recorded (reference, manifest digest), sorted by reference."""
        found = []
        for path in self.refs.glob("*.json"):
            try:
                document = json.loads(path.read_text())
                found.append((parse(document["reference"]), validate_digest(document["digest"])))
            except FileNotFoundError:
                continue  # removed while we listed
            except (ValueError, KeyError, TypeError, ImageError) as exc:
                raise ImageError(f"image record {path} is corrupt: {exc}") from None
        return sorted(found, key=lambda item: str(item[0]))

    def blobs_of(self, digest: str) -> set[str]:
        """The blobs the image with manifest `digest` needs: manifest, config, layers
        (those of its manifest that are present; nothing if the manifest is gone)."""
        if not self.blobs.has(digest):
            return set()
        data = self.blobs.read(digest, manifest.MAX_MANIFEST_BYTES)
        found = manifest.parse(data, "", f"manifest {digest}")
        if not isinstance(found, manifest.Manifest):
            return {digest}
        return {digest, found.config.digest, *(layer.digest for layer in found.layers)}

    def prune(self, keep: set[str]) -> list[str]:
        """Remove every stored blob that no record and no manifest in `keep` needs, and
        the partial files of abandoned downloads; what was removed. Downloads in progress
        are left alone."""
        needed = set()
        for digest in keep | {digest for _, digest in self.records()}:
            needed |= self.blobs_of(digest)
        removed = [str(path) for path in self.blobs.remove_partials()]
        for digest in self.blobs.digests():
            if digest not in needed:
                self.blobs.remove(digest)
                removed.append(digest)
        return removed

    def lookup(self, reference: Reference) -> Image | None:
        """The local image `reference` names, if every blob of it is present."""
        # The record first: for a digest naming an index, it holds this platform's manifest.
        digest = self._recorded_digest(reference) or reference.digest
        if digest is None or not self.blobs.has(digest):
            return None
        image = self.image(reference, digest)
        if not all(self.blobs.has(layer.digest) for layer in image.layers):
            return None
        return image

    def _recorded_digest(self, reference: Reference) -> str | None:
        try:
            document = json.loads(self._ref_path(reference).read_text())
            return validate_digest(document["digest"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, ImageError) as exc:
            raise ImageError(f"image record of {reference} is corrupt: {exc}") from None

    def image(self, reference: Reference, digest: str) -> Image:
        """The image whose manifest `digest` is stored, with its parsed config."""
        what = f"manifest {digest} of {reference}"
        found = manifest.parse(self.blobs.read(digest, manifest.MAX_MANIFEST_BYTES), "", what)
        if not isinstance(found, manifest.Manifest):
            raise ImageError(f"{what} is an index, not an image manifest")
        data = self.blobs.read(found.config.digest, manifest.MAX_CONFIG_BYTES)
        config = manifest.parse_config(data, f"config of {reference}")
        return Image(reference, digest, config, found.layers)

    def unpack(self, image: Image, tree: Path, limits: UnpackLimits) -> None:
        """Apply `image`'s layers to the empty directory `tree`.

        A layer that is rejected, or whose blob no longer matches its digest, is removed
        from the store with the reference, so the next pull fetches and checks it anew.
        """
        unpacker = Unpacker(str(tree), limits)
        try:
            for i, layer in enumerate(image.layers):
                what = f"{i} ({layer.digest}) of {image.reference}"
                try:
                    self._apply(unpacker, layer, what)
                except ImageError:
                    self.blobs.remove(layer.digest)
                    self.forget(image.reference)
                    raise
        finally:
            unpacker.close()

    def _apply(self, unpacker: Unpacker, layer: Descriptor, what: str) -> None:
        try:
            blob = self.blobs.path(layer.digest).open("rb")
        except FileNotFoundError:
            raise ImageError(f"layer {what} is missing from {self.blobs.directory}") from None
        with blob:
            reader = HashingReader(blob, layer.digest)
            compression = manifest.LAYER_TYPES[layer.media_type]
            unpacker.apply(io.BufferedReader(reader, CHUNK), compression, what)
            reader.verify()
