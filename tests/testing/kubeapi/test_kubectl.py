"""Acceptance: real kubectl against the server (apply, get, watch, wait, patch, label, delete)."""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes
import yaml

from corral.testing.kubeapi import KubeAPIServer

from .conftest import Kubectl
from .manifests import GROUP, PLURAL, VERSION, widget, widget_crd


def _install(kubectl: Kubectl) -> None:
    kubectl.apply(widget_crd())
    kubectl("wait", "--for=condition=established", f"crd/{PLURAL}.{GROUP}", "--timeout=5s")


def test_version_and_discovery(kubectl: Kubectl) -> None:
    assert "Server Version: v1.32" in kubectl("version").stdout
    resources = kubectl("api-resources").stdout
    assert "leases" in resources and "customresourcedefinitions" in resources


def test_apply_client_side_without_validate_false(kubectl: Kubectl) -> None:
    _install(kubectl)
    assert "created" in kubectl.apply(widget("w1", size=2)).stdout
    assert "configured" in kubectl.apply(widget("w1", size=3)).stdout
    assert "unchanged" in kubectl.apply(widget("w1", size=3)).stdout
    obj = yaml.safe_load(kubectl("get", "widget", "w1", "-o", "yaml").stdout)
    assert obj["spec"] == {"size": 3, "mode": "fast", "limits": {"memory": 256}}
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]


def test_apply_of_a_kind_not_installed_yet_is_refused_as_unknown(kubectl: Kubectl) -> None:
    """As on a real cluster: kubectl finds no schema for the kind (OpenAPI v3, then v2) and
    no resource for it, and says so; once its CRD is established the same apply works."""
    result = kubectl.apply(widget("w1"), check=False)
    assert result.returncode != 0
    assert f'no matches for kind "Widget" in version "{GROUP}/{VERSION}"' in result.stderr
    _install(kubectl)
    assert "created" in kubectl.apply(widget("w1")).stdout


def test_apply_rejects_unknown_fields_and_invalid_values(kubectl: Kubectl) -> None:
    _install(kubectl)
    unknown = kubectl.apply(widget("w1", bogus=1), check=False)
    assert unknown.returncode != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in unknown.stderr
    bad = kubectl.apply(widget("w1", size=0), check=False)
    assert (
        'The Widget "w1" is invalid: spec.size: Invalid value: 0: spec.size in body should '
        "be greater than or equal to 1"
    ) in bad.stderr


def test_apply_server_side_create_update_and_conflict(kubectl: Kubectl) -> None:
    _install(kubectl)
    assert "serverside-applied" in kubectl.apply(widget("w1", size=2), "--server-side").stdout
    kubectl.apply(widget("w1", size=4), "--server-side")
    assert kubectl.json("get", "widget", "w1")["spec"]["size"] == 4
    other = kubectl.apply(
        widget("w1", size=5), "--server-side", "--field-manager=other", check=False
    )
    assert other.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.size' in other.stderr
    kubectl.apply(
        widget("w1", size=5), "--server-side", "--field-manager=other", "--force-conflicts"
    )
    assert kubectl.json("get", "widget", "w1")["spec"]["size"] == 5


def test_get_shows_printer_columns(kubectl: Kubectl) -> None:
    _install(kubectl)
    kubectl.apply(widget("w1", size=7))
    lines = kubectl("get", "wd").stdout.split("\n")
    assert lines[0].split() == ["NAME", "SIZE", "READY"]
    assert lines[1].split() == ["w1", "7"]


def test_get_watch_sees_changes(kubectl: Kubectl) -> None:
    _install(kubectl)
    kubectl.apply(widget("w1", size=1))

    def change() -> None:
        time.sleep(1.0)
        kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":9}}')

    thread = threading.Thread(target=change)
    thread.start()
    result = kubectl("get", "widgets", "-w", "--request-timeout=3s", timeout=20)
    thread.join()
    rows = [line.split()[:2] for line in result.stdout.splitlines()[1:]]
    assert rows == [["w1", "1"], ["w1", "9"]]


