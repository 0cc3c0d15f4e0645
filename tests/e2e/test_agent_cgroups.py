"""A node agent with --cgroup-root, as in its DaemonSet: it boots each VM into a cgroup of
its own, outside the agent's, so killing every process of the agent's cgroup (what a
container runtime does to a restarting container) leaves the VMs running for the next
agent to re-adopt; it tells a TCG guest the TSC it measured, not the one the assets
recorded; and it refuses a root that is not cgroup v2."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dependencies
import pytest

from corral._state import SandboxRecord, StateStore
from corral.node_agent.assets import host_tsc_khz
from corral.node_agent.daemon.runtime import local_name
from corral.testing.cluster import BIN, Cluster, run_cluster, until

pytestmark = pytest.mark.vm

UNIFIED = Path("/sys/fs/cgroup/unified")
BUILD_MACHINE_TSC_KHZ = 1234567


@pytest.fixture(scope="module")
def cgroups() -> Iterator[Path]:
    """A test hierarchy: `pod` stands for the agent container's cgroup, `vms` is the root."""
    if not (UNIFIED / "cgroup.controllers").is_file():
        dependencies.missing(f"a cgroup v2 hierarchy at {UNIFIED}")
    top = UNIFIED / f"corral-test-{secrets.token_hex(4)}"
    (top / "pod").mkdir(parents=True)
    (top / "vms").mkdir()
    yield top
    leftovers = [cgroup for cgroup in (top / "vms").iterdir() if cgroup.is_dir()]
    for cgroup in [*leftovers, top / "vms", top / "pod", top]:
        cgroup.rmdir()
    assert not leftovers, "sandbox cgroups left behind"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cgroups: Path) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    extra_args = ["--cgroup-root", str(cgroups / "vms")]
    try:
        with run_cluster(directory, nodes=1, extra_args=extra_args) as running:
            yield running
    except FileNotFoundError as exc:
        dependencies.missing(str(exc))


def cgroup_of(pid: int) -> Path:
    """The process's cgroup v2 directory, from the `0::` line of /proc/<pid>/cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return UNIFIED / line[3:].lstrip("/")
    raise AssertionError(f"process {pid} is in no cgroup v2")


def assets_from_another_machine(home: Path) -> None:
    """Assets like an image's: the same files, the TSC of the machine that built them."""
    manifest = json.loads((home / "assets" / "current.json").read_text())
    (home / "assets").unlink()
    (home / "assets").mkdir()
    manifest["tsc_khz"] = BUILD_MACHINE_TSC_KHZ
    (home / "assets" / "current.json").write_text(json.dumps(manifest))


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "default", "resources": {"cpus": 1, "memoryMiB": 128}},
    }


def test_vms_outlive_a_killed_agent_cgroup_at_the_host_tsc(cluster: Cluster, cgroups: Path) -> None:
    agent = cluster.agents["n1"]
    assert agent.process is not None
    (cgroups / "pod" / "cgroup.procs").write_text(str(agent.process.pid))
    assets_from_another_machine(agent.home)
    cluster.kubectl.apply(manifest("grouped"))
    obj = cluster.wait_ready("grouped")
    record: SandboxRecord = StateStore(agent.home / "state.db").get(
        local_name(obj["metadata"]["uid"])
    )
    cgroup = cgroups / "vms" / record.uid
    assert record.qemu_pid
    assert cgroup_of(record.supervisor_pid) == cgroup_of(record.qemu_pid) == cgroup
    command = Path(f"/proc/{record.qemu_pid}/cmdline").read_bytes().decode().split("\0")
    kernel_args = command[command.index("-append") + 1].split()
    assert f"tsc_early_khz={host_tsc_khz()}" in kernel_args
    assert host_tsc_khz() != BUILD_MACHINE_TSC_KHZ

    (cgroups / "pod" / "cgroup.kill").write_text("1")  # the container runtime's stop
    assert agent.process.wait(10) != 0
    assert cluster.local_vms("n1") == {record.name: "running"}
    agent.start()
    until(lambda: cluster.sandbox("grouped")["status"].get("phase") == "Running")
    assert cluster.sandbox("grouped")["status"]["bootID"] == obj["status"]["bootID"]

    cluster.kubectl("delete", "sbx", "grouped", "--timeout=60s")
    assert not cgroup.exists()


@pytest.mark.parametrize("kind", ["plain directory", "missing"])
def test_the_agent_refuses_a_root_that_is_not_cgroup_v2(tmp_path: Path, kind: str) -> None:
    root = tmp_path if kind == "plain directory" else tmp_path / "missing"
    agent = subprocess.run(
        [str(BIN / "corral-node-agent"), "--cgroup-root", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert agent.returncode != 0
    assert f"--cgroup-root: cgroup root {root} " in agent.stderr
    if kind == "plain directory":
        assert "cgroup v1 is not supported" in agent.stderr
