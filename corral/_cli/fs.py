"""`corral cp`: copy one file between the host and a sandbox.

A sandbox path is `NAME:/absolute/path` (in a cluster, `NAMESPACE/NAME:/path`); anything
else is a host path (write a host path that contains a colon as `./a:b`). Host→guest
keeps the permission bits; guest→host appears atomically, only once complete.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import click

from corral._cli.errors import Failure
from corral._config import NAME_PATTERN
from corral._errors import FsError
from corral._fs import FsGateway
from corral._sandbox import Sandbox, SandboxHandle

GUEST_SPEC = re.compile(r"(?P<name>[^:/]+):(?P<path>.*)", re.DOTALL)
CLUSTER_SPEC = re.compile(r"(?P<name>[^:/]+/[^:/]+):(?P<path>.*)", re.DOTALL)
"""`NAMESPACE/NAME:/path`, a sandbox path in a cluster."""
Opener = Callable[[str], Awaitable[SandboxHandle]]
NO_DIRECTORIES = "directories are not supported yet"


@dataclass(frozen=True)
class GuestPath:
    sandbox: str
    path: str


def parse_location(text: str, spec: re.Pattern[str] = GUEST_SPEC) -> GuestPath | Path:
    """`NAME:/path` is in a sandbox; any other text is a host path."""
    match = spec.fullmatch(text)
    names = match["name"].split("/") if match else []
    if match is None or not all(re.fullmatch(NAME_PATTERN, name) for name in names):
        return Path(text)
    if not match["path"].startswith("/"):
        raise click.BadParameter(f"the guest path in {text!r} must be absolute (NAME:/path)")
    return GuestPath(match["name"], match["path"])


@dataclass(frozen=True)
class CopyIn:
    host: Path
    guest: GuestPath


@dataclass(frozen=True)
class CopyOut:
    guest: GuestPath
    host: Path


def parse_copy(source: str, target: str, spec: re.Pattern[str] = GUEST_SPEC) -> CopyIn | CopyOut:
    """The direction of a copy; exactly one side must be in a sandbox."""
    origin, destination = parse_location(source, spec), parse_location(target, spec)
    if isinstance(origin, Path) and isinstance(destination, GuestPath):
        return CopyIn(origin, destination)
    if isinstance(origin, GuestPath) and isinstance(destination, Path):
        return CopyOut(origin, destination)
    if isinstance(origin, GuestPath):
        raise click.UsageError("copying between two sandboxes is not supported; copy via the host")
    raise click.UsageError("one of SRC and DST must be a sandbox path, NAME:/path")


@click.command()
@click.argument("source", metavar="SRC")
@click.argument("target", metavar="DST")
def cp(source: str, target: str) -> int:
    """Copy a file between the host and a sandbox: exactly one of SRC, DST is NAME:/path.

    If DST is an existing directory, the file keeps its name inside it.
    """
    return run_copy(parse_copy(source, target), Sandbox.get)


def run_copy(copy: CopyIn | CopyOut, open_sandbox: Opener) -> int:
    """Run a parsed copy against the sandbox that `open_sandbox(name)` connects to."""
    try:
        if isinstance(copy, CopyIn):
            if copy.host.is_dir():
                raise Failure(f"{copy.host}: {NO_DIRECTORIES}")
            copy.host.stat()  # a missing source fails here, before any sandbox is touched
            asyncio.run(_copy_in(copy.host, copy.guest, open_sandbox))
        else:
            host = copy.host
            if host.is_dir():
                host = host / posixpath.basename(copy.guest.path.rstrip("/"))
            asyncio.run(_copy_out(copy.guest, host, open_sandbox))
    except OSError as exc:
        raise Failure(f"{exc.strerror or exc}: {exc.filename}") from exc
    return 0


async def _copy_in(source: Path, target: GuestPath, open_sandbox: Opener) -> None:
    sandbox = await open_sandbox(target.sandbox)
    try:
        path = target.path
        if path.endswith("/") or await _is_guest_dir(sandbox.fs, path):
            path = posixpath.join(path, source.name)
        await sandbox.fs.copy_in(source, path)
    finally:
        await sandbox.close()


async def _copy_out(source: GuestPath, target: Path, open_sandbox: Opener) -> None:
    sandbox = await open_sandbox(source.sandbox)
    try:
        if await _is_guest_dir(sandbox.fs, source.path):
            raise Failure(f"{source.sandbox}:{source.path}: {NO_DIRECTORIES}")
        await sandbox.fs.copy_out(source.path, target)
    finally:
        await sandbox.close()


async def _is_guest_dir(fs: FsGateway, path: str) -> bool:
    try:
        return (await fs.stat(path)).kind == "dir"
    except FsError as exc:
        if exc.kind == "NotFound":
            return False
        raise
