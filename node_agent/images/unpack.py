"""Applying image layers to a directory tree, with nothing ever escaping its root.

A layer is an untrusted tar stream (plain, gzip or zstd). Every path is checked before
anything is written: absolute names and `..` components are rejected, parents are
opened one component at a time with O_NOFOLLOW relative to the root (so a symlink in
the tree is never written through), and hard links must point at an entry already in
the tree. Whiteouts (`.wh.name`) delete from lower layers, opaque markers
(`.wh..wh..opq`) empty a directory of lower-layer entries. Modes (setuid included),
ownership (when run as root), symlinks, hard links and FIFOs are kept; device nodes
are skipped (the guest has devtmpfs). The total size of regular files is bounded, and
runs of zeros are written as holes, so neither a bomb nor a sparse file fills the disk.
A violation is an ImageError naming the layer and the entry; the caller throws the
partial tree away.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from typing import IO, Literal

import zstandard

from corral._errors import ImageError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20


@dataclass(frozen=True)
class UnpackLimits:
    max_bytes: int = 32 << 30
    """Total size of regular files over all layers, in bytes (holes included)."""
    max_entries: int = 2_000_000
    """Total tar entries over all layers."""


class Unpacker:
    """Applies layers, in order, to the empty directory `root`; `close()` when done."""

    def __init__(self, root: str, limits: UnpackLimits) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.limits = limits
        self.total_bytes = 0
        self.entries = 0
        self.as_root = os.geteuid() == 0
        self.seen: set[tuple[str, ...]] = set()
        """Paths the current layer created: an opaque marker keeps them."""

    def close(self) -> None:
        os.close(self.root_fd)

    def apply(self, blob: IO[bytes], compression: str, what: str) -> None:
        """Apply one layer read from `blob`; `compression` is "tar", "gzip" or "zstd"."""
        self.seen.clear()
        source: IO[bytes] = blob
        if compression == "zstd":
            source = zstandard.ZstdDecompressor().stream_reader(blob, closefd=False)
        mode: Literal["r|", "r|gz"] = "r|gz" if compression == "gzip" else "r|"
        try:
            with tarfile.open(fileobj=source, mode=mode) as archive:
                for member in archive:
                    self._entry(archive, member, what)
        except (tarfile.TarError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise ImageError(f"layer {what}: not a valid {compression} tar stream: {exc}") from None

    def _entry(self, archive: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ImageError(f"layer {what}: more than {self.limits.max_entries} entries")
        parts = _parts(member.name, what)
        if not parts:
            return  # the root itself: its metadata is the disk's, not the layer's
        parent = self._open_parent(parts, member.name, what)
        try:
            self._place(archive, member, parts, parent, what)
        except OSError as exc:
            raise ImageError(f"layer {what}: cannot apply entry {member.name!r}: {exc}") from None
        finally:
            os.close(parent)

    def _place(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        parts: tuple[str, ...],
        parent: int,
        what: str,
    ) -> None:
        name = parts[-1]
        if name == OPAQUE:
            for child in os.listdir(parent):
                if (*parts[:-1], child) not in self.seen:
                    _remove(parent, child)
            return
        if name.startswith(WHITEOUT):
            target = name[len(WHITEOUT) :]
            if target in ("", ".", "..") or target.startswith(WHITEOUT):
                raise ImageError(f"layer {what}: invalid whiteout {member.name!r}")
            _remove(parent, target)
            return
        self.seen.add(parts)
        existing = _lstat(parent, name)
        keep = member.isdir() and existing is not None and stat.S_ISDIR(existing.st_mode)
        if not keep:
            _remove(parent, name)
        if member.isdir():
            if not keep:
                os.mkdir(name, 0o700, dir_fd=parent)
        elif member.isreg():
            self._write(archive, member, name, parent, what)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
        elif member.islnk():
            self._link(member, name, parent, what)
            return  # a hard link shares its target's inode and metadata
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=parent)
        else:
            return  # character and block devices: skipped
        if self.as_root:
            os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        if not member.issym():
            os.chmod(name, member.mode & 0o7777, dir_fd=parent)
        mtime = int(member.mtime * 1e9)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)

    def _write(
        self, archive: tarfile.TarFile, member: tarfile.TarInfo, name: str, parent: int, what: str
    ) -> None:
        self.total_bytes += member.size
        if self.total_bytes > self.limits.max_bytes:
            raise ImageError(
                f"layer {what}: entry {member.name!r} ({member.size} bytes) takes the image "
                f"past its unpacked size limit of {self.limits.max_bytes} bytes"
            )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            source = archive.extractfile(member)
            assert source is not None  # a regular file always has content
            while chunk := source.read(CHUNK):
                if chunk.count(0) == len(chunk):
                    os.lseek(fd, len(chunk), os.SEEK_CUR)
                else:
                    os.write(fd, chunk)
            os.ftruncate(fd, member.size)
        finally:
            os.close(fd)

    def _link(self, member: tarfile.TarInfo, name: str, parent: int, what: str) -> None:
        target = _parts(member.linkname, what)
        if not target:
            raise ImageError(f"layer {what}: hard link {member.name!r} to the root")
        source = self._open_parent(target, member.linkname, what, create=False)
        try:
            os.link(target[-1], name, src_dir_fd=source, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(source)

    def _open_parent(
        self, parts: tuple[str, ...], name: str, what: str, create: bool = True
    ) -> int:
        """The directory holding `parts[-1]`, reached without following any symlink."""
        fd = os.dup(self.root_fd)
        try:
            for depth, part in enumerate(parts[:-1]):
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    child = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise ImageError(
                            f"layer {what}: entry {name!r} refers to a path not in the image"
                        ) from None
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise ImageError(
                        f"layer {what}: entry {name!r} goes through "
                        f"{'/'.join(parts[: depth + 1])!r}, a symlink or not a directory"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd


def _parts(name: str, what: str) -> tuple[str, ...]:
    """The path's components below the root; absolute paths and `..` are rejected."""
    if name.startswith("/") or "\0" in name:
        raise ImageError(f"layer {what}: entry {name!r} has an absolute or invalid path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ImageError(f"layer {what}: entry {name!r} escapes the root with '..'")
    return parts


def _lstat(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(parent: int, name: str) -> None:
    """Remove `name` (a tree, if a directory) in `parent`; "not there" is success."""
    info = _lstat(parent, name)
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=parent)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)
