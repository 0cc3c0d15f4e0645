"""`corral.load` / `corral image load`: OCI layout directories, and OCI and Docker archives
written by skopeo, loaded into the local store; hostile archives (path traversal,
symlinks out, oversized entries, wrong digests) are refused and nothing is recorded."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import dependencies
import pytest

from corral import ImageError, load
from corral.node_agent.images.reference import parse
from corral.node_agent.images.store import ImageStore
from corral.node_agent.images.unpack import UnpackLimits
from images.oci_layout import Layout, busybox_layer, entry, tar

CONFIG = {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/work"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CORRAL_HOME", str(home))
    return home


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "layout")
    layout.tag(
        layout.image([busybox_layer(), tar(entry("work/hello", b"hi"))], config=CONFIG), "v1"
    )
    return layout


def skopeo(*args: str) -> None:
    if shutil.which("skopeo") is None:
        dependencies.missing("skopeo is missing: run scripts/setup")
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", *args], check=True, timeout=120)


def unpacked(home: Path, name: str, tmp_path: Path) -> Path:
    store = ImageStore(home / "images")
    image = store.lookup(parse(name))
    assert image is not None, f"{name} is not in the store"
    tree = tmp_path / f"tree-{len(list(tmp_path.glob('tree-*')))}"
    tree.mkdir()
    store.unpack(image, tree, UnpackLimits())
    return tree


async def test_docker_archive(home: Path, layout: Layout, tmp_path: Path) -> None:
    archive = tmp_path / "docker.tar"
    skopeo(f"oci:{layout.path}:v1", f"docker-archive:{archive}:corral/app:1.0")
    [image] = await load(archive)
    assert image.reference == "docker.io/corral/app:1.0"
    assert (image.entrypoint, image.workdir) == (("/bin/sh",), "/work")
    assert [layer.media_type for layer in image.layers] == [
        "application/vnd.oci.image.layer.v1.tar"
    ] * 2
    assert (unpacked(home, "corral/app:1.0", tmp_path) / "work/hello").read_bytes() == b"hi"
    [again] = await load(archive, tag="localhost/other:2")
    assert again.digest == image.digest  # the same archive is the same image


async def test_oci_archive_and_layout_directory(home: Path, layout: Layout, tmp_path: Path) -> None:
    archive = tmp_path / "oci.tar"
    skopeo(f"oci:{layout.path}:v1", f"oci-archive:{archive}:example.com/team/app:3.1")
    [image] = await load(archive)
    assert image.reference == "example.com/team/app:3.1"
    tree = unpacked(home, "example.com/team/app:3.1", tmp_path)
    assert (tree / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    # The layout names its image only by a tag ("v1"): a name must be given.
    with pytest.raises(ImageError, match="has no name in the archive: give a tag"):
        await load(layout.path)
    [named] = await load(layout.path, tag="localhost/layout:v1")
    assert named.digest == image.digest  # skopeo kept the manifest as it was


def test_cli_load(home: Path, layout: Layout, tmp_path: Path) -> None:
    archive = tmp_path / "cli.tar"
    skopeo(f"oci:{layout.path}:v1", f"docker-archive:{archive}:cli/app:1")
    corral = Path(sys.executable).with_name("corral")
    env = {**os.environ, "CORRAL_HOME": str(home)}
    loaded = subprocess.run(
        [str(corral), "image", "load", str(archive)], env=env, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    reference, digest = loaded.stdout.split()
    assert reference == "docker.io/cli/app:1" and digest.startswith("sha256:")
    listing = subprocess.run([str(corral), "image", "ls"], env=env, capture_output=True, text=True)
    assert "docker.io/cli/app:1" in listing.stdout


def archive_of(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def docker_manifest(layers: list[str], config: str = "config.json") -> bytes:
    return json.dumps([{"Config": config, "RepoTags": ["evil/app:1"], "Layers": layers}]).encode()


CONFIG_JSON = json.dumps({"config": {}, "rootfs": {"type": "layers"}}).encode()

HOSTILE = {
    "traversal-entry": (
        [entry("../escaped", b"x"), entry("manifest.json", docker_manifest([]))],
        "'../escaped' is absolute or escapes the archive",
    ),
    "absolute-entry": (
        [entry("/etc/evil", b"x"), entry("manifest.json", docker_manifest([]))],
        "'/etc/evil' is absolute or escapes the archive",
    ),
    "traversal-reference": (
        [
            entry("manifest.json", docker_manifest(["../../etc/passwd"])),
            entry("config.json", CONFIG_JSON),
        ],
        "'../../etc/passwd' is absolute or escapes the archive",
    ),
    "symlink-out": (
        [
            entry("manifest.json", docker_manifest(["layer.tar"])),
            entry("config.json", CONFIG_JSON),
            entry("layer.tar", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        ],
        "'/etc/passwd' is absolute or escapes the archive",
    ),
    "symlink-loop": (
        [
            entry("manifest.json", docker_manifest(["a"])),
            entry("config.json", CONFIG_JSON),
            entry("a", type=tarfile.SYMTYPE, linkname="b"),
            entry("b", type=tarfile.SYMTYPE, linkname="a"),
        ],
        "more than 8 links",
    ),
    "huge-manifest": (
        [entry("manifest.json", b" " * (5 << 20))],
        "'manifest.json' is 5242880 bytes, more than the 4194304 expected",
    ),
    "duplicate-entry": (
        [entry("manifest.json", b"[]"), entry("manifest.json", docker_manifest([]))],
        "entry 'manifest.json' appears twice",
    ),
    "neither-format": ([entry("hello", b"x")], "neither an OCI layout"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_hostile_archives_are_refused(kind: str, home: Path, tmp_path: Path) -> None:
    members, problem = HOSTILE[kind]
    archive = archive_of(tmp_path / f"{kind}.tar", *members)
    with pytest.raises(ImageError, match=problem):
        await load(archive)
    assert ImageStore(home / "images").records() == []
    assert not (tmp_path / "escaped").exists()


async def test_layout_blob_with_a_wrong_digest_or_a_symlink(
    home: Path, layout: Layout, tmp_path: Path
) -> None:
    manifest = json.loads((layout.path / "index.json").read_text())["manifests"][0]
    document = json.loads((layout.path / "blobs/sha256" / manifest["digest"][7:]).read_bytes())
    layer = layout.path / "blobs/sha256" / document["layers"][1]["digest"][7:]
    good = layer.read_bytes()
    layer.write_bytes(bytes(len(good)))
    with pytest.raises(ImageError, match=r"received \d+ bytes with digest"):
        await load(layout.path, tag="localhost/bad:1")
    secret = tmp_path / "secret"
    secret.write_bytes(good)
    layer.unlink()
    layer.symlink_to(secret)
    with pytest.raises(ImageError, match="cannot open"):
        await load(layout.path, tag="localhost/bad:1")
    store = ImageStore(home / "images")
    assert store.records() == []
    assert document["layers"][1]["digest"] not in store.blobs.digests()
