"""How the cluster client finds a sandbox's node agent, and how it fails when it cannot:
every failure is a typed Corral error with a message that says what to fix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import click
import kubernetes
import pytest
from kubernetes_asyncio import client as k8s_async

from cluster_exec.conftest import ALICE_TOKEN, NODE, StaticDirectory, place, publish, rbac
from corral import (
    ChannelError,
    ClusterClient,
    Forbidden,
    InvalidConfig,
    SandboxNotFound,
    SandboxNotRunning,
)
from corral._cli.cluster import parse_reference
from corral.api import CA_ANNOTATION, ENDPOINT_ANNOTATION, SYSTEM_NAMESPACE
from corral.node_agent.daemon.certs import server_context, serving_certificate
from corral.node_agent.daemon.server import AgentServer
from corral.testing.kubeapi import KubeAPIServer, write_kubeconfig


@pytest.fixture
def api(
    kubeapi: KubeAPIServer, crds: object, k8s: kubernetes.client.ApiClient
) -> kubernetes.client.ApiClient:
    kubernetes.client.CoreV1Api(k8s).create_namespace({"metadata": {"name": SYSTEM_NAMESPACE}})
    rbac(k8s)
    return k8s


@pytest.fixture
async def alice(kubeapi: KubeAPIServer, tmp_path: Path) -> AsyncIterator[ClusterClient]:
    path = write_kubeconfig(tmp_path / "alice", kubeapi.url, ALICE_TOKEN, namespace="team")
    async with await ClusterClient.from_kubeconfig(str(path)) as client:
        yield client


async def test_a_missing_kubeconfig_is_invalid_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidConfig, match=r"kubeconfig=.*missing.*: no such file"):
        await ClusterClient.from_kubeconfig(str(tmp_path / "missing"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(InvalidConfig, match=re.escape("~/.kube/config")):
        await ClusterClient.from_kubeconfig()


async def test_kubeconfig_defaults_to_the_environment_then_home(
    kubeapi: KubeAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", kubeapi.url, ALICE_TOKEN, namespace="home")
    write_kubeconfig(tmp_path / "env", kubeapi.url, ALICE_TOKEN, namespace="env")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "env"))
    async with await ClusterClient.from_kubeconfig() as client:
        assert client.namespace == "env"
    monkeypatch.delenv("KUBECONFIG")
    async with await ClusterClient.from_kubeconfig() as client:
        assert client.namespace == "home"


async def test_the_context_namespace_is_the_default(alice: ClusterClient) -> None:
    assert alice.namespace == "team"


async def test_an_unplaced_sandbox_is_not_running(
    api: kubernetes.client.ApiClient, alice: ClusterClient
) -> None:
    place(api, "fresh", node=None)
    with pytest.raises(SandboxNotRunning, match="not placed on a node yet"):
        await alice.sandbox("default", "fresh")


async def test_a_node_without_an_agent(
    api: kubernetes.client.ApiClient, alice: ClusterClient
) -> None:
    place(api, "sb")
    with pytest.raises(SandboxNotRunning, match="node 'node-1' has no node agent"):
        await alice.sandbox("default", "sb")
    publish(api, "http://127.0.0.1:1", "")
    with pytest.raises(SandboxNotRunning, match="publishes no HTTPS endpoint"):
        await alice.sandbox("default", "sb")
    lease = {"metadata": {"annotations": {CA_ANNOTATION: "not a certificate"}}}
    kubernetes.client.CoordinationV1Api(api).patch_namespaced_lease(NODE, SYSTEM_NAMESPACE, lease)
    lease = {"metadata": {"annotations": {ENDPOINT_ANNOTATION: "https://127.0.0.1:1"}}}
    kubernetes.client.CoordinationV1Api(api).patch_namespaced_lease(NODE, SYSTEM_NAMESPACE, lease)
    with pytest.raises(ChannelError, match="published certificate is unusable"):
        await alice.sandbox("default", "sb")


async def test_reading_another_namespace_is_forbidden(
    api: kubernetes.client.ApiClient, alice: ClusterClient
) -> None:
    with pytest.raises(Forbidden, match='User "alice" cannot get resource "sandboxes"'):
        await alice.sandbox("kube-system", "sb")
    with pytest.raises(SandboxNotFound, match="default/absent"):
        await alice.sandbox("default", "absent")


async def test_an_agent_with_another_certificate_is_not_trusted(
    api: kubernetes.client.ApiClient,
    alice: ClusterClient,
    agent_api: k8s_async.ApiClient,
    tmp_path: Path,
) -> None:
    place(api, "sb")
    served = serving_certificate(tmp_path / "served", ["127.0.0.1"])
    published = serving_certificate(tmp_path / "published", ["127.0.0.1"])[0]
    server = AgentServer(StaticDirectory([]), agent_api, NODE)
    port = await server.start("127.0.0.1", 0, server_context(*served))
    try:
        publish(api, f"https://127.0.0.1:{port}", published.read_text())
        with pytest.raises(ChannelError, match="cannot reach the node agent"):
            await alice.sandbox("default", "sb")
    finally:
        await server.stop()


async def test_listing_sandboxes(api: kubernetes.client.ApiClient, alice: ClusterClient) -> None:
    place(api, "one")
    assert [item["metadata"]["name"] for item in await alice.sandboxes("default")] == ["one"]
    with pytest.raises(Forbidden):
        await alice.sandboxes(None)


@pytest.mark.parametrize("text", ["sb", "/sb", "ns/", "a/b/c"])
def test_cli_references_are_namespace_slash_name(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not NAMESPACE/NAME"):
        parse_reference(text)
    assert parse_reference("ns/sb") == ("ns", "sb")
