"""Acceptance: a real kopf operator runs against the test server with no errors in its log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from corral.testing.kubeapi import ADMIN_TOKEN, KubeAPIServer
from corral.testing.kubeapi.tls import certificate
from corral.testing.polling import until

from . import operator_app
from .kopf_log import LogCollector
from .manifests import GROUP, PLURAL, VERSION, widget


@pytest.fixture
def operator(
    kubeapi: KubeAPIServer, widgets: Any
) -> Iterator[tuple[operator_app.Journal, LogCollector]]:
    journal = operator_app.Journal()
    registry = operator_app.build_registry(kubeapi.url, certificate().cert, ADMIN_TOKEN, journal)
    collect = LogCollector()
    logger = logging.getLogger("kopf")
    logger.addHandler(collect)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=operator_app.run, args=(registry, stop, ready), daemon=True)
    thread.start()
    assert ready.wait(15), "the operator did not start"
    try:
        yield journal, collect
    finally:
        stop.set()
        thread.join(15)
        logger.removeHandler(collect)
        logger.setLevel(level)


def test_operator_create_update_delete_without_errors(
    operator: tuple[operator_app.Journal, LogCollector],
    widgets: kubernetes.client.CustomObjectsApi,
    kubeapi: KubeAPIServer,
) -> None:
    journal, log = operator
    args = (GROUP, VERSION, "default", PLURAL)
    widgets.create_namespaced_custom_object(*args, widget("w1", size=2))

    def ready() -> Any:
        obj = widgets.get_namespaced_custom_object(*args, "w1")
        return obj if obj.get("status", {}).get("phase") == "Ready" else None

    obj = until(ready)
    assert operator_app.FINALIZER in obj["metadata"]["finalizers"]
    assert obj["status"]["created"] == {"size": 2}
    assert journal.created == ["w1"]

    widgets.patch_namespaced_custom_object(*args, "w1", {"spec": {"size": 3}})
    until(
        lambda: widgets.get_namespaced_custom_object(*args, "w1")["status"].get("observedSize") == 3
    )

    widgets.delete_namespaced_custom_object(*args, "w1")

    def gone() -> bool:
        try:
            widgets.get_namespaced_custom_object(*args, "w1")
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    until(gone)
    assert journal.deleted == ["w1"]
    assert log.problems() == []
    assert kubeapi.log.writes()["widgets/status"] >= 2
    until(lambda: kubeapi.log.writes()["events"] >= 1)  # kopf posts k8s events in batches
