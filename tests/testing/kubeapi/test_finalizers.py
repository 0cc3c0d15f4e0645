"""Finalizers and deletionTimestamp: delete marks, removing the last finalizer deletes."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from corral.testing.kubeapi import KubeAPIServer

from .manifests import GROUP, PLURAL, VERSION, api_status, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


def _with_finalizers(name: str, *finalizers: str) -> dict[str, Any]:
    body = widget(name)
    body["metadata"]["finalizers"] = list(finalizers)
    return body


def test_delete_with_finalizers_marks_then_last_removal_deletes(
    widgets: Any, kubeapi: KubeAPIServer
) -> None:
    created = widgets.create_namespaced_custom_object(*ARGS, _with_finalizers("w1", "a", "b"))
    marked = widgets.delete_namespaced_custom_object(*ARGS, "w1")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert marked["metadata"]["generation"] == 2
    again = widgets.delete_namespaced_custom_object(*ARGS, "w1")
    assert again["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    widgets.patch_namespaced_custom_object(*ARGS, "w1", {"metadata": {"finalizers": ["b"]}})
    assert widgets.get_namespaced_custom_object(*ARGS, "w1")["metadata"]["finalizers"] == ["b"]
    widgets.patch_namespaced_custom_object(*ARGS, "w1", {"metadata": {"finalizers": []}})
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.get_namespaced_custom_object(*ARGS, "w1")
    assert exc.value.status == 404
    watch = kubernetes.watch.Watch()
    events = [
        (e["type"], e["object"]["metadata"].get("finalizers"))
        for e in watch.stream(
            widgets.list_namespaced_custom_object,
            *ARGS,
            resource_version=created["metadata"]["resourceVersion"],
            timeout_seconds=1,
        )
    ]
    assert events == [("MODIFIED", ["a", "b"]), ("MODIFIED", ["b"]), ("DELETED", [])]


def test_no_new_finalizers_while_deleting(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, _with_finalizers("w1", "a"))
    widgets.delete_namespaced_custom_object(*ARGS, "w1")
    with pytest.raises(kubernetes.client.ApiException) as exc:
        widgets.patch_namespaced_custom_object(
            *ARGS, "w1", {"metadata": {"finalizers": ["a", "b"]}}
        )
    assert exc.value.status == 422
    assert (
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is "
        'being deleted, found new finalizers []string{"b"}' in api_status(exc.value)["message"]
    )


def test_deletion_timestamp_cannot_be_cleared(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, _with_finalizers("w1", "a"))
    widgets.delete_namespaced_custom_object(*ARGS, "w1")
    obj = widgets.patch_namespaced_custom_object(
        *ARGS, "w1", {"metadata": {"deletionTimestamp": None}}
    )
    assert obj["metadata"]["deletionTimestamp"]
