"""The content-addressed blob store: `<root>/sha256/<hex>`, each file verified.

Manifests, configs and layers all live here. A blob is written to a temporary file in
the same directory, hashed as it arrives, and renamed into place only once its size and
digest match, so a half-written or corrupt blob is never visible under its name. Small
blobs (manifests, configs) are re-hashed whenever they are read; layers are re-hashed by
the unpacker as it streams them (`HashingReader`).

A download broken off by the network keeps what it received in `.partial-<hex>` (a dot
name, never listed as a blob), under an exclusive lock while in use. The next fetch of
that blob re-hashes those bytes and asks for the rest (`Sink.offset`); the whole file's
digest is still checked before the rename, and a partial that turns out wrong is
deleted, so the pull after it starts from zero.
"""

from __future__ import annotations

import contextlib
import fcntl
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


class Sink:
    """Where a download delivers a blob: `offset` bytes are already held (resume from
    there), `write` appends (an ImageError once past the expected size), `restart`
    discards what is held (the server sent the whole blob after all)."""

    def __init__(self, file: BinaryIO, digest: str, size: int) -> None:
        self.file = file
        self.digest = digest
        self.size = size
        self.hasher = hashlib.sha256()
        self.offset = 0
        while chunk := file.read(min(CHUNK, size - self.offset)):
            self.hasher.update(chunk)
            self.offset += len(chunk)
        file.truncate(self.offset)  # bytes past the blob's size cannot be part of it
        self.received = self.offset
        if self.offset == size and not self.complete():
            self.restart()  # all there and wrong: nothing to resume

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise ImageError(f"blob {self.digest}: more than the {self.size} bytes announced")
        self.hasher.update(chunk)
        self.file.write(chunk)

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hasher = hashlib.sha256()
        self.offset = self.received = 0

    def complete(self) -> bool:
        return self.received == self.size and self.actual() == self.digest

    def actual(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


CHUNK = 1 << 20


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
        self, digest: str, size: int, download: Callable[[Sink], Awaitable[None]]
    ) -> Path:
        """Run `download` into the blob's partial file; keep it only if size and digest
        match. A broken-off download leaves the partial file for the next fetch."""
        final = self.path(digest)
        if final.is_file():
            return final
        with self._resumable(digest) as (file, name):
            sink = Sink(file, digest, size)
            try:
                if not sink.complete():
                    await download(sink)
            except ImageError:
                if sink.received > size:
                    file.truncate(0)
                raise
            if not sink.complete():
                file.truncate(0)  # wrong bytes, resumed or not: the next fetch starts anew
                raise ImageError(
                    f"blob {digest}: received {sink.received} bytes with digest "
                    f"{sink.actual()}, expected {size} bytes; not stored"
                )
            file.flush()
            os.fsync(file.fileno())
            os.chmod(name, 0o444)
            os.replace(name, final)
        return final

    @contextlib.contextmanager
    def _resumable(self, digest: str) -> Iterator[tuple[BinaryIO, str]]:
        """The blob's partial file, locked, and its name. One that another download
        holds is not shared: this download then gets a private temporary file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        hex_digest = self.path(digest).name
        name = str(self.directory / f".partial-{hex_digest}")
        file = open(name, "ab+")  # noqa: SIM115 (closed by the `with` below)
        private = False
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            fd, name = tempfile.mkstemp(dir=self.directory, prefix=f".partial-{hex_digest}-")
            file = os.fdopen(fd, "ab+")
            fcntl.flock(file, fcntl.LOCK_EX)  # so that a prune leaves it alone
            private = True
        with file:
            file.seek(0)
            try:
                yield file, name
            finally:
                if private or os.fstat(file.fileno()).st_size == 0:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name)  # before unlocking; gone already once renamed

    @contextlib.contextmanager
    def _partial(self, digest: str) -> Iterator[tuple[BinaryIO, Callable[[], None]]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(digest)
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=f".partial-{final.name}-")
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

    def remove_partials(self) -> list[Path]:
        """Delete partial files no download holds (for `prune`); the ones removed."""
        removed = []
        for path in self.directory.glob(".partial-*") if self.directory.is_dir() else ():
            if len(path.name) != len(".partial-") + 64:
                continue  # a private download's or a put's file: gone with its writer
            with contextlib.suppress(FileNotFoundError), path.open("rb") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                path.unlink()
                removed.append(path)
        return removed

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
