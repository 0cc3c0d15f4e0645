"""Sandboxes booted from OCI images pulled from a real registry on loopback: the image's
Entrypoint, Env and WorkingDir are honoured, and a second sandbox of the same image
shares its root disk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from images.oci_layout import Layout, busybox_layer
from images.registry import RegistryServer, run_registry

from corral import ImageError, Sandbox

pytestmark = pytest.mark.vm

CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["echo default"],
    "Env": ["PATH=/bin", "GREETING=from-the-image"],
    "WorkingDir": "/work",
}


@pytest.fixture(scope="module")
def registry(
    corral_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    """A plain-HTTP registry, declared insecure in the home's registries.json."""
    with run_registry(tmp_path_factory.mktemp("vm-registry") / "plain", tls=False) as server:
        settings = corral_home / "registries.json"
        settings.write_text(json.dumps({server.host: {"insecure": True}}))
        yield server
        settings.unlink()


@pytest.fixture(scope="module")
def busybox(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    layout = Layout(tmp_path_factory.mktemp("vm-layout") / "busybox")
    layout.tag(layout.image([busybox_layer()], config=CONFIG), "1.0")
    return registry.push(layout.path, "1.0", "corral/busybox")


async def test_boot_from_a_pulled_image(busybox: str, corral_home: Path) -> None:
    sandbox = Sandbox.builder("oci-main").image(busybox).cmd(['echo "$GREETING in $(pwd)"'])
    async with await sandbox.create() as sb:
        for _ in range(200):
            if Sandbox.inspect("oci-main").main_exit.startswith("exited"):
                break
            await asyncio.sleep(0.05)
        assert Sandbox.inspect("oci-main").main_exit == "exited 0"
        log = corral_home / "sandboxes" / sb.uid / "main.log"
        assert log.read_bytes() == b"from-the-image in /work\n"
        out = await sb.exec("/bin/sh", ["-c", 'echo "$GREETING $PATH"; pwd'])
        assert out.stdout == b"from-the-image /bin\n/work\n"
        bases = set((corral_home / "images").glob("*/root.ext4"))
        async with await Sandbox.builder("oci-second").image(busybox).create() as second:
            assert (await second.exec("/bin/cat", ["/proc/self/cmdline"])).exit_code == 0
            assert set((corral_home / "images").glob("*/root.ext4")) == bases


async def test_unknown_image_is_a_clear_error(registry: RegistryServer, corral_home: Path) -> None:
    with pytest.raises(ImageError, match=r"absent:1\.0: not found on registry"):
        await Sandbox.builder("oci-absent").image(f"{registry.host}/absent:1.0").create()


async def test_never_policy_with_a_missing_image(
    registry: RegistryServer, corral_home: Path, tmp_path: Path
) -> None:
    """The image is on the registry but not local: Never refuses to pull it, and the
    failed create leaves no record, no sandbox directory and nothing in the image store."""
    layout = Layout(tmp_path / "never")
    layout.tag(layout.image([busybox_layer()], config=CONFIG), "1.0")
    reference = registry.push(layout.path, "1.0", "corral/never")
    images = corral_home / "images"
    before = set(images.rglob("*")), set((corral_home / "sandboxes").glob("*"))
    builder = Sandbox.builder("oci-never").image(reference).pull_policy("Never")
    with pytest.raises(ImageError, match=r"not in the local store and the pull policy is Never"):
        await builder.create()
    assert "oci-never" not in {record.name for record in Sandbox.list()}
    assert (set(images.rglob("*")), set((corral_home / "sandboxes").glob("*"))) == before
