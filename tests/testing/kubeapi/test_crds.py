"""CRD registration: applying a CRD serves its resource; deleting it stops serving it."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest

from .manifests import GROUP, PLURAL, VERSION, api_status, widget, widget_crd


def _wait(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _served(k8s: kubernetes.client.ApiClient) -> bool:
    groups = kubernetes.client.ApisApi(k8s).get_api_versions().groups
    return any(g.name == GROUP for g in groups)


def test_crd_adds_and_removes_the_resource(k8s: kubernetes.client.ApiClient) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(k8s)
    custom = kubernetes.client.CustomObjectsApi(k8s)
    assert not _served(k8s)
    crd = ext.create_custom_resource_definition(widget_crd())
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd.status.accepted_names.kind == "Widget"
    assert _served(k8s)
    resources = custom.get_api_resources(GROUP, VERSION).resources
    assert {r.name for r in resources} == {"widgets", "widgets/status"}
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w1"))

    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    _wait(lambda: not _served(k8s))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert exc.value.status == 404


def test_crd_deletion_waits_for_instances_with_finalizers(
    k8s: kubernetes.client.ApiClient, widgets: Any
) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(k8s)
    obj = widget("w1")
    obj["metadata"]["finalizers"] = ["test.corral.dev/hold"]
    widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, obj)
    ext.delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    time.sleep(0.1)
    crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    assert crd.metadata.deletion_timestamp is not None
    held = widgets.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    assert held["metadata"]["deletionTimestamp"]
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, widget("w2"))
    assert exc.value.status == 405
    widgets.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"finalizers": None}}
    )
    _wait(lambda: not _served(k8s))


def test_crd_name_must_match_plural_and_group(k8s: kubernetes.client.ApiClient) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "wrong.test.corral.dev"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        kubernetes.client.ApiextensionsV1Api(k8s).create_custom_resource_definition(crd)
    assert exc.value.status == 422
    assert api_status(exc.value)["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "wrong.test.corral.dev" is invalid: '
        'metadata.name: Invalid value: "wrong.test.corral.dev": must be spec.names.plural+"."'
        "+spec.group"
    )


def test_crd_with_a_broken_cel_rule_is_rejected(k8s: kubernetes.client.ApiClient) -> None:
    crd = widget_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [{"rule": "self.size >"}]
    with pytest.raises(kubernetes.client.ApiException) as exc:
        kubernetes.client.ApiextensionsV1Api(k8s).create_custom_resource_definition(crd)
    assert exc.value.status == 422 and "compilation failed" in exc.value.body
