"""Image commands: `corral pull` and `corral image load | ls | inspect | rm | prune`.

A thin face over the node agent's image store (`$CORRAL_HOME/images`); only `pull`
loads the registry client. `rm` drops a record and refuses while a live sandbox runs
the image; `prune` then removes the blobs no record needs and the root disks no record
and no live sandbox uses (a live sandbox's disk is found from its QEMU command line, so
a tag moved by a later pull does not free a disk still in use).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

import click

from corral._cli.errors import Failure
from corral._cli.manage import render_table
from corral._errors import CorralError
from corral._images import Policy, PullProgress
from corral._images import load as load_images
from corral._images import pull as pull_image
from corral._paths import Paths
from corral._state import LIVE_STATUSES, SandboxRecord, StateStore
from corral.node_agent import rootfs, snapshots
from corral.node_agent.assets import Assets
from corral.node_agent.image_defaults import ImageDefaults
from corral.node_agent.images.manifest import ImageConfig
from corral.node_agent.images.reference import Reference, parse
from corral.node_agent.images.store import Image, ImageStore

POLICIES: dict[str, Policy] = {"always": "Always", "missing": "IfMissing", "never": "Never"}


@click.command()
@click.argument("reference")
@click.option(
    "--policy",
    type=click.Choice(list(POLICIES)),
    default="always",
    show_default=True,
    help="always: ask the registry; missing: only if not stored; never: only check.",
)
def pull(reference: str, policy: str) -> int:
    """Pull the image REFERENCE into the local store; prints its digest."""
    bar = ProgressBar.for_terminal(reference)
    try:
        image = asyncio.run(pull_image(reference, policy=POLICIES[policy], progress=bar))
    finally:
        if bar is not None:
            bar.finish()
    print(image.digest)
    return 0


class ProgressBar:
    """A pull's progress on one terminal line: a bar over the bytes of every layer seen
    so far, redrawn at most ten times a second. Only for a terminal: `for_terminal`
    gives None otherwise, so logs and pipes stay quiet."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.layers: dict[str, tuple[int, int]] = {}
        self.drawn = 0.0
        self.finished = False

    @classmethod
    def for_terminal(cls, label: str, stream: TextIO | None = None) -> ProgressBar | None:
        stream = stream or sys.stderr
        return cls(label, stream) if stream.isatty() else None

    def __call__(self, event: PullProgress) -> None:
        self.layers[event.layer] = (event.done, event.total)
        if all(done == total for done, total in self.layers.values()):
            self.finish()  # every layer was announced up front: this is the end
            return
        now = time.monotonic()
        if now - self.drawn >= 0.1 or event.done == event.total:
            self.drawn = now
            self._draw()

    def _draw(self) -> None:
        done = sum(done for done, _ in self.layers.values())
        total = sum(total for _, total in self.layers.values()) or 1
        filled = self.WIDTH * done // total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        complete = sum(1 for d, t in self.layers.values() if d == t)
        self.stream.write(
            f"\r{self.label}: [{bar}] {done / 2**20:.1f}/{total / 2**20:.1f} MiB, "
            f"{complete}/{len(self.layers)} layers"
        )
        self.stream.flush()

    def finish(self) -> None:
        """Draw the last state and end the line; once."""
        if self.layers and not self.finished:
            self.finished = True
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


@click.group()
def image() -> None:
    """Manage the local image store."""


@image.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--tag", metavar="NAME", help="Record the image as NAME (e.g. app:1.0).")
def load(path: str, tag: str | None) -> int:
    """Load the images of an OCI layout directory or an OCI/Docker archive (`docker
    save`); prints the name each is recorded under."""
    for loaded in asyncio.run(load_images(path, tag=tag)):
        print(f"{loaded.reference} {loaded.digest}")
    return 0


@image.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for machines.")
def ls(as_json: bool) -> int:
    """List pulled images."""
    store = ImageStore(Paths.from_env().images)
    images = [_local(store, str(reference)) for reference, _ in store.records()]
    if as_json:
        print(json.dumps([image.describe() for image in images if image], indent=2))
        return 0
    rows = [("REFERENCE", "DIGEST", "SIZE")]
    for image in images:
        if image is not None:
            size = sum(layer.size for layer in image.layers)
            rows.append((str(image.reference), image.digest[:19], f"{size / 2**20:.1f}MiB"))
    print(render_table(rows))
    return 0


