"""The content-addressed blob store: `<root>/sha256/<hex>`, each file verified.

Manifests, configs and layers all live here. A blob is written to a temporary file in
the same directory, hashed as it arrives, and renamed into place only once its size and
digest match, so a half-written or corrupt blob is never visible under its name. Small
blobs (manifests, configs) are re-hashed whenever they are read; layers are re-hashed by
the unpacker as it streams them (`HashingReader`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from corral._errors import ImageError
from corral.node_agent.images.reference import validate_digest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Writer = Callable[[bytes], None]
"""Where a download delivers its chunks; raises ImageError once past the expected size."""


class BlobStore:
    """Owns `<root>/sha256/`; every file in it has the digest its name says."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / "sha256"

    def path(self, digest: str) -> Path:
        return self.directory / validate_digest(digest).removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str, limit: int) -> bytes:
        """A small blob's bytes, checked against its digest at every read."""
        with self.path(digest).open("rb") as file:
            data = file.read(limit + 1)
        if len(data) > limit or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"blob {digest} in {self.directory} is corrupt")
        return data

    def put(self, digest: str, data: bytes) -> Path:
        """Store bytes already in memory (a manifest or a config) after checking them."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ImageError(f"blob {digest}: content has digest {actual}")
        with self._partial(digest) as (file, commit):
            file.write(data)
            commit()
        return self.path(digest)

    async def fetch(
        self, digest: str, size: int, download: Callable[[Writer], Awaitable[None]]
    ) -> Path:
        """Run `download` into a temporary file; keep it only if size and digest match."""
        final = self.path(digest)
        if final.is_file():
            return final
        hasher = hashlib.sha256()
        received = 0
        with self._partial(digest) as (file, commit):

            def write(chunk: bytes) -> None:
                nonlocal received
                received += len(chunk)
                if received > size:
                    raise ImageError(f"blob {digest}: more than the {size} bytes announced")
                hasher.update(chunk)
                file.write(chunk)

            await download(write)
            actual = "sha256:" + hasher.hexdigest()
            if received != size or actual != digest:
                raise ImageError(
                    f"blob {digest}: received {received} bytes with digest {actual}, "
                    f"expected {size} bytes; not stored"
                )
            commit()
        return final

    @contextlib.contextmanager
    def _partial(self, digest: str) -> Iterator[tuple[BinaryIO, Callable[[], None]]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(digest)
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=f".partial-{final.name[:16]}-")
        done = False

        def commit() -> None:
            nonlocal done
            file.flush()
            os.fsync(file.fileno())
            os.chmod(name, 0o444)
            os.replace(name, final)
            done = True

        with os.fdopen(fd, "wb") as file:
            try:
                yield file, commit
            finally:
                if not done:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name)

    def digests(self) -> list[str]:
        """Every stored blob (not the partial files of downloads in progress)."""
        if not self.directory.is_dir():
            return []
        return sorted(
            "sha256:" + path.name
            for path in self.directory.iterdir()
            if not path.name.startswith(".")
        )

    def remove(self, digest: str) -> None:
        """Forget a blob (e.g. a layer that was rejected); "already gone" is success."""
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()


class HashingReader(io.RawIOBase):
    """A read-only raw stream that hashes what passes through it, for `verify()`."""

    def __init__(self, file: BinaryIO, digest: str) -> None:
        super().__init__()
        self.file = file
        self.digest = digest
        self.hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        data = self.file.read(len(memoryview(buffer)))
        self.hasher.update(data)
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def verify(self) -> None:
        """Read to the end and compare: raises ImageError if the blob is not `digest`."""
        while self.read(1 << 20):
            pass
        actual = "sha256:" + self.hasher.hexdigest()
        if actual != self.digest:
            raise ImageError(f"layer {self.digest} is corrupt on disk (digest {actual})")
