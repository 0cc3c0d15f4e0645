"""`python -m corral.node_agent.images.worker --home HOME`: the SDK's pull and load.

The SDK (corral._images) starts this helper rather than importing the runtime. It reads
one JSON request from stdin — `{"op": "pull", "reference", "policy", "auth",
"auths", "progress"}` or `{"op": "load", "path", "tag"}` — and answers with JSON lines on stdout:
`{"progress": {...}}` while layers download, then `{"ok": true, "images": [...]}` or
`{"ok": false, "kind", "error"}`. Credentials arrive only on stdin and are laid over the
configured ones for this one pull; nothing of them is written anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from corral._errors import CorralError, ImageError
from corral._images import RegistryAuth
from corral._paths import Paths
from corral.node_agent.images import settings
from corral.node_agent.images.reference import parse
from corral.node_agent.images.store import Image, ImageStore

MAX_REQUEST_BYTES = 1 << 20


def _send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _progress(digest: str, done: int, total: int) -> None:
    _send({"progress": {"layer": digest, "done": done, "total": total}})


async def _pull(request: dict[str, Any], home: Path) -> list[Image]:
    store = ImageStore(Paths(home).images)
    if request["policy"] != "Always":
        local = store.lookup(parse(request["reference"]))
        if local is not None:
            return [local]  # without loading the registry client (aiohttp)
    from corral.node_agent.images.pull import PullPolicy, pull

    configured = settings.load(home)
    given = {host: RegistryAuth(**fields) for host, fields in request["auths"].items()}
    if request["auth"] is not None:
        given[parse(request["reference"]).registry] = RegistryAuth(**request["auth"])
    registries = dataclasses.replace(configured, credentials={**configured.credentials, **given})
    progress = _progress if request["progress"] else None
    image = await pull(
        request["reference"], store, registries, PullPolicy(request["policy"]), progress
    )
    return [image]


async def _load(request: dict[str, Any], home: Path) -> list[Image]:
    from corral.node_agent.images.archive import load

    return await load(Path(request["path"]), ImageStore(Paths(home).images), request["tag"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", required=True, type=Path)
    args = parser.parse_args()
    try:
        request = json.loads(sys.stdin.buffer.read(MAX_REQUEST_BYTES))
        if request.get("op") == "pull":
            images = asyncio.run(_pull(request, args.home))
        elif request.get("op") == "load":
            images = asyncio.run(_load(request, args.home))
        else:
            raise ImageError(f"unknown image operation {request.get('op')!r}")
    except (CorralError, OSError, ValueError, KeyError, TypeError) as exc:
        kind = type(exc).__name__ if isinstance(exc, CorralError) else "ImageError"
        _send({"ok": False, "kind": kind, "error": str(exc) or type(exc).__name__})
        sys.exit(1)
    _send({"ok": True, "images": [image.describe() for image in images]})


if __name__ == "__main__":
    main()
