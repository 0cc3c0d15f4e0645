"""Sandboxes booted from other image sources: a private registry whose credentials the
SDK gives for one create (pulled in the caller's process, never stored) with pull
progress reported to the caller; raw and QCOW2 disk images as the read-only root."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from images.disk_images import as_qcow2, busybox_disk
from images.oci_layout import Layout, busybox_layer
from images.registry import PASSWORD, USER, RegistryServer, run_registry

from corral import ImageError, PullProgress, RegistryAuth, Sandbox, SyncSandbox

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def private(corral_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A busybox image on a TLS registry with basic auth, trusted (its CA) but with no
    credentials configured anywhere."""
    with run_registry(tmp_path_factory.mktemp("vm-private") / "tls", tls=True) as server:
        settings = corral_home / "registries.json"
        settings.write_text(json.dumps(_hosts(server)))
        layout = Layout(tmp_path_factory.mktemp("vm-private-layout") / "busybox")
        layout.tag(layout.image([busybox_layer()], config={"Env": ["PATH=/bin"]}), "1.0")
        yield server.push(layout.path, "1.0", "private/busybox")
        settings.unlink()


def _hosts(server: RegistryServer) -> dict[str, dict[str, str]]:
    return {host: {"ca_file": str(h.ca_file)} for host, h in server.settings.hosts.items()}


async def test_registry_auth_and_progress_from_the_builder(private: str, corral_home: Path) -> None:
    with pytest.raises(ImageError, match="requires a login"):
        await Sandbox.builder("auth-none").image(private).create()
    events: list[PullProgress] = []
    builder = (
        Sandbox.builder("auth-ok")
        .image(private)
        .registry_auth(RegistryAuth(USER, PASSWORD))
        .on_pull_progress(events.append)
    )
    async with await builder.create() as sb:
        assert (await sb.exec("/bin/echo", ["in"])).stdout == b"in\n"
        assert events and events[-1].done == events[-1].total
        with contextlib.closing(sqlite3.connect(corral_home / "state.db")) as db:
            dumped = "\n".join(db.iterdump())
        assert PASSWORD not in dumped
        # Not state.db*: closing a descriptor of it would drop SQLite's locks in this process.
        files = [p for p in corral_home.rglob("*") if not p.name.startswith("state.db")]
        leaked = [p for p in files if p.is_file() and _has(p, PASSWORD)]
        assert leaked == []


def _has(path: Path, secret: str) -> bool:
    try:
        return secret.encode() in path.read_bytes()
    except OSError:
        return False


@pytest.mark.parametrize("kind", ["raw", "qcow2"])
async def test_boot_from_a_disk_image(kind: str, corral_home: Path, tmp_path: Path) -> None:
    disk = busybox_disk(tmp_path, f"booted from {kind}".encode())
    if kind == "qcow2":
        disk = as_qcow2(disk, tmp_path / "root.qcow2", "-c")
    async with await Sandbox.builder(f"disk-{kind}").image(str(disk)).create() as sb:
        assert (await sb.exec("/bin/cat", ["/marker"])).stdout == f"booted from {kind}".encode()
        await sb.fs.write("/marker", b"changed in the upper layer")
    again = await Sandbox.builder(f"disk-{kind}-2").image(str(disk)).create()
    async with again:  # the disk image itself was not written: the write went to the upper
        assert (await again.exec("/bin/cat", ["/marker"])).stdout.startswith(b"booted")


def test_the_blocking_builder_pulls_with_its_credentials_too(private: str) -> None:
    events: list[PullProgress] = []
    builder = (
        SyncSandbox.builder("auth-sync")
        .image(private)
        .registry_auth(RegistryAuth(USER, PASSWORD))
        .on_pull_progress(events.append)
        .pull_policy("Always")
    )
    with builder.create() as sb:
        assert sb.exec("/bin/echo", ["sync"]).stdout == b"sync\n"
    assert events
