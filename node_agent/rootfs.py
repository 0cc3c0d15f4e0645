"""Root disks: one read-only ext4 base per image, shared; one sparse upper per sandbox.

The guest agent overlays the per-sandbox upper disk on the shared base, so a second
sandbox of an image costs one sparse file. Sources: the default image, a local
directory, a rootfs tarball, a disk image holding an ext4 root (raw `.raw`/`.img`, used
in place; QCOW2 `.qcow2`, converted once to a raw base in the cache, since the VM's
disks are raw), an OCI image reference, pulled into the image store (`images`) and
keyed by its manifest digest, or `bind:/dir`, a host directory the guest mounts over 9p
as its root, read-write and with no disk at all. Bases are built into a temporary file
and renamed into place under a lock, so a half-built disk is never used and two builders
never race.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from corral._errors import ImageError
from corral.node_agent.image_defaults import DEFAULT_PATH, ImageDefaults

if TYPE_CHECKING:
    from corral.node_agent.images.manifest import ImageConfig
    from corral.node_agent.images.store import Image

DISK_FORMATS = {".raw": "raw", ".img": "raw", ".qcow2": "qcow2"}
"""A disk image's format comes from its name: QEMU is never left to probe it."""
MAX_DISK_BYTES = 1 << 40
EXT4_MAGIC_OFFSET, EXT4_MAGIC = 1024 + 0x38, b"\x53\xef"


@dataclass(frozen=True)
class ImageSource:
    reference: str
    path: Path  # the directory, tarball or disk image; for "oci", the image store
    kind: str  # "directory", "tarball", "raw", "qcow2", "oci" or "bind"
    defaults: ImageDefaults
    image: Image | None = None  # for "oci"


def resolve(
    reference: str, default_image: Path, images: Path | None = None, policy: str = "IfMissing"
) -> ImageSource:
    """What `reference` names: 'default', a path (absolute, or starting with '.') to a
    directory or tarball, else an OCI reference pulled (per `policy`: Always, IfMissing,
    Never) into the image store at `images`. Paths must look like paths, so that an image
    name never silently means a directory that happens to share it."""
    if reference.startswith(BIND_PREFIX):
        return _bind(reference)
    is_path = reference == "default" or reference.startswith(("/", "."))
    path = default_image if reference == "default" else Path(reference)
    if is_path and path.is_dir():
        defaults = _read_defaults(path.parent / "image.json" if reference == "default" else None)
        return ImageSource(reference, path, "directory", defaults)
    if is_path and path.is_file() and path.suffix in DISK_FORMATS:
        return _disk(reference, path.resolve(), DISK_FORMATS[path.suffix])
    if is_path and path.is_file():
        if not tarfile.is_tarfile(path):
            raise ImageError(f"image {reference!r}: {path} is not a tar archive")
        return ImageSource(reference, path, "tarball", ImageDefaults())
    if images is None or is_path:
        raise ImageError(
            f"image {reference!r} not found: expected 'default', a rootfs directory, "
            "a rootfs tarball or an image reference"
        )
    image = _pull(reference, images, policy)
    return ImageSource(reference, images, "oci", _oci_defaults(image.config), image)


BIND_PREFIX = "bind:"


def _bind(reference: str) -> ImageSource:
    """A host directory used live as the root: absolute, so it never depends on the
    supervisor's working directory; without ',' (QEMU's option separator), so it cannot
    add options to the 9p device. Symlinks are resolved here, so the directory checked
    is the one shared."""
    given = reference.removeprefix(BIND_PREFIX)
    if not given.startswith("/"):
        raise ImageError(f"image {reference!r}: a bind root needs an absolute path")
    path = Path(os.path.realpath(given))
    if "," in str(path):
        raise ImageError(f"image {reference!r}: a bind root path cannot contain ','")
    if not path.is_dir():
        problem = "is not a directory" if path.exists() else "does not exist"
        raise ImageError(f"image {reference!r}: {path} {problem}")
    return ImageSource(reference, path, "bind", ImageDefaults(user="0"))  # /etc/passwd optional


