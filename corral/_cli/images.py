"""Image commands: `corral pull` and `corral image ls | inspect | rm | prune`.

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
from pathlib import Path
from typing import Any

import click

from corral._cli.errors import Failure
from corral._cli.manage import render_table
from corral._errors import CorralError
from corral._paths import Paths
from corral._state import LIVE_STATUSES, SandboxRecord, StateStore
from corral.node_agent import rootfs
from corral.node_agent.assets import Assets
from corral.node_agent.images.manifest import ImageConfig
from corral.node_agent.images.reference import Reference, parse
from corral.node_agent.images.store import Image, ImageStore

POLICIES = {"always": "Always", "missing": "IfMissing", "never": "Never"}


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
    from corral.node_agent.images import settings
    from corral.node_agent.images.pull import PullPolicy
    from corral.node_agent.images.pull import pull as pull_image

    paths = Paths.from_env()
    registries = settings.load(paths.home)
    progress = _Progress(reference) if sys.stderr.isatty() else None
    image = asyncio.run(
        pull_image(
            reference, ImageStore(paths.images), registries, PullPolicy(POLICIES[policy]), progress
        )
    )
    if progress is not None:
        progress.finish()
    print(image.digest)
    return 0


class _Progress:
    """One status line on the terminal: bytes received over all layers of the pull."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.layers: dict[str, tuple[int, int]] = {}

    def __call__(self, digest: str, received: int, total: int) -> None:
        self.layers[digest] = (received, total)
        done = sum(received for received, _ in self.layers.values()) >> 20
        size = sum(total for _, total in self.layers.values()) >> 20
        sys.stderr.write(f"\r{self.reference}: {done}/{size} MiB")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.layers:
            sys.stderr.write("\n")


@click.group()
def image() -> None:
    """Manage the local image store."""


@image.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for machines.")
def ls(as_json: bool) -> int:
    """List pulled images."""
    store = ImageStore(Paths.from_env().images)
    images = [_local(store, str(reference)) for reference, _ in store.records()]
    if as_json:
        print(json.dumps([_describe(image) for image in images if image], indent=2))
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
    print(json.dumps(_describe(_find(ImageStore(Paths.from_env().images), reference)), indent=2))
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
    """Remove blobs no image record needs and root disks nothing uses."""
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


def _describe(image: Image) -> dict[str, Any]:
    config = image.config
    return {
        "reference": str(image.reference),
        "digest": image.digest,
        "size": sum(layer.size for layer in image.layers),
        "config": {
            "entrypoint": config.entrypoint,
            "cmd": config.cmd,
            "env": config.env,
            "workdir": config.workdir,
            "user": config.user,
        },
        "layers": [
            {"digest": layer.digest, "size": layer.size, "media_type": layer.media_type}
            for layer in image.layers
        ],
    }


def _live(paths: Paths) -> list[SandboxRecord]:
    if not paths.state_db.exists():
        return []
    records = StateStore(paths.state_db).list()
    return [record for record in records if record.effective_status[0] in LIVE_STATUSES]


def _disk_key(paths: Paths, reference: Reference, digest: str) -> str:
    """The directory name of the root disk built from the image with manifest `digest`
    (the key depends on the digest only, so no blob need be read)."""
    image = Image(reference, digest, ImageConfig(), ())
    source = rootfs.ImageSource("", paths.images, "oci", rootfs.ImageDefaults(), image)
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
