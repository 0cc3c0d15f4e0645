"""`corral pull` and `corral image ls|inspect|rm|prune`, run as the real binary against
the loopback registry, with a fresh CORRAL_HOME whose registries.json marks it insecure.
Prune is checked to keep what a live sandbox uses, even after its tag moved."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from corral._state import StateStore, current_process_identity
from corral.node_agent import rootfs, snapshots
from corral.node_agent.image_defaults import ImageDefaults
from corral.node_agent.images.manifest import ImageConfig
from corral.node_agent.images.reference import parse
from corral.node_agent.images.store import Image
from images.oci_layout import Layout, busybox_layer, entry, tar
from images.registry import RegistryServer

CORRAL = Path(sys.executable).with_name("corral")
CONFIG = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin"]}


@pytest.fixture
def home(tmp_path: Path, registry: RegistryServer) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "registries.json").write_text(json.dumps({registry.host: {"insecure": True}}))
    return home


def corral(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORRAL_HOME": str(home), "DOCKER_CONFIG": str(home / "docker")}
    return subprocess.run(
        [str(CORRAL), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def push(registry: RegistryServer, tmp_path: Path, repository: str, *extra: bytes) -> str:
    layout = Layout(tmp_path / f"layout-{repository.replace('/', '-')}-{len(extra)}")
    layout.tag(layout.image([busybox_layer(), *extra], config=CONFIG), "v1")
    return registry.push(layout.path, "v1", repository)


def fake_disk(home: Path, reference: str, digest: str) -> Path:
    """A root disk where rootfs would build the image's, without building it."""
    image = Image(parse(reference), digest, ImageConfig(), ())
    source = rootfs.ImageSource("", home / "images", "oci", ImageDefaults(), image)
    disk = home / "images" / rootfs.source_key(source)[:32] / "root.ext4"
    disk.parent.mkdir(parents=True)
    disk.write_bytes(b"disk")
    return disk


def blobs(home: Path) -> set[str]:
    return {path.name for path in (home / "images/blobs/sha256").iterdir()}


def test_pull_ls_inspect_rm_prune(registry: RegistryServer, home: Path, tmp_path: Path) -> None:
    reference = push(registry, tmp_path, "cli/busybox")
    pulled = corral(home, "pull", reference)
    assert pulled.returncode == 0, pulled.stderr
    digest = pulled.stdout.strip()
    assert digest.startswith("sha256:")
    listing = corral(home, "image", "ls")
    assert reference in listing.stdout and digest[:19] in listing.stdout
    [described] = json.loads(corral(home, "image", "ls", "--json").stdout)
    assert (described["reference"], described["digest"]) == (reference, digest)
    inspected = json.loads(corral(home, "image", "inspect", reference).stdout)
    assert inspected["config"]["entrypoint"] == ["/bin/sh", "-c"]
    assert len(inspected["layers"]) == 1
    stored = blobs(home)
    assert len(stored) == 3  # manifest, config, layer
    disk = fake_disk(home, reference, digest)
    orphan = home / "images" / ("0" * 32) / "root.ext4"
    orphan.parent.mkdir()
    orphan.write_bytes(b"old")
    snapshot = home / "images/snapshots" / ("1" * 32)
    snapshot.mkdir(parents=True)
    (snapshot / snapshots.FILES).write_text(json.dumps({str(disk): snapshots.file_identity(disk)}))

    assert corral(home, "image", "prune").returncode == 0
    assert (blobs(home), disk.exists(), orphan.exists()) == (stored, True, False)
    assert snapshot.exists()

    assert corral(home, "image", "rm", reference).returncode == 0
    missing = corral(home, "image", "inspect", reference)
    assert missing.returncode == 1
    assert "is not in the local store" in missing.stderr
    assert corral(home, "image", "ls", "--json").stdout.strip() == "[]"
    pruned = corral(home, "image", "prune")
    assert pruned.returncode == 0
    assert (blobs(home), disk.exists(), snapshot.exists()) == (set(), False, False)
    assert f"removed {digest}" in pruned.stdout
    assert f"removed {snapshot}" in pruned.stdout


