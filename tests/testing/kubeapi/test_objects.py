"""Objects and verbs: server-set metadata, generation, resourceVersions, 404/409, PUT, lists."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from .manifests import GROUP, PLURAL, VERSION, api_status, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


def test_create_sets_server_fields(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    meta = obj["metadata"]
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and meta["namespace"] == "default"
    assert int(meta["resourceVersion"]) > 0
    assert meta["managedFields"][0]["operation"] == "Update"


def test_generate_name(widgets: Any) -> None:
    body = widget("")
    body["metadata"] = {"generateName": "w-"}
    obj = widgets.create_namespaced_custom_object(*ARGS, body)
    assert obj["metadata"]["name"].startswith("w-") and len(obj["metadata"]["name"]) == 7


def test_namespace_comes_from_the_url(widgets: Any) -> None:
    body = widget("w1")
    body["metadata"]["namespace"] = "kube-system"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.create_namespaced_custom_object(*ARGS, body)
    assert exc.value.status == 400
    with pytest.raises(kubernetes.client.ApiException) as missing:
        widgets.create_namespaced_custom_object(GROUP, VERSION, "nope", PLURAL, widget("w1"))
    assert api_status(missing.value)["message"] == 'namespaces "nope" not found'


def test_duplicate_create_is_409_and_missing_is_404(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    with pytest.raises(kubernetes.client.ApiException) as dup:
        widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    assert dup.value.status == 409
    assert api_status(dup.value)["reason"] == "AlreadyExists"
    assert api_status(dup.value)["message"] == 'widgets.test.corral.dev "w1" already exists'
    with pytest.raises(kubernetes.client.ApiException) as missing:
        widgets.get_namespaced_custom_object(*ARGS, "nope")
    assert api_status(missing.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'widgets.test.corral.dev "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": GROUP, "kind": PLURAL},
        "code": 404,
    }


def test_generation_bumps_on_spec_changes_only(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    labelled = widgets.patch_namespaced_custom_object(
        *ARGS, "w1", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    status = widgets.patch_namespaced_custom_object_status(*ARGS, "w1", {"status": {"x": 1}})
    assert status["metadata"]["generation"] == 1
    spec = widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 5}})
    assert spec["metadata"]["generation"] == 2


def test_resource_version_is_cluster_wide_and_monotonic(
    widgets: Any, k8s: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    a = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))["metadata"]
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "c"}}).metadata
    c = widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 2}})["metadata"]
    assert int(a["resourceVersion"]) < int(b.resource_version) < int(c["resourceVersion"])


def test_noop_update_does_not_write(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    same = widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 1}})
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_put_with_stale_resource_version_is_409(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 2}})
    obj["spec"]["size"] = 3
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.replace_namespaced_custom_object(*ARGS, "w1", obj)
    assert exc.value.status == 409
    assert api_status(exc.value)["message"] == (
        'Operation cannot be fulfilled on widgets.test.corral.dev "w1": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    fresh = widgets.get_namespaced_custom_object(*ARGS, "w1")
    fresh["spec"]["size"] = 3
    assert widgets.replace_namespaced_custom_object(*ARGS, "w1", fresh)["spec"]["size"] == 3


def test_put_of_a_custom_resource_needs_a_resource_version(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    del obj["metadata"]["resourceVersion"]
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.replace_namespaced_custom_object(*ARGS, "w1", obj)
    assert exc.value.status == 422
    assert (
        "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        in api_status(exc.value)["message"]
    )


def test_patch_with_stale_resource_version_is_409(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 2}})
    stale = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"size": 4},
    }
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.patch_namespaced_custom_object(*ARGS, "w1", stale)
    assert exc.value.status == 409


def test_list_has_kind_api_version_and_resource_version(widgets: Any) -> None:
    for name in ("a", "b", "c"):
        widgets.create_namespaced_custom_object(*ARGS, widget(name))
    listed = widgets.list_namespaced_custom_object(*ARGS)
    assert listed["kind"] == "WidgetList" and listed["apiVersion"] == f"{GROUP}/{VERSION}"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b", "c"]
    assert int(listed["metadata"]["resourceVersion"]) >= int(
        listed["items"][-1]["metadata"]["resourceVersion"]
    )


def test_list_pages_with_limit_and_continue(widgets: Any) -> None:
    for name in ("a", "b", "c", "d", "e"):
        widgets.create_namespaced_custom_object(*ARGS, widget(name))
    first = widgets.list_namespaced_custom_object(*ARGS, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 3
    second = widgets.list_namespaced_custom_object(
        *ARGS, limit=2, _continue=first["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in second["items"]] == ["c", "d"]
    last = widgets.list_namespaced_custom_object(
        *ARGS, limit=2, _continue=second["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in last["items"]] == ["e"]
    assert "continue" not in last["metadata"]


def test_builtin_list_items_have_no_type_meta(k8s: kubernetes.client.ApiClient) -> None:
    response = kubernetes.client.CoreV1Api(k8s).list_namespace(_preload_content=False)
    body = json.loads(response.data)
    assert body["kind"] == "NamespaceList"
    assert "kind" not in body["items"][0]


def test_delete_and_deletecollection(widgets: Any) -> None:
    for name in ("a", "b", "c"):
        body = widget(name)
        body["metadata"]["labels"] = {"group": "x" if name != "c" else "y"}
        widgets.create_namespaced_custom_object(*ARGS, body)
    status = widgets.delete_namespaced_custom_object(*ARGS, "a")
    assert status["status"] == "Success" and status["details"]["name"] == "a"
    widgets.delete_collection_namespaced_custom_object(*ARGS, label_selector="group=x")
    left = widgets.list_namespaced_custom_object(*ARGS)["items"]
    assert [i["metadata"]["name"] for i in left] == ["c"]


def test_delete_preconditions(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.delete_namespaced_custom_object(
            *ARGS, "w1", body={"preconditions": {"uid": "not-the-uid"}}
        )
    assert exc.value.status == 409


def test_dry_run_does_not_persist(widgets: Any) -> None:
    obj = widgets.create_namespaced_custom_object(*ARGS, widget("w1"), dry_run="All")
    assert obj["metadata"]["name"] == "w1"
    assert widgets.list_namespaced_custom_object(*ARGS)["items"] == []
