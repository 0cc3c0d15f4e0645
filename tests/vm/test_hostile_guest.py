"""A guest that breaks the protocol after a valid handshake is killed and recorded as
crashed with the reason, while other sandboxes keep working. The hostile guest is a
real VM: the project's kernel booting a small /init (hostile/init.c) instead of the agent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import Sandbox, SandboxNotRunning, remove
from corral.node_agent import snapshots

pytestmark = pytest.mark.vm

GUEST_DIR = Path(__file__).resolve().parents[2] / "node_agent/guest"


@pytest.fixture
def hostile_home(corral_home: Path) -> Iterator[Path]:
    """A second CORRAL_HOME whose initramfs carries the hostile init."""
    home = Path(tempfile.mkdtemp(prefix="corral-h", dir="/tmp"))
    build = home / "build"
    build.mkdir()
    source = Path(__file__).with_name("hostile") / "init.c"
    subprocess.run(["musl-gcc", "-static", "-O2", "-o", build / "init", source], check=True)
    (build / "list").write_text(
        "dir /dev 0755\nnod /dev/console 0600 c 5 1\ndir /sys 0555\n"
        f"file /init 0755 {build / 'init'}\n"
    )
    gen_cpio = GUEST_DIR / "build/gen_cpio"
    subprocess.run([gen_cpio, build / "list", build / "initramfs.cpio"], check=True)
    assets = home / "assets"
    assets.mkdir()
    manifest = json.loads((corral_home / "assets/current.json").read_text())
    manifest["initramfs"] = str(build / "initramfs.cpio")
    (assets / "current.json").write_text(json.dumps(manifest))
    yield home
    with pytest.MonkeyPatch.context() as env:  # a failed test must not leave its VM running
        env.setenv("CORRAL_HOME", str(home))
        for record in Sandbox.list():
            remove(record.name, force=True)
    shutil.rmtree(home, ignore_errors=True)


async def test_protocol_violation_kills_only_that_sandbox(
    corral_home: Path, hostile_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Sandbox.builder("bystander").create() as bystander:
        monkeypatch.setenv("CORRAL_HOME", str(hostile_home))
        # It answers one HELLO; the first boot of a shape is greeted again after its
        # boot snapshot, so it boots without one.
        monkeypatch.setenv(snapshots.ENABLED_ENV, "0")
        evil = await Sandbox.builder("evil").create_detached()
        assert evil.boot_id == "evil"
        record = await evil.wait(timeout=60)
        assert record.status == "crashed"
        assert "guest broke the protocol" in record.reason
        assert "exceeds" in record.reason
        with pytest.raises(SandboxNotRunning):
            await evil.exec("true")
        await evil.close()
        remove("evil")
        monkeypatch.setenv("CORRAL_HOME", str(corral_home))
        assert (await bystander.exec("echo", ["fine"])).stdout == b"fine\n"
