"""PATCH: merge, JSON patch (422 on a failed test), strategic merge, server-side apply."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from .manifests import GROUP, PLURAL, VERSION, api_status, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


def _patch(
    k8s: kubernetes.client.ApiClient, content_type: str, body: Any, name: str = "w1", **query: Any
) -> Any:
    api = kubernetes.client.CustomObjectsApi(k8s)
    return api.patch_namespaced_custom_object(
        *ARGS, name, body, _content_type=content_type, **query
    )


def test_merge_patch_sets_and_deletes(widgets: Any, k8s: kubernetes.client.ApiClient) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1", nickname="abc"))
    obj = _patch(k8s, "application/merge-patch+json", {"spec": {"size": 4, "nickname": None}})
    assert obj["spec"]["size"] == 4 and "nickname" not in obj["spec"]


def test_json_patch_and_failed_test_is_422(widgets: Any, k8s: kubernetes.client.ApiClient) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    obj = _patch(
        k8s,
        "application/json-patch+json",
        [
            {"op": "test", "path": "/spec/size", "value": 1},
            {"op": "replace", "path": "/spec/size", "value": 2},
            {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}},
        ],
    )
    assert obj["spec"]["size"] == 2 and obj["metadata"]["labels"] == {"a": "b"}
    with pytest.raises(kubernetes.client.ApiException) as exc:
        _patch(
            k8s, "application/json-patch+json", [{"op": "test", "path": "/spec/size", "value": 1}]
        )
    status = api_status(exc.value)
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert (
        status["details"]["causes"][0]["message"] == "testing value /spec/size failed: test failed"
    )


def test_strategic_merge_is_415_for_custom_resources(
    widgets: Any, k8s: kubernetes.client.ApiClient
) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    with pytest.raises(kubernetes.client.ApiException) as exc:
        _patch(k8s, "application/strategic-merge-patch+json", {"spec": {"size": 2}})
    assert exc.value.status == 415


def test_strategic_merge_on_builtins_merges_lists_by_name(k8s: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(k8s)
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {
                        "containers": [{"name": "one", "image": "x"}, {"name": "two", "image": "y"}]
                    },
                },
            },
        },
    )
    patched = apps.patch_namespaced_deployment(
        "d",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "z"}]}}}},
    )
    images = [(c.name, c.image) for c in patched.spec.template.spec.containers]
    assert images == [("one", "x"), ("two", "z")]


def test_server_side_apply_creates_updates_and_owns_fields(
    widgets: Any, k8s: kubernetes.client.ApiClient
) -> None:
    apply = "application/apply-patch+yaml"
    # A create by apply answers 201, which the generated client maps to None.
    assert _patch(k8s, apply, widget("w1", size=2, nickname="abc"), field_manager="me") is None
    created = widgets.get_namespaced_custom_object(*ARGS, "w1")
    assert created["spec"]["size"] == 2
    entry = created["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"]) == ("me", "Apply")
    assert entry["fieldsV1"]["f:spec"]["f:size"] == {}
    updated = _patch(k8s, apply, widget("w1", size=3), field_manager="me")
    assert updated["spec"]["size"] == 3
    assert "nickname" not in updated["spec"], "a field no longer applied is removed"


def test_server_side_apply_conflicts_unless_forced(
    widgets: Any, k8s: kubernetes.client.ApiClient
) -> None:
    apply = "application/apply-patch+yaml"
    _patch(k8s, apply, widget("w1", size=2), field_manager="first")
    same = _patch(k8s, apply, widget("w1", size=2), field_manager="second")
    assert same["spec"]["size"] == 2, "the same value is shared ownership, not a conflict"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        _patch(k8s, apply, widget("w1", size=5), field_manager="second")
    status = api_status(exc.value)
    assert status["code"] == 409
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "first": .spec.size'
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "first"',
            "field": ".spec.size",
        }
    ]
    forced = _patch(k8s, apply, widget("w1", size=5), field_manager="second", force=True)
    assert forced["spec"]["size"] == 5


def test_update_takes_ownership_from_appliers(
    widgets: Any, k8s: kubernetes.client.ApiClient
) -> None:
    _patch(k8s, "application/apply-patch+yaml", widget("w1", size=2), field_manager="applier")
    _patch(k8s, "application/merge-patch+json", {"spec": {"size": 7}}, field_manager="editor")
    with pytest.raises(kubernetes.client.ApiException) as exc:
        _patch(k8s, "application/apply-patch+yaml", widget("w1", size=2), field_manager="applier")
    assert api_status(exc.value)["message"] == (
        'Apply failed with 1 conflict: conflict with "editor" using test.corral.dev/v1: .spec.size'
    )


def test_apply_needs_a_field_manager(widgets: Any, k8s: kubernetes.client.ApiClient) -> None:
    with pytest.raises(kubernetes.client.ApiException) as exc:
        _patch(k8s, "application/apply-patch+yaml", widget("w1"))
    assert exc.value.status == 422
