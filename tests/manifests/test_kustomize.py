"""The kustomize base in manifests/: it renders with real kubectl, carries the generated
CRDs unchanged, applies to the test server (CRDs first, as the README says) and again
without changes, and its workloads run the commands the operator and node agent take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from testing.kubeapi.conftest import Kubectl

from corral.api import SYSTEM_NAMESPACE, Sandbox
from corral.api.crd import crds
from corral.operator.main import parse_args

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KOPF_CRDS = {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}

JSON = dict[str, Any]


def render(kubectl: Kubectl, path: Path) -> list[JSON]:
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(path)).stdout) if doc]


def by_kind(objects: list[JSON], kind: str) -> dict[str, JSON]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_the_rendered_crds_are_the_generated_ones(kubectl: Kubectl) -> None:
    rendered = by_kind(render(kubectl, MANIFESTS), "CustomResourceDefinition")
    generated = {crd["metadata"]["name"]: crd for crd in crds()}
    assert set(rendered) == set(generated) | KOPF_CRDS
    for name, crd in generated.items():
        assert rendered[name] == crd, f"{name} in manifests/ differs from corral.api"
    for path in (REPO / "crds").glob("*.yaml"):  # and the committed files (drift: tests/api)
        committed = yaml.safe_load(path.read_text())
        assert rendered[committed["metadata"]["name"]] == committed


def test_the_crds_base_holds_only_crds(kubectl: Kubectl) -> None:
    kinds = {o["kind"] for o in render(kubectl, MANIFESTS / "crds")}
    assert kinds == {"CustomResourceDefinition"}


def test_every_namespaced_object_is_in_corral_system(kubectl: Kubectl) -> None:
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterKopfPeering",
    }
    for obj in render(kubectl, MANIFESTS):
        namespace = obj["metadata"].get("namespace")
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in cluster_scoped:
            assert namespace is None, where
        else:
            assert namespace == SYSTEM_NAMESPACE, where


def test_applies_to_the_server_and_reapplies_unchanged(kubectl: Kubectl, deployed: str) -> None:
    first = deployed
    assert "clusterkopfpeering.kopf.dev/corral-operator created" in first
    assert "deployment.apps/corral-operator created" in first
    assert "daemonset.apps/corral-node-agent created" in first
    again = kubectl("apply", "-k", str(MANIFESTS)).stdout.splitlines()
    assert again and all(line.endswith(" unchanged") for line in again), again
    names = kubectl("get", "sa,deploy,ds,svc", "-n", SYSTEM_NAMESPACE, "-o", "name").stdout
    assert set(names.split()) >= {
        "serviceaccount/corral-operator",
        "serviceaccount/corral-node-agent",
        "deployment.apps/corral-operator",
        "daemonset.apps/corral-node-agent",
        "service/corral-node-agent-metrics",
    }
    assert kubectl.json("get", "clusterkopfpeering", "corral-operator")["kind"] == (
        "ClusterKopfPeering"
    )


def test_in_one_step_the_peering_object_waits_for_its_crd(kubectl: Kubectl) -> None:
    """Why the README applies manifests/crds first: kubectl maps kinds before it creates
    anything, so a kind whose CRD is in the same run is not found yet."""
    result = kubectl("apply", "-k", str(MANIFESTS), check=False)
    assert result.returncode != 0
    assert 'no matches for kind "ClusterKopfPeering"' in result.stderr


def test_every_example_applies_and_reads_back_as_a_model(kubectl: Kubectl, deployed: str) -> None:
    examples = sorted((REPO / "examples").rglob("*.yaml"))
    assert REPO / "examples/jobs/sandbox-job.yaml" in examples
    for path in examples:
        kubectl("apply", "-f", str(path))
    job = Sandbox.model_validate(kubectl.json("get", "sbx", "uname"))
    assert (job.spec.image, job.spec.restart_policy) == ("default", "Never")
    assert job.spec.command == ["uname", "-a"]


def _container(workload: JSON) -> JSON:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: JSON) -> dict[str, Any]:
    return {
        e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
    }


def test_the_operator_runs_unprivileged_with_a_command_it_accepts(
    kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = by_kind(render(kubectl, MANIFESTS), "Deployment")["corral-operator"]
    pod = operator["spec"]["template"]["spec"]
    container = _container(operator)
    assert operator["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "corral-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert _env(container) == {"POD_NAMESPACE": "metadata.namespace", "POD_ID": "metadata.name"}
    assert container["command"] == ["corral-operator"]
    monkeypatch.setenv("POD_NAMESPACE", SYSTEM_NAMESPACE)
    settings, _ = parse_args([])
    assert (settings.namespace, settings.peering, settings.priority > 0) == (
        SYSTEM_NAMESPACE,
        "corral-operator",
        True,
    )
    assert settings.namespaces == ()  # cluster-wide: kopf uses the ClusterKopfPeering
    peering = by_kind(render(kubectl, MANIFESTS), "ClusterKopfPeering")
    assert set(peering) == {settings.peering}


def test_the_node_agent_is_privileged_on_the_host_network_with_state_on_the_node(
    kubectl: Kubectl,
) -> None:
    """And its VMs outlive its container: they run in cgroups of their own, at the top of
    the host's hierarchy, with PIDs in the host's namespace."""
    objects = render(kubectl, MANIFESTS)
    agent = by_kind(objects, "DaemonSet")["corral-node-agent"]
    pod = agent["spec"]["template"]["spec"]
    container = _container(agent)
    assert pod["serviceAccountName"] == "corral-node-agent"
    assert pod["hostNetwork"] is True
    assert pod["hostPID"] is True
    assert container["securityContext"] == {"privileged": True}
    assert "limits" not in container["resources"]  # the VMs live here without a cgroup root
    assert container["command"] == [
        "corral-node-agent",
        "--node-name",
        "$(NODE_NAME)",
        "--advertise-host",
        "$(NODE_IP)",
        "--port",
        "7443",
        "--metrics-port",
        "9464",
        "--cgroup-root",
        "/host/cgroup/corral",
    ]
    assert _env(container) == {
        "CORRAL_HOME": "/var/lib/corral",
        "POD_NAMESPACE": "metadata.namespace",
        "NODE_NAME": "spec.nodeName",
        "NODE_IP": "status.hostIP",
    }
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    assert volumes == {
        "state": {"path": "/var/lib/corral", "type": "DirectoryOrCreate"},
        "cgroup": {"path": "/sys/fs/cgroup", "type": "Directory"},
    }
    state = {"name": "state", "mountPath": "/var/lib/corral"}
    cgroup = {"name": "cgroup", "mountPath": "/host/cgroup"}
    assert container["volumeMounts"] == [state, cgroup]
    assets, cgroup_root = pod["initContainers"]
    assert assets["volumeMounts"] == [state]
    assert cgroup_root["volumeMounts"] == [cgroup]
    assert cgroup_root["command"] == ["mkdir", "-p", "/host/cgroup/corral"]

    service = by_kind(objects, "Service")["corral-node-agent-metrics"]
    assert service["spec"]["clusterIP"] == "None"
    labels = agent["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (port["name"], port["port"], ports[port["targetPort"]]) == ("metrics", 9464, 9464)


def test_one_image_for_both(kubectl: Kubectl) -> None:
    objects = render(kubectl, MANIFESTS)
    pods = [
        w["spec"]["template"]["spec"] for w in objects if w["kind"] in ("Deployment", "DaemonSet")
    ]
    images = {c["image"] for pod in pods for c in pod["containers"] + pod.get("initContainers", [])}
    assert images == {"corral:latest"}
