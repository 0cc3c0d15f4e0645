"""Sandbox cgroups with real VMs and the real cgroup v2 hierarchy (we are root here): the
supervisor and QEMU run in `<root>/<uid>`, removing the sandbox removes it, and a bad
root fails the create leaving nothing behind."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dependencies
import pytest

from corral import BootError, Sandbox
from corral.node_agent.cgroups import ROOT_ENV
from corral.testing.polling import until

pytestmark = pytest.mark.vm

UNIFIED = Path("/sys/fs/cgroup/unified")


@pytest.fixture
def cgroup_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cgroup root for this test's launches (they inherit the environment)."""
    if not (UNIFIED / "cgroup.controllers").is_file():
        dependencies.missing(f"a cgroup v2 hierarchy at {UNIFIED}")
    root = UNIFIED / f"corral-test-{secrets.token_hex(4)}"
    root.mkdir()
    monkeypatch.setenv(ROOT_ENV, str(root))
    yield root
    # A supervisor moves up into the root to remove its sandbox's cgroup, then exits.
    until(
        lambda: "populated 0" in (root / "cgroup.events").read_text(),
        what=f"no process left in {root}",
    )
    leftovers = sandbox_cgroups(root)
    for cgroup in leftovers:
        cgroup.rmdir()
    root.rmdir()
    assert not leftovers, "cgroups left behind"


def sandbox_cgroups(root: Path) -> list[Path]:
    return [child for child in root.iterdir() if child.is_dir()]


def cgroup_of(pid: int) -> Path:
    """The process's cgroup v2 directory, from the `0::` line of /proc/<pid>/cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return UNIFIED / line[3:].lstrip("/")
    raise AssertionError(f"process {pid} is in no cgroup v2")


async def test_supervisor_and_qemu_run_in_the_sandbox_cgroup_until_removed(
    corral_home: Path, cgroup_root: Path
) -> None:
    sandbox = await Sandbox.builder("grouped").memory(128).create_detached()
    record = Sandbox.inspect("grouped")
    cgroup = cgroup_root / record.uid
    assert record.qemu_pid
    assert cgroup_of(record.supervisor_pid) == cgroup_of(record.qemu_pid) == cgroup
    assert (await sandbox.exec("true")).exit_code == 0
    await sandbox.remove()
    assert not cgroup.exists()
    assert not (corral_home / "sandboxes" / record.uid).exists()


def test_an_attached_sandbox_removed_with_its_owner_takes_its_cgroup(
    corral_home: Path, cgroup_root: Path
) -> None:
    code = (
        "import asyncio; from corral import Sandbox; "
        "asyncio.run(Sandbox.builder('owned-cg').memory(128).create())"
    )
    created = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert created.returncode == 0, created.stderr
    for _ in range(200):
        if not any(record.name == "owned-cg" for record in Sandbox.list()):
            break
        time.sleep(0.1)
    assert not any(record.name == "owned-cg" for record in Sandbox.list())
    assert sandbox_cgroups(cgroup_root) == []


@pytest.mark.parametrize("kind", ["plain directory", "missing"])
async def test_a_bad_cgroup_root_fails_the_create_and_leaves_nothing(
    corral_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    root = tmp_path if kind == "plain directory" else tmp_path / "missing"
    monkeypatch.setenv(ROOT_ENV, str(root))
    before = set((corral_home / "sandboxes").iterdir())
    with pytest.raises(BootError, match=f"cgroup root {root} "):
        await Sandbox.builder("ungrouped").memory(128).create()
    assert not any(record.name == "ungrouped" for record in Sandbox.list())
    assert set((corral_home / "sandboxes").iterdir()) == before
    assert list(tmp_path.iterdir()) == []
