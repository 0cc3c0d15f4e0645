"""A Sandbox's life in the cluster, driven with real kubectl: placed, booted on its node,
Ready, shown in printer columns, unchanged by a re-apply, re-adopted by a restarted
node agent, marked lost with its node, run to completion by its restart policy, and
deleted with its VM."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from conftest import condition

from corral.api import NODE_AGENT_FINALIZER, NODE_LABEL
from corral.node_agent.daemon.runtime import local_name
from corral.testing.cluster import Cluster, sandbox_manifest, until

pytestmark = pytest.mark.vm


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    return sandbox_manifest(name, **{"resources": {"cpus": 1, "memoryMiB": 128}, **spec})


def test_apply_boots_on_one_node_and_delete_removes_the_vm(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    kubectl.apply(manifest("first"))
    obj = cluster.wait_ready("first")
    node = obj["status"]["nodeName"]
    uid = obj["metadata"]["uid"]
    assert obj["metadata"]["labels"][NODE_LABEL] == node
    assert NODE_AGENT_FINALIZER in obj["metadata"]["finalizers"]
    assert obj["status"]["phase"] == "Running"
    assert obj["status"]["accelerator"] in ("kvm", "tcg")
    boot = obj["status"]["bootID"]
    assert boot and obj["status"]["startedAt"]
    for type_ in ("Scheduled", "ImageReady", "Booted", "Ready"):
        assert condition(obj, type_)["status"] == "True", type_
    assert cluster.local_vms(node) == {local_name(uid): "running"}
    other = "n2" if node == "n1" else "n1"
    assert local_name(uid) not in cluster.local_vms(other)
    reasons = [e["reason"] for e in cluster.events("first")]
    assert "Placed" in reasons and "Booted" in reasons

    table = kubectl("get", "sbx", "first", "-o", "wide").stdout.splitlines()
    assert table[0].split() == [
        "NAME", "PHASE", "READY", "NODE", "IMAGE", "AGE", "IP", "BOOT", "ID",
    ]  # fmt: skip
    assert table[1].split()[:5] == ["first", "Running", "True", node, "default"]
    assert boot in table[1]

    before = cluster.server.log.writes()
    kubectl.apply(manifest("first"))
    time.sleep(3)  # several operator ticks and node-agent polls
    after = cluster.server.log.writes()
    changed = {kind for kind in after if after[kind] != before.get(kind)}
    assert changed <= {"leases"}, changed  # only the nodes' heartbeats
    assert cluster.sandbox("first")["status"]["bootID"] == boot

    kubectl("delete", "sbx", "first", "--timeout=60s")
    assert kubectl("get", "sbx", "-o", "name").stdout == ""
    assert local_name(uid) not in cluster.local_vms(node)


def test_restarted_node_agent_readopts_its_vm_and_collects_garbage(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    on_n1 = {"kubernetes.io/hostname": "n1"}
    kubectl.apply(manifest("keep", nodeSelector=on_n1))
    kubectl.apply(manifest("orphan", nodeSelector=on_n1))
    keep, orphan = cluster.wait_ready("keep"), cluster.wait_ready("orphan")
    assert keep["status"]["nodeName"] == orphan["status"]["nodeName"] == "n1"
    agent = cluster.agents["n1"]
    agent.kill()
    # Deleted for good while its node agent is down (someone removed the finalizer).
    kubectl("patch", "sbx", "orphan", "--type=merge", "-p", '{"metadata":{"finalizers":[]}}')
    kubectl("delete", "sbx", "orphan", "--timeout=30s")
    assert cluster.local_vms("n1")[local_name(orphan["metadata"]["uid"])] == "running"
    agent.start()
    until(lambda: local_name(orphan["metadata"]["uid"]) not in cluster.local_vms("n1"))
    again = cluster.sandbox("keep")
    assert again["status"]["bootID"] == keep["status"]["bootID"]
    assert again["status"]["phase"] == "Running"
    assert cluster.local_vms("n1") == {local_name(keep["metadata"]["uid"]): "running"}
    kubectl("delete", "sbx", "keep", "--timeout=60s")


def test_a_node_that_stops_renewing_is_lost_then_recovers(cluster: Cluster) -> None:
    cluster.kubectl.apply(manifest("lost"))
    obj = cluster.wait_ready("lost")
    agent = cluster.agents[obj["status"]["nodeName"]]
    agent.signal(signal.SIGSTOP)
    try:
        lost = until(lambda: _phase(cluster, "lost", "Unknown"), what="NodeLost")
        ready = condition(lost, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "NodeLost")
        warnings = [e for e in cluster.events("lost") if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["NodeLost"]
    finally:
        agent.signal(signal.SIGCONT)
    back = until(lambda: _phase(cluster, "lost", "Running"), what="the node back")
    assert back["status"]["bootID"] == obj["status"]["bootID"]
    assert condition(back, "Ready")["status"] == "True"
    cluster.kubectl("delete", "sbx", "lost", "--timeout=60s")


def test_a_run_to_completion_succeeds_or_fails_and_its_vm_is_removed(cluster: Cluster) -> None:
    cluster.kubectl.apply(manifest("ok", command=["/bin/sh", "-c", "exit 0"]))
    cluster.kubectl.apply(manifest("bad", command=["/bin/sh", "-c", "exit 3"]))
    ok = until(lambda: _phase(cluster, "ok", "Succeeded"), what="Succeeded")
    bad = until(lambda: _phase(cluster, "bad", "Failed"), what="Failed")
    assert condition(ok, "Ready")["reason"] == "Completed"
    ready = condition(bad, "Ready")
    assert (ready["reason"], ready["message"]) == (
        "MainProcessFailed",
        "the main process exited 3",
    )
    for obj in (ok, bad):
        until(lambda o=obj: _vm_gone(cluster, o), what="VM gone")
    cluster.kubectl("delete", "sbx", "ok", "bad", "--timeout=60s")


def test_restart_policy_always_boots_again(cluster: Cluster) -> None:
    cluster.kubectl.apply(
        manifest("again", command=["/bin/sh", "-c", "sleep 1"], restartPolicy="Always")
    )
    first = cluster.wait_ready("again")["status"]["bootID"]
    restarted = until(
        lambda: (o := cluster.sandbox("again"))["status"].get("bootID") not in (None, first) and o,
        what="a new boot",
    )
    assert restarted["status"]["phase"] == "Running"
    assert "Restarting" in [e["reason"] for e in cluster.events("again")]
    cluster.kubectl("delete", "sbx", "again", "--timeout=60s")


def test_max_duration_stops_the_sandbox(cluster: Cluster) -> None:
    cluster.kubectl.apply(manifest("brief", maxDuration="8s"))
    failed = until(lambda: _phase(cluster, "brief", "Failed"), timeout=90, what="deadline")
    assert condition(failed, "Ready")["reason"] == "DeadlineExceeded"
    cluster.kubectl("delete", "sbx", "brief", "--timeout=60s")


def test_a_full_node_sends_the_next_sandbox_elsewhere_then_pending(cluster: Cluster) -> None:
    big = {"cpus": 1, "memoryMiB": 1536}  # each node offers 2048 MiB
    for name in ("fill-a", "fill-b", "fill-c"):
        cluster.kubectl.apply(manifest(name, resources=big))
    a = until(lambda: _placed(cluster, "fill-a"))
    b = until(lambda: _placed(cluster, "fill-b"))
    assert {a["status"]["nodeName"], b["status"]["nodeName"]} == {"n1", "n2"}
    pending = until(
        lambda: (o := cluster.sandbox("fill-c")).get("status", {}).get("conditions") and o
    )
    scheduled = condition(pending, "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert "memory" in scheduled["message"]
    assert pending["status"]["phase"] == "Pending"
    cluster.kubectl("delete", "sbx", "fill-a", "fill-b", "fill-c", "--timeout=60s")


def test_invalid_and_immutable_changes_are_refused(cluster: Cluster) -> None:
    refused = cluster.kubectl.apply(manifest("bad-spec", resources={"memoryMiB": 1}), check=False)
    assert refused.returncode != 0
    assert "spec.resources.memoryMiB" in refused.stderr
    for path in ("/", "./etc", "bind:/"):  # the node's own files: never a tenant's root
        host = cluster.kubectl.apply(manifest("host-path", image=path), check=False)
        assert host.returncode != 0 and "spec.image" in host.stderr, path
    cluster.kubectl.apply(manifest("fixed"))
    cluster.wait_ready("fixed")
    changed = cluster.kubectl.apply(manifest("fixed", image="other"), check=False)
    assert changed.returncode != 0
    assert "immutable" in changed.stderr
    cluster.kubectl("delete", "sbx", "fixed", "--timeout=60s")


def _phase(cluster: Cluster, name: str, phase: str) -> dict[str, Any] | None:
    obj = cluster.sandbox(name)
    return obj if obj.get("status", {}).get("phase") == phase else None


def _vm_gone(cluster: Cluster, obj: dict[str, Any]) -> bool:
    return local_name(obj["metadata"]["uid"]) not in cluster.local_vms(obj["status"]["nodeName"])


def _placed(cluster: Cluster, name: str) -> dict[str, Any] | None:
    obj = cluster.sandbox(name)
    return obj if obj.get("status", {}).get("nodeName") else None
