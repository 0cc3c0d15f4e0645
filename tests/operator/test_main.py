"""End to end on the Kubernetes-API test server: the real operator (in a thread), the real
CRDs, node Leases registered by the test, and real kubectl applying the examples."""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from testing.kubeapi.conftest import Kubectl
from testing.kubeapi.kopf_log import IN_A_THREAD, LogCollector

from corral.api import NODE_AGENT_FINALIZER
from corral.operator.main import FINALIZER, operate, parse_args
from corral.operator.settings import OperatorSettings
from corral.testing.kubeapi import KubeAPIServer
from corral.testing.polling import until

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "corral-system"
INTERVAL = 0.3


_KNOWN = (
    IN_A_THREAD,
    # A kopf 1.45 bug: a replica pausing for a peer while one of its watch requests awaits
    # headers runs `request_cancel_callback`, which asserts a current task in a
    # done-callback (there is none) and asyncio logs the AssertionError; harmless, the
    # stream is closed right after the headers arrive.
    "Exception in callback stream.<locals>.request_cancel_callback",
)


def lease(name: str, cpus: int, memory: int, renewed: datetime | None = None) -> dict[str, Any]:
    renewed = renewed or datetime.now(UTC)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"corral.dev/node-agent": "true"},
            "annotations": {
                "corral.dev/cpus": str(cpus),
                "corral.dev/memory-mib": str(memory),
                "corral.dev/accelerator": "kvm",
                "corral.dev/version": "0.1.0",
            },
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def example(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "examples" / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def condition(obj: dict[str, Any], type: str) -> dict[str, Any] | None:
    conditions = obj.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == type), None)


def placed(kubectl: Kubectl, name: str) -> dict[str, Any] | None:
    """The sandbox once its status names a node."""
    obj: dict[str, Any] = kubectl.json("get", "sbx", name)
    return obj if obj.get("status", {}).get("nodeName") else None


@pytest.fixture
def cluster(crds: Kubectl) -> Kubectl:
    """The CRDs, the operator's namespace and two nodes: `small` and `big`."""
    crds.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    crds.apply(lease("small", cpus=2, memory=256))
    crds.apply(lease("big", cpus=4, memory=4096))
    return crds


@pytest.fixture
def log() -> Iterator[LogCollector]:
    collect = LogCollector(_KNOWN)
    logger = logging.getLogger()
    logger.addHandler(collect)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield collect
    logger.removeHandler(collect)
    logger.setLevel(level)


@contextmanager
def replica(settings: OperatorSettings, name: str = "operator") -> Iterator[None]:
    """The operator running in a thread called `name` until the block ends."""
    stop, ready = threading.Event(), threading.Event()

    def run() -> None:
        asyncio.run(operate(settings, stop_flag=stop, ready_flag=ready))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    assert ready.wait(15), "the operator did not start"
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the operator did not stop"


@pytest.fixture
def operator(cluster: Kubectl, kubeconfig: Path, log: LogCollector) -> Iterator[None]:
    settings = OperatorSettings(
        namespace=NAMESPACE, recheck_interval=INTERVAL, peering=None, kubeconfig=kubeconfig
    )
    with replica(settings):
        yield


