"""A whole Corral cluster on this machine, for end-to-end tests and benchmarks.

The Kubernetes-API test server (in a thread) with the CRDs, the operator and node agents
as real processes (each agent with its own CORRAL_HOME, so they are separate nodes), and
real kubectl. VMs are real too; each node's are removed with its home at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral._state import StateStore
from corral.api import GROUP, SYSTEM_NAMESPACE, VERSION
from corral.api.crd import crds
from corral.testing import polling
from corral.testing.home import private_home
from corral.testing.kubeapi import KubeAPIServer, Settings, User, write_kubeconfig
from corral.testing.kubectl import Kubectl

BIN = Path(sys.executable).parent
VIEWER_TOKEN = "corral-test-viewer"
"""A user the server knows (and grants nothing by itself): tests give it roles."""
NODE_GRACE = 4.0
"""Seconds the operator lets a node go unrenewed before its sandboxes are lost."""


def sandbox_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A Sandbox in namespace `default` of the default image, with `spec` laid over it."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Sandbox",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"image": "default", **spec},
    }


def until(predicate: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """`polling.until` with a default long enough for VMs to boot under TCG."""
    return polling.until(predicate, timeout, what)


@dataclass
class NodeAgent:
    """One `corral-node-agent` process and its private home; restartable."""

    node: str
    kubeconfig: Path
    home: Path
    log: Path
    cpus: int = 2
    memory_mib: int = 2048
    process: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    """More `corral-node-agent` arguments, after the harness's own."""

    def start(self) -> None:
        command = [
            str(BIN / "corral-node-agent"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--node-name",
            self.node,
            "--host",
            "127.0.0.1",
            "--advertise-host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--cpus",
            str(self.cpus),
            "--memory-mib",
            str(self.memory_mib),
            "--renew-interval",
            "1",
            *self.extra_args,
        ]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "CORRAL_HOME": str(self.home)},
                start_new_session=True,
            )
        self.metrics_port = int(until(lambda: self._registered(offset), what=f"{self.node} up"))

    def _registered(self, offset: int) -> str | None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"node agent {self.node} exited:\n{self.log.read_text()}")
        text = self.log.read_bytes()[offset:].decode(errors="replace")
        found = re.search(r"registered: .*metrics on port (\d+)", text)
        return found.group(1) if found else None

    def kill(self) -> None:
        """kill -9: the agent dies, its VMs (detached supervisors) live on."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@dataclass
class Cluster:
    server: KubeAPIServer
    kubeconfig: Path
    kubectl: Kubectl
    operator_log: Path
    agents: dict[str, NodeAgent] = field(default_factory=dict)

    def sandbox(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """The Sandbox as JSON."""
        obj: dict[str, Any] = self.kubectl.json("get", "sbx", name, "-n", namespace)
        return obj

    def wait_ready(self, name: str, timeout: float = 120) -> dict[str, Any]:
        self.kubectl(
            "wait",
            "--for=condition=Ready",
            f"sbx/{name}",
            f"--timeout={timeout:g}s",
            timeout=timeout + 10,
        )
        return self.sandbox(name)

    def events(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.kubectl.json("get", "events", "-n", "default")["items"]
        return [e for e in items if e["involvedObject"]["name"] == name]

    def local_vms(self, node: str) -> dict[str, str]:
        """The VMs on `node` as its own state store records them: name → status."""
        store = StateStore(self.agents[node].home / "state.db")
        return {r.name: r.effective_status[0] for r in store.list()}


@contextlib.contextmanager
def run_cluster(directory: Path, nodes: int = 2, **agent: Any) -> Iterator[Cluster]:
    """The server with the CRDs and the system namespace, the operator, and `nodes` node
    agents (`n1`, `n2`, …; `agent` sets their NodeAgent fields). Logs go to `directory`.

    Raises FileNotFoundError (naming the set-up command) when there are no boot assets.
    """
    with contextlib.ExitStack() as stack:
        homes = [stack.enter_context(private_home()) for _ in range(nodes)]
        settings = Settings()
        settings.tokens[VIEWER_TOKEN] = User("viewer", ("system:authenticated",))
        server = stack.enter_context(KubeAPIServer(settings))
        kubeconfig = write_kubeconfig(directory / "kubeconfig", server.url)
        (directory / "home").mkdir()
        kubectl = Kubectl(kubeconfig, directory / "home")
        for definition in crds():
            kubectl.apply(definition)
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=10s")
        kubectl.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}
        )
        cluster = Cluster(server, kubeconfig, kubectl, directory / "operator.log")
        stack.enter_context(_operator(kubeconfig, cluster.operator_log))
        for index, home in enumerate(homes, 1):
            node = f"n{index}"
            member = NodeAgent(node, kubeconfig, home, directory / f"{node}.log", **agent)
            stack.callback(member.stop)
            member.start()
            cluster.agents[node] = member
        yield cluster
        for name in _names(kubectl):
            kubectl("delete", "sbx", name, "--wait=false", check=False)


def _names(kubectl: Kubectl) -> list[str]:
    output = kubectl("get", "sbx", "-o", "name", check=False).stdout
    return [line.split("/", 1)[1] for line in output.split()]


@contextlib.contextmanager
def _operator(kubeconfig: Path, log: Path) -> Iterator[None]:
    command = [
        str(BIN / "corral-operator"),
        "--kubeconfig",
        str(kubeconfig),
        "--standalone",
        "--namespace",
        SYSTEM_NAMESPACE,
        "--node-grace",
        str(NODE_GRACE),
        "--recheck-interval",
        "1",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
