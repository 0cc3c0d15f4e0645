"""pull(reference, policy): bring an image into the local store from its registry.

The manifest for this host's platform is chosen from an index, the config and the
layers are downloaded (layers concurrently) into the blob store, which checks every
digest, and only then are the manifest and the reference recorded: an interrupted pull
leaves at most verified blobs behind, never an image that looks complete.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

from corral._errors import ImageError
from corral.node_agent.images import manifest
from corral.node_agent.images.blobs import Sink
from corral.node_agent.images.distribution import Progress, Registry
from corral.node_agent.images.reference import Reference, parse
from corral.node_agent.images.settings import RegistrySettings
from corral.node_agent.images.store import Image, ImageStore


class PullPolicy(enum.Enum):
    ALWAYS = "Always"
    """Ask the registry every time (a moved tag is followed)."""
    IF_MISSING = "IfMissing"
    """Use the local image when every blob of it is present."""
    NEVER = "Never"
    """Only the local image; an error if it is not there."""


async def pull(
    text: str,
    store: ImageStore,
    settings: RegistrySettings,
    policy: PullPolicy = PullPolicy.IF_MISSING,
    progress: Progress | None = None,
) -> Image:
    """The image `text` names, pulled according to `policy`."""
    reference = parse(text)
    if policy is not PullPolicy.ALWAYS:
        local = store.lookup(reference)
        if local is not None:
            return local
        if policy is PullPolicy.NEVER:
            raise ImageError(
                f"image {text!r} is not in the local store and the pull policy is Never"
            )
    async with Registry(settings) as registry:
        return await _pull(registry, reference, store, settings.concurrency, progress)


async def _pull(
    registry: Registry,
    reference: Reference,
    store: ImageStore,
    concurrency: int,
    progress: Progress | None,
) -> Image:
    data, media_type, digest = await registry.manifest(reference, reference.locator)
    found = manifest.parse(data, media_type, f"manifest of {reference}")
    if isinstance(found, manifest.Index):
        entry = found.pick(manifest.host_platform(), f"index of {reference}")
        data, media_type, digest = await registry.manifest(reference, entry.digest)
        found = manifest.parse(data, media_type, f"manifest {entry.digest} of {reference}")
        if not isinstance(found, manifest.Manifest):
            raise ImageError(f"index of {reference}: entry {entry.digest} is itself an index")
    config = found.config
    if config.size > manifest.MAX_CONFIG_BYTES:
        raise ImageError(f"config of {reference}: {config.size} bytes is too large")
    await store.blobs.fetch(config.digest, config.size, _download(registry, reference, config))
    manifest.parse_config(store.blobs.read(config.digest, config.size), f"config of {reference}")
    if progress is not None:  # every layer up front, so that totals are right from the start
        for layer in found.layers:
            progress(layer.digest, layer.size if store.blobs.has(layer.digest) else 0, layer.size)
    limit = asyncio.Semaphore(concurrency)

    async def fetch(layer: manifest.Descriptor) -> None:
        async with limit:
            download = _download(registry, reference, layer, progress)
            await store.blobs.fetch(layer.digest, layer.size, download)

    try:
        async with asyncio.TaskGroup() as group:
            for layer in found.layers:
                group.create_task(fetch(layer), name=f"pull {layer.digest[:19]}")
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the first failure; the others were cancelled
    store.blobs.put(digest, data)
    store.record(reference, digest)
    return store.image(reference, digest)


def _download(
    registry: Registry,
    reference: Reference,
    descriptor: manifest.Descriptor,
    progress: Progress | None = None,
) -> Callable[[Sink], Awaitable[None]]:
    async def download(sink: Sink) -> None:
        await registry.blob(reference, descriptor, sink, progress)

    return download


def pull_sync(
    text: str, store: ImageStore, settings: RegistrySettings, policy: PullPolicy
) -> Image:
    """`pull` for synchronous callers (the launch of a sandbox)."""
    return asyncio.run(pull(text, store, settings, policy))