def test_sandboxes_are_placed_or_pending_or_unsupported(
    operator: None, cluster: Kubectl, kubeapi: KubeAPIServer, log: LogCollector
) -> None:
    kubectl = cluster
    kubectl("apply", "-f", str(REPO / "examples" / "sandbox.yaml"))
    hello = until(lambda: placed(kubectl, "hello"))
    assert hello["status"]["nodeName"] == "big"  # 512 MiB does not fit in small's 256
    assert hello["metadata"]["labels"]["corral.dev/node"] == "big"
    assert FINALIZER in hello["metadata"]["finalizers"]
    scheduled = condition(hello, "Scheduled")
    assert scheduled is not None
    assert (scheduled["status"], scheduled["reason"]) == ("True", "Placed")
    assert hello["status"]["phase"] == "Pending"
    header, row = kubectl("get", "sbx", "hello").stdout.splitlines()
    assert header.split()[:4] == ["NAME", "PHASE", "READY", "NODE"]
    assert row[header.index("PHASE") :].split()[0] == "Pending"
    assert row[header.index("NODE") :].split()[0] == "big"

    huge = example("sandbox.yaml")
    huge["metadata"]["name"] = "huge"
    huge["spec"]["resources"]["memoryMiB"] = 8192
    kubectl.apply(huge)
    pending = until(lambda: condition(kubectl.json("get", "sbx", "huge"), "Scheduled"))
    assert (pending["status"], pending["reason"]) == ("False", "Unschedulable")
    assert pending["message"] == "insufficient memory: need 8192 MiB, best node has 3584 MiB free"

    mounted = example("sandbox.yaml")
    mounted["metadata"]["name"] = "mounted"
    mounted["spec"]["volumes"] = [{"name": "workspace", "mountPath": "/work"}]
    kubectl.apply(mounted)
    obj = until(lambda: (o := kubectl.json("get", "sbx", "mounted")).get("status") and o)
    unsupported = condition(obj, "Unsupported")
    assert unsupported is not None
    assert (unsupported["status"], unsupported["reason"]) == ("True", "VolumesUnsupported")
    assert unsupported["message"].startswith("spec.volumes: not supported yet")
    assert condition(obj, "Scheduled")["reason"] == "Unsupported"  # type: ignore[index]
    assert "corral.dev/node" not in obj["metadata"].get("labels", {})

    def reasons() -> set[str]:
        events = kubectl.json("get", "events", "-n", "default")["items"]
        return {e["reason"] for e in events}

    until(lambda: {"Placed", "Unschedulable", "Unsupported"} <= reasons())

    # Settled: re-applying and several re-checks write nothing (no Event either).
    time.sleep(3 * INTERVAL)
    before = copy.copy(kubeapi.log.writes())
    kubectl("apply", "-f", str(REPO / "examples" / "sandbox.yaml"))
    time.sleep(5 * INTERVAL)
    after = kubeapi.log.writes()
    assert after == before
    assert log.problems() == []


def test_a_sandbox_waits_for_a_ready_node_and_is_placed_when_one_registers(
    operator: None, cluster: Kubectl, log: LogCollector
) -> None:
    kubectl = cluster
    stale = datetime.now(UTC) - timedelta(minutes=5)
    kubectl.apply(lease("big", cpus=4, memory=4096, renewed=stale))
    kubectl.apply(lease("small", cpus=2, memory=256, renewed=stale))

    kubectl("apply", "-f", str(REPO / "examples" / "sandbox.yaml"))
    pending = until(lambda: condition(kubectl.json("get", "sbx", "hello"), "Scheduled"))
    assert pending["message"] == (
        "no node is ready: the leases of big, small are past their grace period"
    )
    kubectl.apply(lease("big", cpus=4, memory=4096))
    hello = until(lambda: placed(kubectl, "hello"))
    assert hello["status"]["nodeName"] == "big"
    assert condition(hello, "Scheduled")["reason"] == "Placed"  # type: ignore[index]
    assert log.problems() == []


PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "scope": "Cluster",
        "group": "kopf.dev",
        "names": {
            "kind": "ClusterKopfPeering",
            "plural": "clusterkopfpeerings",
            "singular": "clusterkopfpeering",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_two_replicas_one_active_and_the_standby_takes_over(
    cluster: Kubectl, kubeconfig: Path, log: LogCollector
) -> None:
    kubectl = cluster
    kubectl.apply(PEERING_CRD)
    kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    kubectl.apply(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": "corral-operator"},
        }
    )
    base = OperatorSettings(namespace=NAMESPACE, recheck_interval=INTERVAL, kubeconfig=kubeconfig)

    def said(thread: str, text: str) -> int:
        return sum(r.threadName == thread and text in r.getMessage() for r in log.records)

    # Peering reacts to watch events; a loaded CI machine can take a while. Every replica
    # starts paused and logs only changes, so the standby first runs alone until it has
    # resumed: a replica that already sees a higher priority when it starts stays paused
    # without a word.
    with replica(replace(base, priority=1), "standby"):
        until(lambda: said("standby", "Resuming operations"), timeout=60)
        with replica(replace(base, priority=2), "active"):
            until(lambda: said("standby", "Pausing operations in favour of"), timeout=60)
            kubectl("apply", "-f", str(REPO / "examples" / "sandbox.yaml"))
            assert until(lambda: placed(kubectl, "hello"))["status"]["nodeName"] == "big"
        until(lambda: said("standby", "Resuming operations") >= 2, timeout=60)
        second = example("sandbox.yaml")
        second["metadata"]["name"] = "second"
        kubectl.apply(second)
        assert until(lambda: placed(kubectl, "second"))["status"]["nodeName"] == "big"
    assert log.problems() == []


