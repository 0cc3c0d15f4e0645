"""A one-node cluster for exec: the test API server with the CRDs, RBAC for three users,
a Sandbox placed on node `node-1` and that node's Lease, plus a real node agent API server
(`AgentServer`, real TLS) whose directory maps the Sandbox to a real VM's supervisor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from api.conftest import crds, kubeapi, kubeconfig, kubectl
from kubernetes_asyncio import client as k8s_async
from kubernetes_asyncio import config as k8s_async_config
from testing.kubeapi.conftest import k8s
from vm.conftest import corral_home, shared_sandbox

from corral import Sandbox
from corral._paths import Paths
from corral.api import (
    AGENT_LABEL,
    CA_ANNOTATION,
    ENDPOINT_ANNOTATION,
    GROUP,
    SYSTEM_NAMESPACE,
    VERSION,
)
from corral.node_agent.daemon.certs import server_context, serving_certificate
from corral.node_agent.daemon.directory import LocalSandbox
from corral.node_agent.daemon.server import AgentServer
from corral.testing.kubeapi import ADMIN_TOKEN, KubeAPIServer, Settings, User, write_kubeconfig

__all__ = ["corral_home", "crds", "k8s", "kubeapi", "kubeconfig", "kubectl", "shared_sandbox"]

NODE = "node-1"
AGENT_TOKEN = "node-agent-token"
ALICE_TOKEN = "alice-token"
"""Alice may exec into sandboxes of `default` (a Role granting create on sandboxes/exec)."""
BOB_TOKEN = "bob-token"
"""Bob may read sandboxes and leases, but not exec."""
AGENT_USER = "system:serviceaccount:corral-system:node-agent"


@pytest.fixture
def kubeapi_settings() -> Settings:
    return Settings(
        tokens={
            ADMIN_TOKEN: User("admin", ("system:masters",)),
            AGENT_TOKEN: User(AGENT_USER, ("system:serviceaccounts",)),
            ALICE_TOKEN: User("alice", ("developers",)),
            BOB_TOKEN: User("bob", ("viewers",)),
        }
    )


class StaticDirectory:
    """The node's running sandboxes, fixed by the test."""

    def __init__(self, sandboxes: list[LocalSandbox]) -> None:
        self.sandboxes = sandboxes

    def find(self, namespace: str, name: str) -> LocalSandbox | None:
        for sandbox in self.sandboxes:
            if (sandbox.namespace, sandbox.name) == (namespace, name):
                return sandbox
        return None

    def running(self) -> list[LocalSandbox]:
        return list(self.sandboxes)


def local_sandbox(vm_name: str, namespace: str = "default", name: str = "sb") -> LocalSandbox:
    """The real VM `vm_name` as the node agent would list it for Sandbox `namespace/name`."""
    record = Sandbox.inspect(vm_name)
    assert record.qemu_pid
    return LocalSandbox(
        namespace=namespace,
        name=name,
        uid=record.uid,
        socket=Paths.from_env().sandbox_dir(record.uid) / "api.sock",
        qemu_pid=record.qemu_pid,
        accelerator=record.accel or "tcg",
        boot_id="boot-1",
    )


@dataclass
class Cluster:
    url: str
    endpoint: str
    ca: str
    directory: StaticDirectory
    kubeconfigs: dict[str, Path]
    server: AgentServer

    def kubeconfig(self, user: str) -> Path:
        return self.kubeconfigs[user]