def test_wait_for_condition_set_by_a_controller(
    kubectl: Kubectl, k8s: kubernetes.client.ApiClient
) -> None:
    _install(kubectl)
    kubectl.apply(widget("w1"))
    api = kubernetes.client.CustomObjectsApi(k8s)

    def controller() -> None:
        time.sleep(0.5)
        api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "w1",
            {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        )

    thread = threading.Thread(target=controller)
    thread.start()
    result = kubectl("wait", "--for=condition=Ready", "widget/w1", "--timeout=10s")
    thread.join()
    assert "condition met" in result.stdout


def test_patch_and_label(kubectl: Kubectl) -> None:
    _install(kubectl)
    kubectl.apply(widget("w1"))
    kubectl(
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/size","value":6}]',
    )
    kubectl("label", "widget", "w1", "tier=gold")
    assert (
        kubectl("get", "widgets", "-l", "tier=gold", "-o", "name").stdout.strip()
        == "widget.test.corral.dev/w1"
    )
    obj = kubectl.json("get", "widget", "w1")
    assert obj["spec"]["size"] == 6 and obj["metadata"]["generation"] == 2
    smp = kubectl("patch", "widget", "w1", "-p", '{"spec":{"size":2}}', check=False)
    assert "UnsupportedMediaType" in smp.stderr or "unknown format" in smp.stderr


def test_delete_waits_for_the_finalizer_a_controller_removes(
    kubectl: Kubectl, k8s: kubernetes.client.ApiClient
) -> None:
    _install(kubectl)
    obj: dict[str, Any] = widget("w1")
    obj["metadata"]["finalizers"] = ["test.corral.dev/cleanup"]
    kubectl.apply(obj)
    api = kubernetes.client.CustomObjectsApi(k8s)

    def controller() -> None:
        while True:
            current = api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
            if current["metadata"].get("deletionTimestamp"):
                break
            time.sleep(0.05)
        api.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"finalizers": None}}
        )

    thread = threading.Thread(target=controller)
    thread.start()
    result = kubectl("delete", "widget", "w1", "--timeout=10s")
    thread.join()
    assert 'widget.test.corral.dev "w1" deleted' in result.stdout
    assert kubectl("get", "widget", "w1", check=False).returncode != 0


def test_typed_generators_need_protobuf(kubectl: Kubectl, kubeapi: KubeAPIServer) -> None:
    """`kubectl create configmap` sends protobuf, which this server does not decode (415)."""
    result = kubectl("create", "configmap", "c1", "--from-literal=a=b", check=False)
    assert result.returncode != 0 and "unknown format" in result.stderr
    kubectl.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "b"}}
    )
    assert kubectl.json("get", "configmap", "c1")["data"] == {"a": "b"}


def test_unauthenticated_kubectl_is_refused(kubectl: Kubectl) -> None:
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "wrong"
    kubectl.kubeconfig.write_text(yaml.safe_dump(config))
    result = kubectl("get", "namespaces", check=False)
    assert result.returncode != 0
    assert "must be logged in" in result.stderr or "Unauthorized" in result.stderr


def test_apply_updates_a_builtin_with_a_strategic_merge_patch(kubectl: Kubectl) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c1"},
        "data": {"a": "1", "b": "2"},
    }
    kubectl.apply(config_map)
    config_map["data"] = {"a": "3"}
    assert "configured" in kubectl.apply(config_map).stdout
    assert kubectl.json("get", "configmap", "c1")["data"] == {"a": "3"}


def test_delete_cascade_foreground(kubectl: Kubectl) -> None:
    _install(kubectl)
    kubectl.apply(widget("w1"))
    result = kubectl("delete", "widget", "w1", "--cascade=foreground", "--timeout=10s")
    assert "deleted" in result.stdout
