"""ownerReferences garbage collection (background, foreground, orphan) and namespace deletion."""

from __future__ import annotations

import time
from typing import Any

import kubernetes
import pytest

from .manifests import GROUP, PLURAL, VERSION, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


def _until(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def _names(widgets: Any) -> list[str]:
    return [i["metadata"]["name"] for i in widgets.list_namespaced_custom_object(*ARGS)["items"]]


def _child(name: str, owner: dict[str, Any], block: bool = False) -> dict[str, Any]:
    body = widget(name)
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "blockOwnerDeletion": block,
        }
    ]
    return body


def test_background_deletes_dependents_after_the_owner(widgets: Any) -> None:
    owner = widgets.create_namespaced_custom_object(*ARGS, widget("owner"))
    widgets.create_namespaced_custom_object(*ARGS, _child("child", owner))
    other = widgets.create_namespaced_custom_object(*ARGS, widget("other"))
    shared = _child("shared", owner)
    shared["metadata"]["ownerReferences"].append(
        {
            "apiVersion": other["apiVersion"],
            "kind": "Widget",
            "name": "other",
            "uid": other["metadata"]["uid"],
        }
    )
    widgets.create_namespaced_custom_object(*ARGS, shared)
    widgets.delete_namespaced_custom_object(*ARGS, "owner")
    _until(lambda: _names(widgets) == ["other", "shared"])
    refs = widgets.get_namespaced_custom_object(*ARGS, "shared")["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == ["other"]


def test_foreground_waits_for_blocking_dependents(widgets: Any) -> None:
    owner = widgets.create_namespaced_custom_object(*ARGS, widget("owner"))
    child = _child("child", owner, block=True)
    child["metadata"]["finalizers"] = ["hold"]
    widgets.create_namespaced_custom_object(*ARGS, child)
    marked = widgets.delete_namespaced_custom_object(
        *ARGS, "owner", propagation_policy="Foreground"
    )
    assert "foregroundDeletion" in marked["metadata"]["finalizers"]
    _until(
        lambda: widgets.get_namespaced_custom_object(*ARGS, "child")["metadata"].get(
            "deletionTimestamp"
        )
    )
    assert "owner" in _names(widgets)
    widgets.patch_namespaced_custom_object(*ARGS, "child", {"metadata": {"finalizers": None}})
    _until(lambda: _names(widgets) == [])


def test_orphan_keeps_dependents_without_the_reference(widgets: Any) -> None:
    owner = widgets.create_namespaced_custom_object(*ARGS, widget("owner"))
    widgets.create_namespaced_custom_object(*ARGS, _child("child", owner))
    widgets.delete_namespaced_custom_object(*ARGS, "owner", propagation_policy="Orphan")
    _until(lambda: _names(widgets) == ["child"])
    assert "ownerReferences" not in widgets.get_namespaced_custom_object(*ARGS, "child")["metadata"]


def test_namespace_deletion_empties_then_removes_it(
    k8s: kubernetes.client.ApiClient, widgets: Any
) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "team"}})
    assert core.read_namespace("team").status.phase == "Active"
    core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    widgets.create_namespaced_custom_object(GROUP, VERSION, "team", PLURAL, widget("w"))
    core.delete_namespace("team")

    def gone() -> bool:
        try:
            core.read_namespace("team")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    _until(gone)
    assert core.list_namespaced_config_map("team").items == []
    with pytest.raises(kubernetes.client.ApiException) as exc:
        core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    assert exc.value.status == 404


def test_no_new_content_in_a_terminating_namespace(
    k8s: kubernetes.client.ApiClient, widgets: Any
) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespace({"metadata": {"name": "team"}})
    held = widget("w")
    held["metadata"]["finalizers"] = ["hold"]
    widgets.create_namespaced_custom_object(GROUP, VERSION, "team", PLURAL, held)
    core.delete_namespace("team")
    assert core.read_namespace("team").status.phase == "Terminating"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        core.create_namespaced_config_map("team", {"metadata": {"name": "c"}})
    assert exc.value.status == 403
    assert "because it is being terminated" in exc.value.body
