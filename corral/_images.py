"""The SDK's images: `pull`, `load`, the `Image` they return, and registry credentials.

The SDK does not import the runtime: a pull or a load runs in a short-lived helper
process (`python -m corral.node_agent.images.worker`), the way a sandbox's launch does.
Credentials reach it on its stdin pipe only, so they are never on a command line, in
the state store or in a log, and live no longer than the pull; progress comes back as
JSON lines and is handed to the caller's callback in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from corral._errors import ImageError
from corral._paths import Paths

DOCKER_HUB = "docker.io"
MAX_LINE_BYTES = 16 << 20
"""A reply line from the helper (an image's description) is bounded like a manifest."""

Policy = Literal["Always", "IfMissing", "Never"]


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry: a username and password; or a bearer `token`,
    presented to the registry as is; or an `identity_token` (what `docker login` keeps
    for registries with OAuth2), exchanged at the registry's token endpoint for each
    pull. Never stored and never shown (`repr` hides the secrets)."""

    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        kinds = [bool(self.username or self.password), bool(self.token), bool(self.identity_token)]
        if sum(kinds) != 1:
            raise ImageError(
                "RegistryAuth takes a username and password, a token or an identity_token"
            )


RegistryAuths = RegistryAuth | Mapping[str, RegistryAuth]
"""One RegistryAuth (for the reference's registry) or one per registry host."""


@dataclass(frozen=True)
class PullProgress:
    """A layer download moved on: `done` of `total` bytes of the blob `layer`."""

    layer: str
    done: int
    total: int


@dataclass(frozen=True)
class ImageLayer:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Image:
    """A local image and what its config says about running it."""

    reference: str
    digest: str
    """The manifest's digest (for this host's platform): the image's identity."""
    size: int
    """Bytes of its layers as stored (compressed)."""
    created: str
    """When it was built (RFC 3339, as its config says), or ""."""
    architecture: str
    os: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    user: str
    layers: tuple[ImageLayer, ...]

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Image:
        """An image from the description the runtime writes (`corral image inspect`)."""
        config = document["config"]
        return cls(
            reference=document["reference"],
            digest=document["digest"],
            size=document["size"],
            created=document["created"],
            architecture=document["architecture"],
            os=document["os"],
            entrypoint=tuple(config["entrypoint"]),
            cmd=tuple(config["cmd"]),
            env=tuple(config["env"]),
            workdir=config["workdir"],
            user=config["user"],
            layers=tuple(ImageLayer(**layer) for layer in document["layers"]),
        )


ProgressCallback = Callable[[PullProgress], None]


async def pull(
    reference: str,
    *,
    auth: RegistryAuths | None = None,
    policy: Policy = "IfMissing",
    progress: ProgressCallback | None = None,
) -> Image:
    """Bring the image `reference` into the local store (per `policy`) and describe it.

    `auth` adds to the credentials of `~/.docker/config.json` for this pull only.
    """
    if policy not in ("Always", "IfMissing", "Never"):
        raise ImageError(f"pull policy {policy!r} is not Always, IfMissing or Never")
    single = auth if isinstance(auth, RegistryAuth) else None
    by_host = None if isinstance(auth, RegistryAuth) else auth
    request = {
        "op": "pull",
        "reference": reference,
        "policy": policy,
        "auth": dataclasses.asdict(single) if single else None,  # for the reference's registry
        "auths": _auths_json(by_host),
        "progress": progress is not None,
    }
    [image] = await _run(request, progress)
    return image


async def load(path: str | os.PathLike[str], *, tag: str | None = None) -> list[Image]:
    """Import the images of an OCI layout directory, or of an OCI or Docker archive
    (`docker save`; skopeo's `oci-archive:`, `docker-archive:`), into the local store.
    Each is recorded under its name in the archive, or under `tag` when given."""
    request = {"op": "load", "path": os.fspath(path), "tag": tag}  # the helper shares our cwd
    return await _run(request, None)


def _auths_json(auths: Mapping[str, RegistryAuth] | None) -> dict[str, dict[str, str]]:
    found = {}
    for host, value in (auths or {}).items():
        if not isinstance(value, RegistryAuth):
            raise ImageError(f"auth for {host!r} is a {type(value).__name__}, not a RegistryAuth")
        found[registry_key(host)] = dataclasses.asdict(value)
    return found


async def _run(request: dict[str, Any], progress: ProgressCallback | None) -> list[Image]:
    command = [sys.executable, "-m", "corral.node_agent.images.worker"]
    command += ["--home", str(Paths.from_env().home)]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        limit=MAX_LINE_BYTES,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(request).encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        while line := await process.stdout.readline():
            message = json.loads(line)
            if "progress" in message:
                if progress is not None:
                    progress(PullProgress(**message["progress"]))
                continue
            if not message.get("ok"):
                raise ImageError(str(message.get("error")))
            return [Image.from_json(image) for image in message["images"]]
        stderr = await process.stderr.read(4096) if process.stderr else b""
        raise ImageError(f"the image helper exited without a reply: {stderr.decode()[-2000:]}")
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def registry_auths_from_docker_config(
    config: Mapping[str, Any], *, source: str = "docker config"
) -> dict[str, RegistryAuth]:
    """The `auths` of a decoded Docker config — `~/.docker/config.json`, or the JSON of a
    kubernetes.io/dockerconfigjson secret (imagePullSecrets) — keyed by registry host as
    references name it (`https://index.docker.io/v1/` → `docker.io`). Entries carry a
    base64 `auth` ("user:password"), `username`/`password`, an `identitytoken` or a
    `registrytoken`; entries with none of them (a credential helper's) are left out."""
    auths = config.get("auths", {})
    if not isinstance(auths, Mapping):
        raise ImageError(f"{source}: auths is not an object")
    found = {}
    for key, value in auths.items():
        if not isinstance(key, str) or not isinstance(value, Mapping):
            raise ImageError(f"{source}: auths entry {key!r} is not an object")
        auth = _entry_auth(value, f"{source}: auths entry {key!r}")
        if auth is not None:
            found[registry_key(key)] = auth
    return found


def _entry_auth(entry: Mapping[str, object], what: str) -> RegistryAuth | None:
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        return RegistryAuth(identity_token=identity)  # its username is a placeholder
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ImageError(f"{what}: auth is not base64 of 'user:password'") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise ImageError(f"{what}: auth is not base64 of 'user:password'")
        return RegistryAuth(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return RegistryAuth(user, secret)
    token = entry.get("registrytoken")
    if isinstance(token, str) and token:
        return RegistryAuth(token=token)
    return None


def registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://host:5000/x` → `host:5000`."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", "registry-1.docker.io") else host