def _disk(reference: str, path: Path, kind: str) -> ImageSource:
    """A disk image checked with `qemu-img info` in the format its name says: no backing
    or external data file (either would make QEMU read another host file), a bounded
    size, and for a raw image an ext4 file system (what the guest mounts)."""
    if "," in str(path):
        raise ImageError(f"image {reference!r}: a disk image path cannot contain ','")
    result = subprocess.run(
        ["qemu-img", "info", "-f", kind, "--output=json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        problem = result.stderr.strip()[:300]
        raise ImageError(f"image {reference!r}: not a valid {kind} disk image: {problem}")
    info = json.loads(result.stdout)
    data = info.get("format-specific", {}).get("data", {})
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageError(
            f"image {reference!r}: has a backing file ({info.get('backing-filename')!r}); "
            "only self-contained disk images are accepted"
        )
    if data.get("data-file"):
        raise ImageError(f"image {reference!r}: has an external data file; refused")
    if not 0 < info.get("virtual-size", 0) <= MAX_DISK_BYTES:
        raise ImageError(f"image {reference!r}: size {info.get('virtual-size')} out of range")
    if kind == "raw":
        _check_ext4(path, reference)
    return ImageSource(reference, path, kind, ImageDefaults(user="0"))  # /etc/passwd optional


def _check_ext4(disk: Path, reference: str) -> None:
    with disk.open("rb") as file:
        file.seek(EXT4_MAGIC_OFFSET)
        if file.read(2) != EXT4_MAGIC:
            raise ImageError(
                f"image {reference!r}: {disk} does not hold an ext4 file system "
                "(a root disk image is a bare ext4, without a partition table)"
            )


def _pull(reference: str, images: Path, policy: str) -> Image:
    # The image store loads here, for OCI references only: the launch of a default or
    # local image starts QEMU without paying for it.
    from corral.node_agent.images.reference import parse
    from corral.node_agent.images.store import ImageStore

    store = ImageStore(images)
    if policy != "Always":
        local = store.lookup(parse(reference))
        if local is not None:
            return local
    # Only a pull loads the registry client (aiohttp): a local image boots without it.
    from corral.node_agent.images import settings
    from corral.node_agent.images.pull import PullPolicy, pull_sync

    registries = settings.load(images.parent)
    return pull_sync(reference, store, registries, PullPolicy(policy))


def _oci_defaults(config: ImageConfig) -> ImageDefaults:
    env = dict(item.split("=", 1) for item in config.env if "=" in item)
    env.setdefault("PATH", DEFAULT_PATH)
    return ImageDefaults(
        env=env,
        entrypoint=config.entrypoint,
        cmd=config.cmd,
        workdir=config.workdir or "/",
        user=config.user or "0",  # uid 0 needs no /etc/passwd, which an image may lack
    )


def _read_defaults(path: Path | None) -> ImageDefaults:
    if path is None or not path.exists():
        return ImageDefaults()
    data = json.loads(path.read_text())
    return ImageDefaults(
        env=dict(data.get("env", {"PATH": DEFAULT_PATH})),
        entrypoint=list(data.get("entrypoint", [])),
        cmd=list(data.get("cmd", [])),
        workdir=str(data.get("workdir", "/")),
        user=str(data.get("user", "root")),
    )


DISK_FORMAT = 2
"""Bumped whenever make_ext4 changes, so cached disks of an older format are not reused."""


def source_key(source: ImageSource) -> str:
    """A content key: the image's manifest digest, the tarball's sha256, the default image's
    content-addressed path, or a digest of a directory's metadata walk."""
    digest = hashlib.sha256(f"{DISK_FORMAT}:{source.kind}".encode())
    if source.reference == "default":
        # Provisioning names the default image's directory by its content, so the path is
        # its key: no walk of the tree at every launch.
        digest.update(str(source.path).encode())
        return digest.hexdigest()
    if source.image is not None:
        digest.update(source.image.digest.encode())
        return digest.hexdigest()
    if source.kind in ("raw", "qcow2"):
        # The file's identity, not its content: a disk image may be gigabytes, and any
        # write to it changes its ctime.
        info = source.path.stat()
        identity = (source.path, info.st_dev, info.st_ino, info.st_size, info.st_ctime_ns)
        digest.update(repr(identity).encode())
        return digest.hexdigest()
    if source.kind == "tarball":
        with source.path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    for entry in sorted(_walk(source.path)):
        info = entry.lstat()
        target = os.readlink(entry) if entry.is_symlink() else ""
        digest.update(
            f"{entry.relative_to(source.path)}\0{info.st_mode}\0{info.st_uid}\0{info.st_gid}"
            f"\0{info.st_size}\0{info.st_mtime_ns}\0{target}\n".encode()
        )
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            yield Path(directory) / name


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_disk(source: ImageSource, cache: Path) -> Path:
    """The shared read-only root disk of `source`, building it once."""
    if source.kind == "raw":
        return source.path
    key = source_key(source)
    disk = cache / key[:32] / "root.ext4"
    if disk.exists():
        return disk
    with _locked(cache / f"{key[:32]}.lock"):
        if disk.exists():
            return disk
        disk.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as scratch:
            if source.kind == "qcow2":
                _convert(source, Path(scratch) / "root.ext4", disk)
                return disk
            tree = source.path
            if source.kind == "tarball":
                tree = Path(scratch) / "tree"
                _extract(source.path, tree)
            elif source.image is not None:
                from corral.node_agent.images.store import ImageStore
                from corral.node_agent.images.unpack import UnpackLimits

                tree = Path(scratch) / "tree"
                tree.mkdir()
                ImageStore(source.path).unpack(source.image, tree, UnpackLimits())
            partial = Path(scratch) / "root.ext4"
            make_ext4(partial, tree, label="corral-root")
            os.chmod(partial, 0o444)
            partial.rename(disk)
    return disk


def _convert(source: ImageSource, partial: Path, disk: Path) -> None:
    """QCOW2 → sparse raw, reading the file through a descriptor opened here (so the
    checked file is the converted one) with backing files disabled."""
    fd = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        options = {
            "driver": "qcow2",
            "backing": None,
            "file": {"driver": "file", "filename": f"/proc/self/fd/{fd}"},
        }
        result = subprocess.run(
            ["qemu-img", "convert", "-O", "raw", "json:" + json.dumps(options), str(partial)],
            capture_output=True,
            text=True,
            pass_fds=(fd,),
            check=False,
        )
    finally:
        os.close(fd)
    if result.returncode != 0:
        raise ImageError(f"cannot convert {source.path}: {result.stderr.strip()[:300]}")
    _check_ext4(partial, source.reference)
    os.chmod(partial, 0o444)
    partial.rename(disk)


def _keep_mode_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The stdlib 'tar' filter's path checks, without its clearing of setuid bits."""
    checked = tarfile.tar_filter(member, dest)
    return checked.replace(mode=member.mode, deep=False)


def _extract(tarball: Path, tree: Path) -> None:
    tree.mkdir()
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(tree, filter=_keep_mode_filter)
    except (tarfile.TarError, OSError) as exc:
        raise ImageError(f"cannot unpack {tarball}: {exc}") from exc


def _tree_size(tree: Path) -> tuple[int, int]:
    total, count = 0, 0
    for entry in _walk(tree):
        info = entry.lstat()
        count += 1
        if stat.S_ISREG(info.st_mode):
            total += info.st_blocks * 512
    return total, count


def make_ext4(disk: Path, tree: Path | None, label: str, size_mib: int = 0) -> None:
    """Create an ext4 image at `disk`, populated from `tree` when given.

    Both disks are built for the guest's boot, where (under TCG) every kernel code path
    run for the first time costs ~2.5 us per instruction to translate: no journal (the
    base is read-only; the upper is a fresh copy at every launch, so there is nothing to
    recover), 4 KiB blocks even for a small base, and group-descriptor checksums instead
    of metadata_csum (crc32c in software over every bitmap and inode). An empty disk (the
    upper) keeps small directories in the inode (inline_data): the overlay's work
    directories then need no block allocator at boot.
    """
    if tree is not None:
        used, inodes = _tree_size(tree)
        size_mib = max(size_mib, (used * 5 // 4) // (1 << 20) + inodes // 256 + 16)
    with disk.open("wb") as file:
        file.truncate(size_mib << 20)
    # Inode tables are zeroed now, once per template, rather than by the kernel's
    # lazy-init thread in every sandbox after boot.
    extended = "root_owner=0:0,lazy_itable_init=0"
    features = "^has_journal,^metadata_csum,uninit_bg" + (",inline_data" if tree is None else "")
    command = ["mkfs.ext4", "-q", "-F", "-L", label, "-m", "0", "-b", "4096", "-E", extended]
    command += ["-O", features]
    if tree is not None:
        command += ["-N", str(inodes + inodes // 4 + 256), "-d", str(tree)]
    command.append(str(disk))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageError(f"mkfs.ext4 failed for {disk}: {result.stderr.strip()}")


def upper_disk(path: Path, size_mib: int, cache: Path) -> None:
    """A fresh sparse writable disk for one sandbox, copied from a per-size template."""
    template = cache / f"upper-v{DISK_FORMAT}-{size_mib}.ext4"
    if not template.exists():
        with _locked(cache / f"upper-v{DISK_FORMAT}-{size_mib}.lock"):
            if not template.exists():
                partial = template.with_suffix(".partial")
                make_ext4(partial, None, label="corral-upper", size_mib=size_mib)
                partial.rename(template)
    copy_sparse(template, path)


def copy_sparse(source: Path, target: Path) -> None:
    """Copy a disk image keeping its holes (and sharing its blocks where the filesystem
    can): a 2 GiB upper disk holds a few MiB."""
    subprocess.run(
        ["cp", "--sparse=always", "--reflink=auto", str(source), str(target)], check=True
    )


def remove_tree(path: Path) -> None:
    """Remove a sandbox's files; 'already gone' is success."""
    shutil.rmtree(path, ignore_errors=True)
