"""Built-in resources the project uses: Namespaces, Events (core/v1, events.k8s.io), Leases."""

from __future__ import annotations

import datetime

import kubernetes
import pytest


def test_namespaces_list_create_and_watch(k8s: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    names = [n.metadata.name for n in core.list_namespace().items]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    created = core.create_namespace({"metadata": {"name": "corral-system"}})
    assert created.spec.finalizers == ["kubernetes"] and created.status.phase == "Active"
    watch = kubernetes.watch.Watch()
    seen = []
    for event in watch.stream(core.list_namespace, timeout_seconds=5):
        seen.append(event["object"].metadata.name)
        if len(seen) == 5:
            watch.stop()
    assert "corral-system" in seen
    with pytest.raises(kubernetes.client.ApiException) as exc:
        core.create_namespace({"metadata": {"name": "Bad.Name"}})
    assert exc.value.status == 422


def test_core_events(k8s: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(k8s)
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "w1."},
            "involvedObject": {
                "apiVersion": "test.corral.dev/v1",
                "kind": "Widget",
                "name": "w1",
                "namespace": "default",
            },
            "reason": "Placed",
            "message": "placed on n1",
            "type": "Normal",
            "source": {"component": "corral-operator"},
        },
    )
    events = core.list_namespaced_event("default").items
    assert [(e.reason, e.involved_object.name) for e in events] == [("Placed", "w1")]


def test_events_k8s_io(k8s: kubernetes.client.ApiClient) -> None:
    api = kubernetes.client.EventsV1Api(k8s)
    now = datetime.datetime.now(datetime.UTC)
    api.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e1"},
            "eventTime": now.isoformat(timespec="microseconds"),
            "reportingController": "corral.dev/operator",
            "reportingInstance": "op-1",
            "action": "Place",
            "reason": "Placed",
            "type": "Normal",
            "note": "placed",
            "regarding": {"kind": "Widget", "name": "w1", "namespace": "default"},
        },
    )
    event = api.read_namespaced_event("e1", "default")
    assert event.reason == "Placed" and event.regarding.name == "w1"


def test_leases_as_heartbeats(k8s: kubernetes.client.ApiClient) -> None:
    api = kubernetes.client.CoordinationV1Api(k8s)
    lease = api.create_namespaced_lease(
        "kube-node-lease",
        {
            "metadata": {"name": "node-1"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40},
        },
    )
    lease.spec.renew_time = datetime.datetime.now(datetime.UTC)
    renewed = api.replace_namespaced_lease("node-1", "kube-node-lease", lease)
    assert int(renewed.metadata.resource_version) > int(lease.metadata.resource_version)
    assert renewed.spec.renew_time is not None
    lease.spec.holder_identity = "thief"
    with pytest.raises(kubernetes.client.ApiException) as exc:
        api.replace_namespaced_lease("node-1", "kube-node-lease", lease)
    assert exc.value.status == 409