def test_concurrent_sandboxes_spread_until_full_then_wait(
    operator: None, cluster: Kubectl, kubeapi: KubeAPIServer, log: LogCollector
) -> None:
    kubectl = cluster
    kubectl.apply(lease("small", cpus=4, memory=1024))
    kubectl.apply(lease("big", cpus=4, memory=1024))
    manifests = []
    for name in "abcde":
        manifest = example("sandbox.yaml")
        manifest["metadata"]["name"] = name
        manifests.append(yaml.safe_dump(manifest))
    kubectl("apply", "-f", "-", input="---\n".join(manifests))
    nodes = [until(lambda n=name: placed(kubectl, n))["status"]["nodeName"] for name in "abcd"]
    assert sorted(nodes) == ["big", "big", "small", "small"]
    waiting = until(lambda: condition(kubectl.json("get", "sbx", "e"), "Scheduled"))
    assert waiting["message"] == "insufficient memory: need 512 MiB, best node has 0 MiB free"
    # Besides kubectl's creates: finalizer, label and status for each placed one, finalizer
    # and status for the waiting one.
    until(lambda: kubeapi.log.writes()["events"] >= 5)
    writes = kubeapi.log.writes()
    assert (writes["sandboxes"], writes["sandboxes/status"]) == (5 + 5 + 4, 5)
    assert log.problems() == []


def test_command_line_settings() -> None:
    argv = "--namespace ops --watch-namespace a --watch-namespace b --standalone"
    argv += " --node-grace 15 --recheck-interval 2 --verbose"
    settings, verbose = parse_args(argv.split())
    assert replace(settings, priority=0) == OperatorSettings(
        namespace="ops",
        namespaces=("a", "b"),
        node_grace=timedelta(seconds=15),
        recheck_interval=2.0,
        peering=None,
    )
    assert verbose


def test_replicas_draw_distinct_priorities_unless_given() -> None:
    drawn = {parse_args([])[0].priority for _ in range(20)}
    assert len(drawn) > 1 and min(drawn) >= 1


def test_command_line_defaults_to_peering_cluster_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "corral")
    settings, verbose = parse_args(["--priority", "5"])
    assert settings == OperatorSettings(namespace="corral", priority=5)
    assert settings.peering == "corral-operator" and not settings.namespaces
    assert not verbose


def test_deleting_a_placed_sandbox_waits_for_its_node_agent(
    operator: None, cluster: Kubectl, log: LogCollector
) -> None:
    kubectl = cluster
    kubectl("apply", "-f", str(REPO / "examples" / "sandbox.yaml"))
    hello = until(lambda: placed(kubectl, "hello"))
    assert sorted(hello["metadata"]["finalizers"]) == sorted([FINALIZER, NODE_AGENT_FINALIZER])
    kubectl("delete", "sbx", "hello", "--wait=false")

    def only_the_node_agent_holds_it() -> bool:
        meta = kubectl.json("get", "sbx", "hello")["metadata"]
        return "deletionTimestamp" in meta and meta["finalizers"] == [NODE_AGENT_FINALIZER]

    until(only_the_node_agent_holds_it)
    # What the node agent does once the VM is gone: the operator let go already.
    kubectl("patch", "sbx", "hello", "--type=merge", "-p", '{"metadata":{"finalizers":[]}}')
    until(lambda: kubectl("get", "sbx", "-o", "name").stdout == "")
    assert log.problems() == []
