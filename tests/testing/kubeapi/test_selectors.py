"""Label selectors (=, !=, in, notin, exists, !exists) and field selectors."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from .manifests import GROUP, PLURAL, VERSION, widget

ARGS = (GROUP, VERSION, "default", PLURAL)


@pytest.fixture
def labelled(widgets: Any) -> Any:
    for name, labels in (
        ("a", {"env": "prod", "tier": "1"}),
        ("b", {"env": "dev"}),
        ("c", {"tier": "2"}),
    ):
        body = widget(name)
        body["metadata"]["labels"] = labels
        widgets.create_namespaced_custom_object(*ARGS, body)
    return widgets


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("env=prod", ["a"]),
        ("env==prod", ["a"]),
        ("env!=prod", ["b", "c"]),
        ("env in (prod, dev)", ["a", "b"]),
        ("env notin (prod)", ["b", "c"]),
        ("tier", ["a", "c"]),
        ("!tier", ["b"]),
        ("env=prod,tier=1", ["a"]),
    ],
)
def test_label_selectors(labelled: Any, selector: str, names: list[str]) -> None:
    items = labelled.list_namespaced_custom_object(*ARGS, label_selector=selector)["items"]
    assert [i["metadata"]["name"] for i in items] == names


def test_field_selectors(labelled: Any) -> None:
    items = labelled.list_namespaced_custom_object(*ARGS, field_selector="metadata.name=b")
    assert [i["metadata"]["name"] for i in items["items"]] == ["b"]
    every = labelled.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, field_selector="metadata.namespace!=default"
    )
    assert every["items"] == []


def test_unsupported_field_and_bad_label_selector_are_400(labelled: Any) -> None:
    with pytest.raises(kubernetes.client.ApiException) as field:
        labelled.list_namespaced_custom_object(*ARGS, field_selector="spec.size=1")
    assert field.value.status == 400 and "field label not supported: spec.size" in field.value.body
    with pytest.raises(kubernetes.client.ApiException) as label:
        labelled.list_namespaced_custom_object(*ARGS, label_selector="env=a b")
    assert label.value.status == 400


def test_event_field_selectors(k8s: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    for name, kind in (("e1", "Widget"), ("e2", "Pod")):
        core.create_namespaced_event(
            "default",
            {
                "metadata": {"name": name},
                "involvedObject": {"kind": kind, "name": "x"},
                "reason": "R",
                "message": "m",
                "type": "Normal",
            },
        )
    events = core.list_namespaced_event("default", field_selector="involvedObject.kind=Widget")
    assert [e.metadata.name for e in events.items] == ["e1"]