def rbac(k8s: kubernetes.client.ApiClient) -> None:
    api = kubernetes.client.RbacAuthorizationV1Api(k8s)
    ref = "rbac.authorization.k8s.io"

    def bind(kind: str, role: str, subjects: list[dict[str, str]], namespace: str = "") -> None:
        body: dict[str, Any] = {
            "metadata": {"name": f"{role}-binding"},
            "roleRef": {"apiGroup": ref, "kind": kind, "name": role},
            "subjects": subjects,
        }
        if namespace:
            api.create_namespaced_role_binding(namespace, body)
        else:
            api.create_cluster_role_binding(body)

    api.create_cluster_role(
        {
            "metadata": {"name": "node-agent-reviews"},
            "rules": [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
        }
    )
    bind(
        "ClusterRole",
        "node-agent-reviews",
        [{"kind": "ServiceAccount", "name": "node-agent", "namespace": SYSTEM_NAMESPACE}],
    )
    readers = [{"apiGroup": ref, "kind": "User", "name": user} for user in ("alice", "bob")]
    api.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "sandbox-viewer"},
            "rules": [{"apiGroups": [GROUP], "resources": ["sandboxes"], "verbs": ["get", "list"]}],
        },
    )
    bind("Role", "sandbox-viewer", readers, "default")
    api.create_namespaced_role(
        SYSTEM_NAMESPACE,
        {
            "metadata": {"name": "lease-reader"},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}
            ],
        },
    )
    bind("Role", "lease-reader", readers, SYSTEM_NAMESPACE)
    api.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "sandbox-exec"},
            "rules": [{"apiGroups": [GROUP], "resources": ["sandboxes/exec"], "verbs": ["create"]}],
        },
    )
    bind("Role", "sandbox-exec", [{"apiGroup": ref, "kind": "User", "name": "alice"}], "default")


def place(k8s: kubernetes.client.ApiClient, name: str, node: str | None = NODE) -> None:
    """A Sandbox resource in `default` that the operator has placed on `node` (None: not yet)."""
    api = kubernetes.client.CustomObjectsApi(k8s)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "default"},
    }
    api.create_namespaced_custom_object(GROUP, VERSION, "default", "sandboxes", body)
    if node is None:
        return
    status = {"status": {"phase": "Running", "nodeName": node}}
    api.patch_namespaced_custom_object_status(GROUP, VERSION, "default", "sandboxes", name, status)


def publish(k8s: kubernetes.client.ApiClient, endpoint: str, ca: str) -> None:
    """The node agent's Lease, as its registration writes it."""
    kubernetes.client.CoordinationV1Api(k8s).create_namespaced_lease(
        SYSTEM_NAMESPACE,
        {
            "metadata": {
                "name": NODE,
                "labels": {AGENT_LABEL: "true"},
                "annotations": {ENDPOINT_ANNOTATION: endpoint, CA_ANNOTATION: ca},
            },
            "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40},
        },
    )


@pytest.fixture
def certificate(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    yield serving_certificate(tmp_path / "tls", ["127.0.0.1", "localhost"])


@pytest.fixture
async def agent_api(kubeapi: KubeAPIServer, tmp_path: Path) -> AsyncIterator[k8s_async.ApiClient]:
    """The node agent's own API client (its service account token)."""
    path = write_kubeconfig(tmp_path / "agent.kubeconfig", kubeapi.url, AGENT_TOKEN)
    client = await k8s_async_config.new_client_from_config(config_file=str(path))
    async with client:
        yield client


@pytest.fixture
async def cluster(
    kubeapi: KubeAPIServer,
    crds: Any,
    k8s: kubernetes.client.ApiClient,
    agent_api: k8s_async.ApiClient,
    shared_sandbox: str,
    certificate: tuple[Path, Path],
    tmp_path: Path,
) -> AsyncIterator[Cluster]:
    kubernetes.client.CoreV1Api(k8s).create_namespace({"metadata": {"name": SYSTEM_NAMESPACE}})
    rbac(k8s)
    for name in ("sb", "elsewhere"):
        place(k8s, name)
    directory = StaticDirectory([local_sandbox(shared_sandbox)])
    server = AgentServer(directory, agent_api, NODE)
    port = await server.start("127.0.0.1", 0, server_context(*certificate))
    endpoint = f"https://127.0.0.1:{port}"
    ca = certificate[0].read_text()
    publish(k8s, endpoint, ca)
    kubeconfigs = {
        user: write_kubeconfig(tmp_path / f"{user}.kubeconfig", kubeapi.url, token)
        for user, token in (("alice", ALICE_TOKEN), ("bob", BOB_TOKEN), ("nobody", "wrong"))
    }
    try:
        yield Cluster(kubeapi.url, endpoint, ca, directory, kubeconfigs, server)
    finally:
        await server.stop()