@image.command()
@click.argument("reference")
def inspect(reference: str) -> int:
    """Show a pulled image's digest, config and layers as JSON."""
    print(json.dumps(_find(ImageStore(Paths.from_env().images), reference).describe(), indent=2))
    return 0


@image.command()
@click.argument("reference")
def rm(reference: str) -> int:
    """Forget the image REFERENCE; `prune` then frees its blobs and root disk."""
    paths = Paths.from_env()
    store = ImageStore(paths.images)
    image = _find(store, reference)
    users = [
        record.name
        for record in _live(paths)
        if _same_image(store, record.config.get("image", ""), image)
    ]
    if users:
        raise Failure(f"image {reference!r} is in use by sandbox {', '.join(sorted(users))}")
    store.forget(image.reference)
    print(image.reference)
    return 0


@image.command()
def prune() -> int:
    """Remove blobs no image record needs, root disks nothing uses, and boot snapshots
    of files that changed or are gone."""
    paths = Paths.from_env()
    store = ImageStore(paths.images)
    live = _live(paths)
    in_use = [_local(store, record.config.get("image", "")) for record in live]
    roots = store.records()
    roots += [(image.reference, image.digest) for image in in_use if image is not None]
    removed = store.prune({digest for _, digest in roots})
    keep = {_disk_key(paths, reference, digest) for reference, digest in roots}
    keep |= _default_disk_key(paths)
    busy = _disks_of_live_qemus(live)
    for disk in sorted(paths.images.glob("*/root.ext4")):
        if disk.parent.name not in keep and disk not in busy:
            shutil.rmtree(disk.parent, ignore_errors=True)
            removed.append(str(disk))
    for snapshot in snapshots.stale(paths.images):
        shutil.rmtree(snapshot, ignore_errors=True)
        removed.append(str(snapshot))
    for item in removed:
        print(f"removed {item}")
    return 0


def _find(store: ImageStore, text: str) -> Image:
    image = store.lookup(parse(text))
    if image is None:
        raise Failure(f"image {text!r} is not in the local store (see `corral image ls`)")
    return image


def _local(store: ImageStore, text: str) -> Image | None:
    """The complete local image `text` names, if any ('default' and paths name none)."""
    try:
        return store.lookup(parse(text))
    except (CorralError, OSError):
        return None


def _same_image(store: ImageStore, text: str, image: Image) -> bool:
    local = _local(store, text)
    return local is not None and local.digest == image.digest


def _live(paths: Paths) -> list[SandboxRecord]:
    if not paths.state_db.exists():
        return []
    records = StateStore(paths.state_db).list()
    return [record for record in records if record.effective_status[0] in LIVE_STATUSES]


def _disk_key(paths: Paths, reference: Reference, digest: str) -> str:
    """The directory name of the root disk built from the image with manifest `digest`
    (the key depends on the digest only, so no blob need be read)."""
    image = Image(reference, digest, ImageConfig(), ())
    source = rootfs.ImageSource("", paths.images, "oci", ImageDefaults(), image)
    return rootfs.source_key(source)[:32]


def _default_disk_key(paths: Paths) -> set[str]:
    """The default image's disk, kept: every sandbox without an image boots from it."""
    try:
        default = Assets.load(paths.assets).default_image
        return {rootfs.source_key(rootfs.resolve("default", default))[:32]}
    except (CorralError, OSError):
        return set()


def _disks_of_live_qemus(live: list[SandboxRecord]) -> set[Path]:
    """The files on live sandboxes' QEMU command lines (their root disks among them)."""
    busy: set[Path] = set()
    for record in live:
        try:
            argv = Path(f"/proc/{record.qemu_pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            for part in arg.decode(errors="replace").split(","):
                if part.startswith("file="):
                    busy.add(Path(part.removeprefix("file=")))
    return busy
