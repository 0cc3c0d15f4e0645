"""Watch: event types, resume from history, 410 Expired, bookmarks, timeouts, selector moves."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
import kubernetes
import kubernetes_asyncio
import pytest

from corral.testing.kubeapi import ADMIN_TOKEN, KubeAPIServer, Settings
from corral.testing.kubeapi.tls import certificate

from .manifests import GROUP, PLURAL, VERSION, widget, widget_crd

ARGS = (GROUP, VERSION, "default", PLURAL)
MERGE = {"_content_type": "application/merge-patch+json"}  # the async client defaults to JSON patch


@pytest.fixture
def kubeapi_settings() -> Settings:
    return Settings(history_size=5, bookmark_interval=0.2)


async def _install(ak8s: kubernetes_asyncio.client.ApiClient) -> Any:
    ext = kubernetes_asyncio.client.ApiextensionsV1Api(ak8s)
    await ext.create_custom_resource_definition(widget_crd())
    return kubernetes_asyncio.client.CustomObjectsApi(ak8s)


async def _stream(server: KubeAPIServer, count: int = 0, **params: Any) -> list[Any]:
    """Raw watch events: `count` of them, or all until the server ends the stream."""
    url = f"{server.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
    query = {"watch": "true", **{k: str(v) for k, v in params.items()}}
    context = ssl.create_default_context(cafile=certificate().cert)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url, params=query, ssl=context, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as response,
    ):
        assert response.status == 200
        events = []
        async for line in response.content:
            events.append(json.loads(line))
            if len(events) == count:
                break
        return events


async def test_events_and_resume(
    ak8s: kubernetes_asyncio.client.ApiClient, kubeapi: KubeAPIServer
) -> None:
    api = await _install(ak8s)
    first = await api.create_namespaced_custom_object(*ARGS, widget("w1"))
    rv = first["metadata"]["resourceVersion"]
    await api.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 2}}, **MERGE)
    await api.delete_namespaced_custom_object(*ARGS, "w1")
    resumed = await _stream(kubeapi, 2, resourceVersion=rv, timeoutSeconds=5)
    assert [(e["type"], e["object"]["spec"]["size"]) for e in resumed] == [
        ("MODIFIED", 2),
        ("DELETED", 2),
    ]
    assert int(resumed[1]["object"]["metadata"]["resourceVersion"]) > int(rv)


async def test_initial_state_then_live_events(ak8s: kubernetes_asyncio.client.ApiClient) -> None:
    api = await _install(ak8s)
    await api.create_namespaced_custom_object(*ARGS, widget("w1"))
    watch = kubernetes_asyncio.watch.Watch()
    seen: list[tuple[str, str]] = []

    async def writer() -> None:
        await asyncio.sleep(0.2)
        await api.create_namespaced_custom_object(*ARGS, widget("w2"))
        await api.delete_namespaced_custom_object(*ARGS, "w1")

    task = asyncio.create_task(writer())
    async for event in watch.stream(api.list_namespaced_custom_object, *ARGS, timeout_seconds=5):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 3:
            watch.stop()
    await task
    assert seen == [("ADDED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]


async def test_too_old_resource_version_is_410(
    ak8s: kubernetes_asyncio.client.ApiClient, kubeapi: KubeAPIServer
) -> None:
    api = await _install(ak8s)
    first = await api.create_namespaced_custom_object(*ARGS, widget("w1"))
    for size in range(2, 10):
        await api.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": size}}, **MERGE)
    events = await _stream(
        kubeapi, resourceVersion=first["metadata"]["resourceVersion"], timeoutSeconds=5
    )
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith(
        f"too old resource version: {first['metadata']['resourceVersion']} ("
    )


def test_sync_client_watch_raises_410(kubeapi: KubeAPIServer, widgets: Any) -> None:
    first = widgets.create_namespaced_custom_object(*ARGS, widget("w1"))
    for size in range(2, 10):
        widgets.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": size}})
    watch = kubernetes.watch.Watch()
    with pytest.raises(kubernetes.client.ApiException) as exc:
        for _ in watch.stream(
            widgets.list_namespaced_custom_object,
            *ARGS,
            timeout_seconds=1,
            resource_version=first["metadata"]["resourceVersion"],
        ):
            pass
    assert exc.value.status == 410


async def test_bookmarks_and_timeout(
    ak8s: kubernetes_asyncio.client.ApiClient, kubeapi: KubeAPIServer
) -> None:
    api = await _install(ak8s)
    created = await api.create_namespaced_custom_object(*ARGS, widget("w1"))
    rv = created["metadata"]["resourceVersion"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await _stream(
        kubeapi, resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds=1
    )
    assert 0.9 < loop.time() - started < 3
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    bookmark = events[-1]["object"]
    assert bookmark["kind"] == "Widget" and bookmark["metadata"]["resourceVersion"] == rv


async def test_send_initial_events_ends_with_a_bookmark(
    ak8s: kubernetes_asyncio.client.ApiClient, kubeapi: KubeAPIServer
) -> None:
    api = await _install(ak8s)
    await api.create_namespaced_custom_object(*ARGS, widget("w1"))
    events = await _stream(
        kubeapi,
        2,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
        timeoutSeconds=5,
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_label_selector_watch_sees_objects_enter_and_leave(
    ak8s: kubernetes_asyncio.client.ApiClient, kubeapi: KubeAPIServer
) -> None:
    api = await _install(ak8s)
    created = await api.create_namespaced_custom_object(*ARGS, widget("w1"))
    rv = created["metadata"]["resourceVersion"]
    await api.patch_namespaced_custom_object(
        *ARGS, "w1", {"metadata": {"labels": {"node": "n1"}}}, **MERGE
    )
    await api.patch_namespaced_custom_object(*ARGS, "w1", {"spec": {"size": 3}}, **MERGE)
    await api.patch_namespaced_custom_object(
        *ARGS, "w1", {"metadata": {"labels": {"node": "n2"}}}, **MERGE
    )
    events = await _stream(
        kubeapi, 3, resourceVersion=rv, labelSelector="node=n1", timeoutSeconds=5
    )
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
