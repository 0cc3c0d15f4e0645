"""Pulling from a real registry on loopback and unpacking: the busybox image, layers
with whiteouts and opaque directories, a multi-arch index, TLS with basic auth, and
hostile or corrupt content that is rejected without anything being cached."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from corral import ImageError
from corral._images import RegistryAuth
from corral.node_agent.images.pull import PullPolicy, pull
from corral.node_agent.images.reference import parse
from corral.node_agent.images.settings import RegistryHost, RegistrySettings, read_docker_auths
from corral.node_agent.images.store import ImageStore
from corral.node_agent.images.unpack import UnpackLimits
from images.oci_layout import MEDIA, Layout, busybox_layer, compress, digest_of, entry, tar
from images.range_proxy import run_range_dropping_proxy
from images.registry import PASSWORD, USER, RegistryServer, run_registry
from images.token_auth import run_token_server

CONFIG = {
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["echo hi"],
    "Env": ["PATH=/bin", "GREETING=hello"],
    "WorkingDir": "/work",
    "User": "1000:1000",
}


def push(server: RegistryServer, tmp_path: Path, name: str, *layers: bytes, **kw: object) -> str:
    layout = Layout(tmp_path / f"layout-{name}")
    layout.tag(layout.image(list(layers), **kw), "v1")  # type: ignore[arg-type]
    return server.push(layout.path, "v1", name)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


async def test_busybox_image(registry: RegistryServer, store: ImageStore, tmp_path: Path) -> None:
    reference = push(registry, tmp_path, "busybox", busybox_layer(), config=CONFIG)
    image = await pull(reference, store, registry.settings, PullPolicy.IF_MISSING)
    assert image.config.entrypoint == ["/bin/sh", "-c"]
    assert image.config.env == ["PATH=/bin", "GREETING=hello"]
    assert (image.config.workdir, image.config.user) == ("/work", "1000:1000")
    tree = tmp_path / "tree"
    tree.mkdir()
    store.unpack(image, tree, UnpackLimits())
    assert (tree / "bin/busybox").read_bytes() == Path("/bin/busybox").read_bytes()
    assert os.readlink(tree / "bin/sh") == "busybox"
    assert (tree / "tmp").stat().st_mode & 0o7777 == 0o1777
    # Present now: Never and IfMissing answer locally, Always asks again (same digest).
    for policy in PullPolicy:
        assert (await pull(reference, store, registry.settings, policy)).digest == image.digest


async def test_layers_with_whiteouts_opaque_dirs_and_links(
    registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    lower = tar(
        entry("etc/gone", b"a"),
        entry("etc/kept", b"b"),
        entry("opt/dir/old", b"old"),
        entry("opt/dir/sub/deep", b"deep"),
        entry("srv/tree/x", b"x"),
        entry("usr/bin/tool", b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=2000),
        entry("usr/bin/tool-link", type=tarfile.LNKTYPE, linkname="usr/bin/tool"),
        entry("usr/bin/abs", type=tarfile.SYMTYPE, linkname="/usr/bin/tool"),
        entry("dev/null", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
        entry("run/fifo", type=tarfile.FIFOTYPE),
    )
    upper = tar(
        entry("etc/.wh.gone"),
        entry("srv/.wh.tree"),
        entry("opt/dir/new", b"new"),  # before the opaque marker in the same layer: kept
        entry("opt/dir/.wh..wh..opq"),
        entry("etc/kept", b"replaced"),
    )
    top = tar(entry("srv/tree", b"now a file"))
    layout = Layout(tmp_path / "layout")
    manifest = layout.image([lower], compression="gzip")
    # The same lower layer, then a zstd and an uncompressed one: three media types.
    document = json.loads((layout.path / "blobs/sha256" / manifest["digest"][7:]).read_bytes())
    extra = [Layout.blob(layout, *pair) for pair in _compressed(upper, top)]
    document["layers"] += extra
    tagged = layout.blob(json.dumps(document).encode(), document["mediaType"])
    layout.tag(tagged, "v1")
    reference = registry.push(layout.path, "v1", "layered")
    image = await pull(reference, store, registry.settings)
    assert [layer.media_type.rsplit(".", 1)[-1] for layer in image.layers] == [
        "tar+gzip",
        "tar+zstd",
        "tar",
    ]
    tree = tmp_path / "tree"
    tree.mkdir()
    store.unpack(image, tree, UnpackLimits())
    assert not (tree / "etc/gone").exists()
    assert (tree / "etc/kept").read_bytes() == b"replaced"
    assert sorted(os.listdir(tree / "opt/dir")) == ["new"]
    assert (tree / "srv/tree").read_bytes() == b"now a file"
    tool = (tree / "usr/bin/tool").stat()
    assert (tool.st_mode & 0o7777, tool.st_uid, tool.st_gid) == (0o4755, 1000, 2000)
    assert (tree / "usr/bin/tool-link").stat().st_ino == tool.st_ino
    assert os.readlink(tree / "usr/bin/abs") == "/usr/bin/tool"
    assert not (tree / "dev/null").exists()
    assert (tree / "run/fifo").is_fifo()


def _compressed(upper: bytes, top: bytes) -> list[tuple[bytes, str]]:
    return [(compress(upper, "zstd"), MEDIA["zstd"]), (top, MEDIA["tar"])]


async def test_multi_arch_index_picks_the_host_platform(
    registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    layout = Layout(tmp_path / "layout")
    amd64 = layout.image([tar(entry("arch", b"amd64"))], architecture="amd64")
    arm64 = layout.image([tar(entry("arch", b"arm64"))], architecture="arm64")
    layout.tag(layout.index([arm64, amd64]), "v1")
    reference = registry.push(layout.path, "v1", "multi")
    image = await pull(reference, store, registry.settings)
    assert image.digest == amd64["digest"]
    tree = tmp_path / "tree"
    tree.mkdir()
    store.unpack(image, tree, UnpackLimits())
    assert (tree / "arch").read_bytes() == b"amd64"
    only_arm = Layout(tmp_path / "arm")
    only_arm.tag(only_arm.index([only_arm.image([tar()], architecture="arm64")]), "v1")
    arm_reference = registry.push(only_arm.path, "v1", "arm-only")
    with pytest.raises(ImageError, match=r"no image for linux/amd64 \(available: linux/arm64\)"):
        await pull(arm_reference, store, registry.settings)


HOSTILE = {
    "traversal": (tar(entry("../../escaped", b"x")), "'../../escaped' escapes the root"),
    "absolute": (tar(entry("/etc/escaped", b"x")), "'/etc/escaped' has an absolute"),
    "symlink-parent": (
        tar(entry("evil", type=tarfile.SYMTYPE, linkname="{outside}"), entry("evil/escaped", b"x")),
        "'evil/escaped' goes through 'evil', a symlink",
    ),
    "hardlink-out": (
        tar(entry("link", type=tarfile.LNKTYPE, linkname="../../etc/passwd")),
        "'../../etc/passwd' escapes the root",
    ),
    "hardlink-missing": (
        tar(entry("link", type=tarfile.LNKTYPE, linkname="etc/shadow")),
        "'etc/shadow' refers to a path not in the image",
    ),
    "huge-file": (
        tar(entry("zeros", bytes(3 << 20))),
        "'zeros' .* past its unpacked size limit of 2097152 bytes",
    ),
    "whiteout-dotdot": (tar(entry("a/.wh...")), "invalid whiteout 'a/.wh...'"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_hostile_layers_are_rejected_and_not_cached(
    kind: str, registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layer, problem = HOSTILE[kind]
    layer = tar(*_rewrite_outside(layer, outside))
    reference = push(registry, tmp_path, f"hostile-{kind}", layer)
    image = await pull(reference, store, registry.settings)
    tree = tmp_path / "work/tree"
    tree.mkdir(parents=True)
    with pytest.raises(ImageError, match=problem):
        store.unpack(image, tree, UnpackLimits(max_bytes=2 << 20))
    assert os.listdir(outside) == []
    assert not (tmp_path / "escaped").exists()
    assert not store.blobs.has(image.layers[0].digest)
    assert store.lookup(image.reference) is None
    with pytest.raises(ImageError, match="pull policy is Never"):
        await pull(reference, store, registry.settings, PullPolicy.NEVER)


def _rewrite_outside(layer: bytes, outside: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The layer's entries, with a symlink target "{outside}" made to point at `outside`."""
    members = []
    with tarfile.open(fileobj=io.BytesIO(layer)) as archive:
        for member in archive:
            if member.linkname == "{outside}":
                member.linkname = str(outside)
            file = archive.extractfile(member) if member.isreg() else None
            members.append((member, file.read() if file else b""))
    return members


