"""The generated CRDs on the Kubernetes-API test server, driven by real kubectl: the
examples apply, defaults land, printer columns and short names work, and invalid or
immutable-field changes are rejected with the schema or CEL message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from corral.api import NetworkPolicy, Sandbox, SandboxSpec, Volume

from .conftest import REPO, Kubectl

EXAMPLES = REPO / "examples"


def example(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((EXAMPLES / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def rejected(kubectl: Kubectl, manifest: dict[str, Any]) -> str:
    result = kubectl.apply(manifest, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr


def set_status(kubectl: Kubectl, name: str, status: dict[str, Any], check: bool = True) -> str:
    patch = yaml.safe_dump({"status": status})
    result = kubectl(
        "patch", "sbx", name, "--subresource=status", "--type=merge", "-p", patch, check=check
    )
    return result.stderr


def test_resources_are_discoverable_by_short_name_and_category(crds: Kubectl) -> None:
    out = crds("api-resources", "--api-group=corral.dev", "-o", "wide").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"sandboxes", "volumes", "networkpolicies"}
    assert "sbx" in rows["sandboxes"] and "cvol" in rows["volumes"]
    assert "cnetpol" in rows["networkpolicies"]
    assert all("corral" in row for row in rows.values())


def test_examples_apply_with_defaults_and_read_back_as_models(crds: Kubectl) -> None:
    crds("apply", "-f", str(EXAMPLES))
    assert set(crds("get", "corral", "-o", "name").stdout.split()) == {
        "sandbox.corral.dev/hello",
        "volume.corral.dev/workspace",
        "networkpolicy.corral.dev/pypi-only",
    }
    sandbox = Sandbox.model_validate(crds.json("get", "sbx", "hello"))
    assert sandbox.spec.image_pull_policy == "IfMissing"
    assert sandbox.spec.resources.disk_mib == 2048  # defaulted inside a given object
    assert sandbox.spec.max_duration is not None
    assert sandbox.spec.max_duration.total_seconds() == 3600
    assert sandbox.metadata.generation == 1
    volume = Volume.model_validate(crds.json("get", "cvol", "workspace"))
    assert volume.spec.size_mib == 1024
    policy = NetworkPolicy.model_validate(crds.json("get", "cnetpol", "pypi-only"))
    assert policy.spec.egress[0].ports == [443]


def test_defaults_fill_a_minimal_sandbox(crds: Kubectl) -> None:
    minimal = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "tiny"},
        "spec": {"image": "alpine", "workingDir": None},
    }
    crds.apply(minimal)
    spec = crds.json("get", "sbx", "tiny")["spec"]
    assert spec == {
        "image": "alpine",
        "imagePullPolicy": "IfMissing",
        "resources": {"cpus": 1, "memoryMiB": 256, "diskMiB": 2048},
        "restartPolicy": "Never",
    }  # the null is pruned: it means "unset"


def test_a_model_dump_is_accepted_as_is(crds: Kubectl, k8s: kubernetes.client.ApiClient) -> None:
    sandbox = Sandbox.model_validate(
        {"metadata": {"name": "from-python"}, "spec": SandboxSpec(image="alpine")}
    )
    body = sandbox.model_dump(mode="json", by_alias=True, exclude_none=True)
    api = kubernetes.client.CustomObjectsApi(k8s)
    created = api.create_namespaced_custom_object(
        "corral.dev", "v1alpha1", "default", "sandboxes", body
    )
    assert Sandbox.model_validate(created).spec == sandbox.spec


def test_get_shows_the_printer_columns(crds: Kubectl) -> None:
    crds("apply", "-f", str(EXAMPLES / "sandbox.yaml"))
    status = {
        "phase": "Running",
        "nodeName": "node-a",
        "ip": "10.88.0.2",
        "bootID": "b00t",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Booted",
                "message": "",
                "lastTransitionTime": "2024-01-01T00:00:00Z",
            }
        ],
    }
    set_status(crds, "hello", status)
    header, row = crds("get", "sbx").stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "READY", "NODE", "IMAGE", "AGE"]
    assert row.split()[:5] == [
        "hello",
        "Running",
        "True",
        "node-a",
        "docker.io/library/alpine:3.20",
    ]
    header, row = crds("get", "sbx", "-o", "wide").stdout.splitlines()
    assert header.split()[-3:] == ["IP", "BOOT", "ID"]
    assert row.split()[-2:] == ["10.88.0.2", "b00t"]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("resources", "cpus"),
            0,
            "spec.resources.cpus: Invalid value: 0: spec.resources.cpus in body should be "
            "greater than or equal to 1",
        ),
        (
            ("resources", "memoryMiB"),
            32,
            "spec.resources.memoryMiB in body should be greater than or equal to 64",
        ),
        (
            ("restartPolicy",),
            "Sometimes",
            'spec.restartPolicy: Unsupported value: "Sometimes": supported values: '
            '"Never", "OnFailure", "Always"',
        ),
        (("workingDir",), "relative", "spec.workingDir in body should match '^/'"),
        (
            ("maxDuration",),
            "500ms",
            'spec.maxDuration: Invalid value: "string": must be at least 1s',
        ),
        (("maxDuration",), "1 hour", "spec.maxDuration in body should match"),
        (
            ("volumes",),
            [{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}],
            "a volume can be mounted only once per sandbox",
        ),
    ],
)
def test_an_invalid_spec_is_rejected_with_the_schema_message(
    crds: Kubectl, path: tuple[str, ...], value: Any, message: str
) -> None:
    manifest = example("sandbox.yaml")
    node = manifest["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert message in rejected(crds, manifest)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": "docker.io/library/debian:12"}, "spec.image"),
        ({"resources": {"cpus": 2, "memoryMiB": 512}}, "spec.resources"),
        ({"command": ["sh"]}, "spec.command"),
        ({"args": ["-c", "true"]}, "spec.args"),  # added where there was none
        ({"env": []}, "spec.env"),  # removed
        ({"nodeSelector": {"zone": "a"}}, "spec.nodeSelector"),
    ],
)
def test_an_immutable_field_change_is_rejected_with_the_cel_message(
    crds: Kubectl, change: dict[str, Any], field: str
) -> None:
    manifest = example("sandbox.yaml")
    crds.apply(manifest)
    changed = copy.deepcopy(manifest)
    changed["spec"].update(change)
    if change.get("env") == []:
        del changed["spec"]["env"]
    assert f'{field}: Invalid value: "' in (stderr := rejected(crds, changed))
    assert "field is immutable" in stderr


def test_mutable_fields_change_and_bump_the_generation(crds: Kubectl) -> None:
    manifest = example("sandbox.yaml")
    crds.apply(manifest)
    manifest["spec"].update(maxDuration="2h", restartPolicy="OnFailure", imagePullPolicy="Always")
    crds.apply(manifest)
    sandbox = Sandbox.model_validate(crds.json("get", "sbx", "hello"))
    assert sandbox.spec.restart_policy == "OnFailure"
    assert sandbox.metadata.generation == 2


def test_reapplying_the_same_manifest_changes_nothing(crds: Kubectl) -> None:
    crds("apply", "-f", str(EXAMPLES / "sandbox.yaml"))
    before = crds.json("get", "sbx", "hello")["metadata"]["resourceVersion"]
    assert "unchanged" in crds("apply", "-f", str(EXAMPLES / "sandbox.yaml")).stdout
    assert crds.json("get", "sbx", "hello")["metadata"]["resourceVersion"] == before


def test_placement_is_set_once(crds: Kubectl) -> None:
    crds("apply", "-f", str(EXAMPLES / "sandbox.yaml"))
    set_status(crds, "hello", {"phase": "Pending"})  # not placed yet: nodeName may come later
    set_status(crds, "hello", {"nodeName": "node-a"})
    set_status(crds, "hello", {"phase": "Running"})  # other status fields still change
    for move in ("node-b", None):
        stderr = set_status(crds, "hello", {"nodeName": move}, check=False)
        assert (
            'status.nodeName: Invalid value: "object": field cannot be changed or removed '
            in stderr
        )
    assert crds.json("get", "sbx", "hello")["status"]["nodeName"] == "node-a"


def test_volume_rules(crds: Kubectl) -> None:
    volume = example("volume.yaml")
    crds.apply(volume)
    volume["spec"]["sizeMiB"] = 2048
    crds.apply(volume)  # disks grow
    volume["spec"]["sizeMiB"] = 512
    assert "a disk volume can grow but not shrink" in rejected(crds, volume)
    volume["spec"].update(sizeMiB=2048, type="tmpfs")
    assert "spec.type: Invalid value" in rejected(crds, volume)
    shared_tmpfs = {
        **volume,
        "metadata": {"name": "scratch"},
        "spec": {"type": "tmpfs", "sizeMiB": 64, "accessMode": "ReadOnlyMany"},
    }
    assert "its accessMode must be ReadWriteOnce" in rejected(crds, shared_tmpfs)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "Allow", "cidr": "10.0.0.0/8", "domain": "a.com"}, "exactly one of cidr"),
        ({"action": "Allow"}, "exactly one of cidr"),
        ({"action": "Allow", "cidr": "10.0.0.0/33"}, "spec.egress[0].cidr in body should match"),
        ({"action": "Allow", "domain": "Bad_Name"}, "spec.egress[0].domain in body should match"),
        ({"action": "Allow", "cidr": "::/0", "ports": [0]}, "should be greater than or equal to 1"),
        ({"action": "Maybe", "cidr": "::/0"}, 'Unsupported value: "Maybe"'),
    ],
)
def test_network_policy_rules(crds: Kubectl, rule: dict[str, Any], message: str) -> None:
    policy = example("networkpolicy.yaml")
    policy["spec"]["egress"] = [rule]
    assert message in rejected(crds, policy)


def test_every_example_is_a_valid_model() -> None:
    models = {"Sandbox": Sandbox, "Volume": Volume, "NetworkPolicy": NetworkPolicy}
    for path in sorted(Path(EXAMPLES).glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        models[manifest["kind"]].model_validate(manifest)
