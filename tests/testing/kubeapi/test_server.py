"""Server lifecycle and the request log: fast start, idempotent stop, writes per resource."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes_asyncio

from corral.testing.kubeapi import KubeAPIServer, write_kubeconfig

from .manifests import GROUP, PLURAL, VERSION, widget


def test_starts_well_under_a_second() -> None:
    started = time.monotonic()
    with KubeAPIServer() as server:
        elapsed = time.monotonic() - started
        assert server.url.startswith("https://127.0.0.1:")
    assert elapsed < 0.5


def test_stop_is_idempotent_and_restart_is_refused() -> None:
    server = KubeAPIServer()
    server.start_in_thread()
    server.stop_thread()
    server.stop_thread()
    try:
        server.start_in_thread()
    except RuntimeError as exc:
        assert "cannot start" in str(exc)
    else:
        raise AssertionError("a stopped server restarted")


async def test_runs_on_the_running_loop(tmp_path: Path) -> None:
    async with KubeAPIServer() as server:
        path = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        async with await kubernetes_asyncio.config.new_client_from_config(
            config_file=str(path)
        ) as client:
            namespaces = await kubernetes_asyncio.client.CoreV1Api(client).list_namespace()
        assert len(namespaces.items) == 4
    await server.stop()


def test_request_log_counts_writes_per_resource(kubeapi: KubeAPIServer, widgets: Any) -> None:
    kubeapi.log.clear()
    args = (GROUP, VERSION, "default", PLURAL)
    widgets.create_namespaced_custom_object(*args, widget("w1"))
    widgets.patch_namespaced_custom_object(*args, "w1", {"spec": {"size": 2}})
    widgets.patch_namespaced_custom_object_status(*args, "w1", {"status": {"phase": "A"}})
    widgets.get_namespaced_custom_object(*args, "w1")
    widgets.delete_namespaced_custom_object(*args, "w1")
    assert kubeapi.log.writes() == {"widgets": 3, "widgets/status": 1}
    assert kubeapi.log.count(verb="get", resource="widgets") == 1
    assert kubeapi.log.count(verb="patch", name="w1") == 2
