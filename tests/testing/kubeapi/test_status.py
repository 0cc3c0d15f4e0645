"""The status subresource: /status changes only status; the main endpoint ignores status."""

from __future__ import annotations

from typing import Any

from .manifests import GROUP, PLURAL, VERSION, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


def test_status_is_dropped_on_create(widgets: Any) -> None:
    body = widget("w1")
    body["status"] = {"phase": "Ready"}
    assert "status" not in widgets.create_namespaced_custom_object(*ARGS, body)


def test_main_endpoint_ignores_status(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    widgets.patch_namespaced_custom_object_status(*ARGS, "w1", {"status": {"phase": "A"}})
    obj = widgets.patch_namespaced_custom_object(
        *ARGS, "w1", {"status": {"phase": "B"}, "spec": {"size": 2}}
    )
    assert obj["status"] == {"phase": "A"} and obj["spec"]["size"] == 2
    obj["status"] = {"phase": "C"}
    replaced = widgets.replace_namespaced_custom_object(*ARGS, "w1", obj)
    assert replaced["status"] == {"phase": "A"}


def test_status_endpoint_changes_only_status(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    obj = widgets.patch_namespaced_custom_object_status(
        *ARGS,
        "w1",
        {"spec": {"size": 9}, "metadata": {"labels": {"a": "b"}}, "status": {"phase": "Ready"}},
    )
    assert obj["spec"]["size"] == 1 and "labels" not in obj["metadata"]
    assert obj["status"] == {"phase": "Ready"}
    obj["status"]["phase"] = "Done"
    obj["spec"]["size"] = 5
    replaced = widgets.replace_namespaced_custom_object_status(*ARGS, "w1", obj)
    assert replaced["status"] == {"phase": "Done"} and replaced["spec"]["size"] == 1
    assert replaced["metadata"]["generation"] == 1
    entries = {
        (e["manager"], e.get("subresource", "")) for e in replaced["metadata"]["managedFields"]
    }
    assert ("OpenAPI-Generator", "status") in entries


def test_status_read_through_the_subresource(widgets: Any) -> None:
    widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    widgets.patch_namespaced_custom_object_status(*ARGS, "w1", {"status": {"phase": "X"}})
    assert widgets.get_namespaced_custom_object_status(*ARGS, "w1")["status"] == {"phase": "X"}
