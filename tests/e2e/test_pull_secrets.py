"""imagePullSecrets in the cluster: a Sandbox of a private image (TLS registry with basic
auth on loopback) boots on its node with the credentials of a dockerconfigjson Secret,
and without them reports ImagePullFailed — the password never reaches the node's disk."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import condition
from images.oci_layout import Layout, busybox_layer
from images.registry import PASSWORD, USER, run_registry

from corral.testing.cluster import Cluster, sandbox_manifest, until

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def private(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A busybox image on a private registry every node trusts (its CA) but has no login for."""
    with run_registry(tmp_path_factory.mktemp("e2e-private") / "tls", tls=True) as server:
        hosts = {host: {"ca_file": str(h.ca_file)} for host, h in server.settings.hosts.items()}
        for agent in cluster.agents.values():
            (agent.home / "registries.json").write_text(json.dumps(hosts))
        layout = Layout(tmp_path_factory.mktemp("e2e-private-layout") / "busybox")
        layout.tag(layout.image([busybox_layer()], config={"Env": ["PATH=/bin"]}), "1.0")
        yield server.push(layout.path, "1.0", "private/busybox")


def sandbox(name: str, image: str, secrets: list[str]) -> dict[str, Any]:
    return sandbox_manifest(
        name,
        image=image,
        imagePullSecrets=[{"name": s} for s in secrets],
        resources={"memoryMiB": 128},
        restartPolicy="OnFailure",
    )


def docker_secret(name: str, registry: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {registry: {"auth": auth}}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


def test_pull_secret_lets_the_node_pull_a_private_image(cluster: Cluster, private: str) -> None:
    registry = private.split("/", 1)[0]
    cluster.kubectl.apply(sandbox("no-login", private, []))
    failed = pull_failed(cluster, "no-login")
    assert failed["status"]["phase"] == "Pending"
    assert "login" in condition(failed, "ImageReady")["message"]

    cluster.kubectl.apply(docker_secret("registry-login", registry))
    cluster.kubectl.apply(sandbox("with-login", private, ["registry-login"]))
    ready = cluster.wait_ready("with-login")
    assert ready["status"]["phase"] == "Running"
    for agent in cluster.agents.values():
        leaked = [p for p in agent.home.rglob("*") if p.is_file() and _has(p, PASSWORD)]
        assert leaked == []
        assert PASSWORD not in agent.log.read_text(errors="replace")
    cluster.kubectl("delete", "sbx", "no-login", "with-login", "--timeout=60s")


def test_a_missing_or_wrong_secret_is_named(cluster: Cluster, private: str) -> None:
    cluster.kubectl.apply(sandbox("nosecret", private, ["does-not-exist"]))
    obj = pull_failed(cluster, "nosecret")
    assert "imagePullSecret default/does-not-exist" in condition(obj, "ImageReady")["message"]
    cluster.kubectl("delete", "sbx", "nosecret", "--timeout=60s")


def pull_failed(cluster: Cluster, name: str) -> dict[str, Any]:
    """The sandbox once its ImageReady condition says ImagePullFailed."""

    def failed() -> dict[str, Any] | None:
        obj = cluster.sandbox(name)
        conditions = obj.get("status", {}).get("conditions", [])
        reasons = {c["reason"] for c in conditions if c["type"] == "ImageReady"}
        return obj if "ImagePullFailed" in reasons else None

    result: dict[str, Any] = until(failed, what=f"{name} ImagePullFailed")
    return result


def _has(path: Path, secret: str) -> bool:
    try:
        return secret.encode() in path.read_bytes()
    except OSError:
        return False