def test_pull_policies_and_unknown_images(
    registry: RegistryServer, home: Path, tmp_path: Path
) -> None:
    reference = push(registry, tmp_path, "cli/policy")
    never = corral(home, "pull", "--policy", "never", reference)
    assert never.returncode == 1
    assert "not in the local store and the pull policy is Never" in never.stderr
    assert not (home / "images/blobs").exists()
    first = corral(home, "pull", "--policy", "missing", reference)
    assert first.returncode == 0, first.stderr
    again = corral(home, "pull", "--policy", "never", reference)
    assert again.stdout == first.stdout
    absent = corral(home, "pull", f"{registry.host}/cli/absent:v1")
    assert absent.returncode == 1
    assert "corral: error:" in absent.stderr and "not found" in absent.stderr
    assert corral(home, "image", "rm", f"{registry.host}/cli/absent:v1").returncode == 1


def test_prune_keeps_what_a_live_sandbox_uses(
    registry: RegistryServer, home: Path, tmp_path: Path
) -> None:
    reference = push(registry, tmp_path, "cli/live")
    old = corral(home, "pull", reference).stdout.strip()
    old_blobs = blobs(home)
    disk = fake_disk(home, reference, old)
    # A live sandbox of the image: its supervisor is this process, its QEMU uses `disk`.
    qemu = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"if=none,file={disk},format=raw"]
    )
    try:
        state = StateStore(home / "state.db")
        state.insert("live", "0123456789abcdef", {"image": reference}, detached=True)
        pid, start = current_process_identity()
        state.update(
            "live", status="running", supervisor_pid=pid, supervisor_start=start, qemu_pid=qemu.pid
        )
        refused = corral(home, "image", "rm", reference)
        assert refused.returncode == 1
        assert "in use by sandbox live" in refused.stderr
        # The tag moves to a new image: the record now names it, the old disk is still used.
        push(registry, tmp_path, "cli/live", tar(entry("etc/new", b"new")))
        new = corral(home, "pull", reference).stdout.strip()
        assert new != old
        new_blobs = blobs(home) - old_blobs
        assert corral(home, "image", "prune").returncode == 0
        assert disk.exists()
        assert new_blobs <= blobs(home)
    finally:
        qemu.kill()
        qemu.wait()
    assert corral(home, "image", "prune").returncode == 0
    assert not disk.exists()


def test_run_takes_a_pull_policy(home: Path) -> None:
    assert "--pull [always|missing|never]" in corral(home, "run", "--help").stdout
    bogus = corral(home, "run", "--pull", "sometimes", "x", "--", "true")
    assert bogus.returncode == 2
    assert "'sometimes' is not one of 'always', 'missing', 'never'" in bogus.stderr


def test_pull_progress_bar_on_a_terminal_only(
    registry: RegistryServer, home: Path, tmp_path: Path
) -> None:
    reference = push(registry, tmp_path, "cli/progress", tar(entry("big", os.urandom(3 << 20))))
    env = {**os.environ, "CORRAL_HOME": str(home), "DOCKER_CONFIG": str(home / "docker")}
    terminal = pexpect.spawn(str(CORRAL), ["pull", reference], env=env, timeout=60)
    terminal.expect(pexpect.EOF)
    terminal.close()
    shown = terminal.before.decode()
    assert terminal.exitstatus == 0, shown
    frames = re.findall(r"\r([^\r\n]+)", shown)  # each redraw of the one status line
    assert frames and all(frame.startswith(f"{reference}: [") for frame in frames), shown
    assert re.fullmatch(r"\S+: \[#{30}\] (\d+\.\d)/\1 MiB, 2/2 layers", frames[-1]), shown
    quiet = corral(home, "pull", reference)  # stderr is a pipe: no progress at all
    assert (quiet.returncode, quiet.stderr) == (0, "")
