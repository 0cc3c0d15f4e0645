"""Exec, shell and files in the cluster go through the sandbox's node agent: the CLI and
the SDK work with a kubeconfig as they do embedded; the agent answers 401 without a
token and 403 without `sandboxes/exec`; its metrics report the sandbox's VM."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from corral import Forbidden
from corral._cluster import ClusterClient, pinned_context
from corral.api import CA_ANNOTATION, ENDPOINT_ANNOTATION, SYSTEM_NAMESPACE
from corral.testing.cluster import BIN, VIEWER_TOKEN, Cluster, sandbox_manifest
from corral.testing.kubeapi import write_kubeconfig

pytestmark = pytest.mark.vm
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC = f"{RBAC_GROUP}/v1"


@pytest.fixture(scope="module")
def running(cluster: Cluster) -> Iterator[dict[str, Any]]:
    greeting = [{"name": "GREETING", "value": "hello from the cluster"}]
    cluster.kubectl.apply(sandbox_manifest("shell", env=greeting, resources={"memoryMiB": 128}))
    yield cluster.wait_ready("shell")
    cluster.kubectl("delete", "sbx", "shell", "--timeout=60s")


@pytest.fixture(scope="module")
def viewer(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig of a user who may read sandboxes and find node agents, not exec."""
    rules = {
        "default": [{"apiGroups": ["corral.dev"], "resources": ["sandboxes"], "verbs": ["get"]}],
        SYSTEM_NAMESPACE: [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}
        ],
    }
    for namespace, role_rules in rules.items():
        meta = {"name": "viewer", "namespace": namespace}
        cluster.kubectl.apply(
            {"apiVersion": RBAC, "kind": "Role", "metadata": meta, "rules": role_rules}
        )
        cluster.kubectl.apply(
            {
                "apiVersion": RBAC,
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "viewer"},
                "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": "viewer"}],
            }
        )
    path = tmp_path_factory.mktemp("viewer") / "kubeconfig"
    return write_kubeconfig(path, cluster.server.url, token=VIEWER_TOKEN)


def corral(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "corral"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_exec_through_the_node_agent(cluster: Cluster, running: dict[str, Any]) -> None:
    uname = corral(cluster.kubeconfig, "exec", "default/shell", "--", "uname", "-a")
    assert uname.returncode == 0, uname.stderr
    assert uname.stdout.startswith("Linux ")
    env = corral(cluster.kubeconfig, "exec", "default/shell", "--", "sh", "-c", "env; exit 7")
    assert env.returncode == 7
    assert "GREETING=hello from the cluster" in env.stdout
    assert "corral-test" not in env.stdout  # no API token reached the VM


async def test_sdk_exec_and_files_through_the_node_agent(
    cluster: Cluster, running: dict[str, Any]
) -> None:
    data = bytes(range(256)) * 4096
    async with (
        await ClusterClient.from_kubeconfig(str(cluster.kubeconfig)) as client,
        await client.sandbox("default", "shell") as sandbox,
    ):
        assert sandbox.boot_id == running["status"]["bootID"]
        out = await sandbox.exec("sh", ["-c", "echo out; echo err >&2; exit 3"])
        assert (out.stdout, out.stderr, out.exit_code) == (b"out\n", b"err\n", 3)
        await sandbox.fs.write("/tmp/blob", data)
        assert await sandbox.fs.read("/tmp/blob") == data


async def test_the_node_agent_refuses_without_a_token_or_permission(
    cluster: Cluster, running: dict[str, Any], viewer: Path
) -> None:
    lease = cluster.kubectl.json(
        "get", "lease", running["status"]["nodeName"], "-n", SYSTEM_NAMESPACE
    )
    annotations = lease["metadata"]["annotations"]
    url = f"{annotations[ENDPOINT_ANNOTATION]}/v1/namespaces/default/sandboxes/shell/connect"
    context = pinned_context(annotations[CA_ANNOTATION])
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=context) as anonymous:
            assert anonymous.status == 401
        headers = {"Authorization": "Bearer not-a-token"}
        async with session.get(url, ssl=context, headers=headers) as unknown:
            assert unknown.status == 401
        headers = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
        async with session.get(url, ssl=context, headers=headers) as refused:
            assert refused.status == 403
            body = await refused.json()
            assert body["kind"] == "Status" and "viewer" in body["message"]
    async with await ClusterClient.from_kubeconfig(str(viewer)) as client:
        with pytest.raises(Forbidden, match="sandboxes/exec"):
            await client.sandbox("default", "shell")
    denied = corral(viewer, "exec", "default/shell", "--", "true")
    assert denied.returncode != 0
    assert "sandboxes/exec" in denied.stderr


async def test_metrics_report_the_sandbox(cluster: Cluster, running: dict[str, Any]) -> None:
    agent = cluster.agents[running["status"]["nodeName"]]
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"http://127.0.0.1:{agent.metrics_port}/metrics")
        text = await response.text()
    memory = re.search(r'corral_sandbox_memory_bytes\{[^}]*name="shell"[^}]*\} (\S+)', text)
    assert memory is not None and float(memory.group(1)) > 10 << 20
    cpu = re.search(r'corral_sandbox_cpu_seconds_total\{[^}]*name="shell"[^}]*\} (\S+)', text)
    assert cpu is not None and float(cpu.group(1)) > 0