async def test_blob_with_a_wrong_digest_is_rejected_and_not_cached(
    registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    reference = push(registry, tmp_path, "corrupt", tar(entry("file", b"good content")))
    layout_manifest = json.loads((tmp_path / "layout-corrupt/index.json").read_text())
    manifest_digest = layout_manifest["manifests"][0]["digest"]
    manifest = json.loads(
        (tmp_path / "layout-corrupt/blobs/sha256" / manifest_digest[7:]).read_bytes()
    )
    layer = manifest["layers"][0]["digest"]
    data = registry.blob_data(layer)
    data.write_bytes(bytes(len(data.read_bytes())))
    with pytest.raises(ImageError, match=f"blob {layer}: received .* with digest sha256:"):
        await pull(reference, store, registry.settings)
    assert not store.blobs.has(layer)
    assert sorted(p.name for p in store.blobs.directory.iterdir()) == [
        manifest["config"]["digest"][7:]
    ]  # the config (verified) stays; no partial file is left, no manifest, no reference
    with pytest.raises(ImageError, match="pull policy is Never"):
        await pull(reference, store, registry.settings, PullPolicy.NEVER)


async def test_never_with_a_missing_image(registry: RegistryServer, store: ImageStore) -> None:
    with pytest.raises(ImageError, match=r"'127.0.0.1:\d+/absent:v1' is not in the local store"):
        await pull(f"{registry.host}/absent:v1", store, registry.settings, PullPolicy.NEVER)


async def test_missing_image_on_the_registry(registry: RegistryServer, store: ImageStore) -> None:
    with pytest.raises(ImageError, match="absent:v1: not found on registry"):
        await pull(f"{registry.host}/absent:v1", store, registry.settings)


async def test_tls_and_basic_auth(
    secure_registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    reference = push(secure_registry, tmp_path, "private", tar(entry("secret", b"s")))
    image = await pull(reference, store, secure_registry.settings)
    assert image.layers
    host = secure_registry.host
    ca_only = RegistrySettings(hosts=secure_registry.settings.hosts)
    with pytest.raises(ImageError, match=f"registry {host} requires a login"):
        await pull(reference, store, ca_only, PullPolicy.ALWAYS)
    wrong = RegistrySettings(
        hosts=secure_registry.settings.hosts, credentials={host: RegistryAuth(USER, "wrong")}
    )
    with pytest.raises(ImageError, match=f"registry {host} rejected the credentials"):
        await pull(reference, store, wrong, PullPolicy.ALWAYS)
    with pytest.raises(ImageError, match=f"cannot reach registry {host}: .*CERTIFICATE_VERIFY"):
        await pull(reference, store, RegistrySettings(), PullPolicy.ALWAYS)


async def test_credentials_from_a_docker_config(
    secure_registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    reference = push(secure_registry, tmp_path, "via-config", tar(entry("f", b"f")))
    config = tmp_path / "config.json"
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(
        json.dumps({"auths": {f"https://{secure_registry.host}/v1/": {"auth": auth}}})
    )
    credentials = read_docker_auths(config)
    assert credentials == {secure_registry.host: RegistryAuth(USER, PASSWORD)}
    settings = RegistrySettings(hosts=secure_registry.settings.hosts, credentials=credentials)
    assert (await pull(reference, store, settings)).layers


async def test_registry_stopped_mid_pull_then_resumed(store: ImageStore, tmp_path: Path) -> None:
    """The registry dies while a large layer downloads: a clear error that names it, no
    blob and no image record, only the dot-named partial file. Once the registry is
    back, the next pull asks for the rest with a Range request (a 206 for the missing
    bytes only, in the registry's access log) and the whole blob's digest is checked."""
    with run_registry(tmp_path / "registry", tls=False, access_log=True) as server:
        big = tar(entry("big", os.urandom(48 << 20)))
        layout = Layout(tmp_path / "layout-big")
        layout.tag(layout.image([busybox_layer(), big], compression="tar"), "v1")
        reference = server.push(layout.path, "v1", "big")
        big_digest = digest_of(big)

        def stop_once_started(digest: str, received: int, total: int) -> None:
            if digest == big_digest and received >= 4 << 20 and server.process is not None:
                server.stop(abrupt=True)

        with pytest.raises(ImageError, match=rf"registry {re.escape(server.host)}"):
            await pull(reference, store, server.settings, PullPolicy.ALWAYS, stop_once_started)
        assert server.process is None, "the registry was not stopped mid-download"
        assert not store.blobs.has(big_digest)
        assert big_digest not in store.blobs.digests()
        [partial] = store.blobs.directory.glob(".partial-*")
        kept = partial.stat().st_size
        assert 4 << 20 <= kept < len(big)
        assert store.lookup(parse(reference)) is None

        server.start()
        image = await pull(reference, store, server.settings, PullPolicy.ALWAYS)
        assert store.blobs.has(big_digest)
        assert store.lookup(parse(reference)) == image
        assert not list(store.blobs.directory.glob(".partial-*"))
        log = (tmp_path / "registry/registry.log").read_text()
        ranged = re.findall(rf'"GET /v2/big/blobs/{big_digest} HTTP/1.1" 206 (\d+)', log)
        assert [int(size) for size in ranged] == [len(big) - kept]


async def test_a_wrong_partial_file_is_discarded(
    registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    """Resumed bytes are checked with the rest: a partial file holding the wrong bytes
    makes the pull fail on the whole blob's digest and is deleted, so the next pull
    downloads from the start; one as long as the blob but wrong is discarded at once."""
    layer = tar(entry("data", os.urandom(3 << 20)))
    reference = push(registry, tmp_path, "resume-wrong", layer, compression="tar")
    partial = store.blobs.directory / f".partial-{digest_of(layer)[7:]}"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(bytes(1 << 20))
    with pytest.raises(ImageError, match=f"blob {digest_of(layer)}: received {len(layer)} bytes"):
        await pull(reference, store, registry.settings)
    assert not partial.exists()
    partial.write_bytes(bytes(len(layer)))  # complete but wrong: nothing to resume
    image = await pull(reference, store, registry.settings)
    assert store.blobs.path(image.layers[0].digest).read_bytes() == layer


async def test_a_registry_that_ignores_range_restarts_cleanly(
    registry: RegistryServer, store: ImageStore, tmp_path: Path
) -> None:
    """The partial file holds a good first MiB and the client asks for the rest, but the
    registry (here behind a proxy that drops Range) sends the whole blob with a 200: the
    held bytes are discarded and the blob is taken from the start."""
    layer = tar(entry("data", os.urandom(3 << 20)))
    reference = push(registry, tmp_path, "resume-200", layer, compression="tar")
    partial = store.blobs.directory / f".partial-{digest_of(layer)[7:]}"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(layer[: 1 << 20])
    with run_range_dropping_proxy(registry.host) as proxy:
        settings = RegistrySettings(hosts={proxy.host: RegistryHost(insecure=True)})
        proxied = reference.replace(registry.host, proxy.host)
        image = await pull(proxied, store, settings)
    assert proxy.ranges == [f"bytes={1 << 20}-"]
    assert store.blobs.path(image.layers[0].digest).read_bytes() == layer
    assert not partial.exists()


async def test_prune_removes_abandoned_partial_files(store: ImageStore) -> None:
    stale = store.blobs.directory / f".partial-{'a' * 64}"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"abandoned")
    assert store.prune(set()) == [str(stale)]
    assert not stale.exists()


async def test_bearer_token_auth(store: ImageStore, tmp_path: Path) -> None:
    """docker-registry in token mode: a 401 with a Bearer challenge, a token fetched from
    the test's endpoint with the configured credentials, then the pull; wrong credentials
    are a clear auth error."""
    with (
        run_token_server(tmp_path / "token") as tokens,
        run_registry(tmp_path / "registry", tls=False, auth=tokens.registry_auth()) as server,
    ):
        reference = push(server, tmp_path, "private/busybox", busybox_layer(), config=CONFIG)
        pushed = len(tokens.issued)
        image = await pull(reference, store, server.settings, PullPolicy.ALWAYS)
        assert image.config.entrypoint == ["/bin/sh", "-c"]
        assert tokens.issued[pushed:] == ["repository:private/busybox:pull"]

        wrong = RegistrySettings(
            hosts=server.settings.hosts, credentials={server.host: RegistryAuth(USER, "wrong")}
        )
        with pytest.raises(ImageError, match=r"authentication failed at .*/token \(HTTP 401\)"):
            await pull(reference, ImageStore(tmp_path / "other"), wrong, PullPolicy.ALWAYS)
