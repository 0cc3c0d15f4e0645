"""`corral-node-agent`: runs the Sandboxes placed on this node.

Wiring only: the kube client, the runtime in $CORRAL_HOME, the reconciler, the HTTPS API
(with its self-signed certificate, published in the Lease), the metrics endpoint and the
Lease heartbeat. SIGTERM stops the agent, never the VMs: they are detached, and the next
run re-adopts them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from kubernetes_asyncio import client as k8s

from corral._errors import BootError
from corral._kube import client_configuration
from corral._paths import Paths
from corral.api import SYSTEM_NAMESPACE
from corral.node_agent import cgroups
from corral.node_agent.accel import choose, probe_host
from corral.node_agent.assets import Assets, host_tsc_khz
from corral.node_agent.daemon.certs import server_context, serving_certificate
from corral.node_agent.daemon.metrics import sandbox_registry, start_metrics
from corral.node_agent.daemon.reconciler import Reconciler
from corral.node_agent.daemon.registration import Heartbeat, Registration
from corral.node_agent.daemon.runtime import LocalRuntime
from corral.node_agent.daemon.server import AgentServer
from corral.node_agent.prepare import TSC_ENV

logger = logging.getLogger("corral.node_agent")


@dataclass(frozen=True)
class AgentSettings:
    """How one node agent runs."""

    node: str
    namespace: str = SYSTEM_NAMESPACE
    kubeconfig: Path | None = None
    host: str = "0.0.0.0"
    port: int = 7443
    advertise_host: str = "127.0.0.1"
    metrics_port: int = 9464
    cpus: int = 0
    """vCPUs offered to sandboxes; 0 = this host's CPUs."""
    memory_mib: int = 0
    """Memory offered to sandboxes; 0 = this host's memory less a reserve."""
    labels: dict[str, str] = field(default_factory=dict)
    renew_interval: float = 10.0
    lease_seconds: int = 40
    poll_interval: float = 1.0
    cgroup_root: Path | None = None
    """The cgroup v2 directory each VM gets a cgroup under; None = the agent's own."""


def host_memory_mib(reserve_mib: int = 1024) -> int:
    """MemTotal less what the host itself needs."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(int(line.split()[1]) // 1024 - reserve_mib, 0)
    return 0


async def run_agent(settings: AgentSettings) -> None:
    """Run the node agent until cancelled."""
    configuration = await client_configuration(settings.kubeconfig)
    # What the runtime's launches read (node_agent/prepare.py): the measured TSC wins over
    # the one recorded in the assets, which an image carries from its build machine.
    if settings.cgroup_root is not None:
        os.environ[cgroups.ROOT_ENV] = str(settings.cgroup_root)
    if tsc_khz := host_tsc_khz():
        os.environ.setdefault(TSC_ENV, str(tsc_khz))
    logger.info(
        "guest TSC %s kHz; VM cgroups under %s", os.environ.get(TSC_ENV), settings.cgroup_root
    )
    paths = Paths.from_env()
    async with k8s.ApiClient(configuration) as api:
        reconciler = Reconciler(
            api, LocalRuntime(paths), settings.node, poll_interval=settings.poll_interval
        )
        cert, key = serving_certificate(paths.home / "agent-tls", [settings.advertise_host])
        server = AgentServer(reconciler, api, settings.node)
        port = await server.start(settings.host, settings.port, server_context(cert, key))
        metrics, metrics_port = await start_metrics(
            sandbox_registry(reconciler, settings.node), settings.host, settings.metrics_port
        )
        registration = Registration(
            node=settings.node,
            cpus=settings.cpus or os.cpu_count() or 1,
            memory_mib=settings.memory_mib or host_memory_mib(),
            # The choice every launch here makes: the same probe and the same kernel.
            accelerator=choose("auto", probe_host(), Assets.load(paths.assets).kernel_pvm).accel,
            version=version("corral"),
            endpoint=f"https://{_url_host(settings.advertise_host)}:{port}",
            ca_pem=cert.read_text(),
            labels=settings.labels,
            lease_seconds=settings.lease_seconds,
        )
        heartbeat = Heartbeat(api, settings.namespace, registration)
        try:
            work = asyncio.ensure_future(reconciler.run())
            await asyncio.wait_for(reconciler.synced.wait(), 60)
            await heartbeat.register()
            logger.info(
                "node %s registered: %s, API on port %d, metrics on port %d",
                settings.node,
                registration.accelerator,
                port,
                metrics_port,
            )
            await asyncio.gather(work, heartbeat.run(settings.renew_interval))
        finally:
            await server.stop()
            await metrics.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_args(argv: list[str] | None = None) -> tuple[AgentSettings, bool]:
    """The settings (and whether to log verbosely) from the command line."""
    parser = argparse.ArgumentParser(prog="corral-node-agent", description=__doc__)
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME", socket.gethostname()))
    parser.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", SYSTEM_NAMESPACE))
    parser.add_argument("--kubeconfig", type=Path, help="default: the in-cluster account")
    parser.add_argument("--host", default=AgentSettings.host, help="address the API binds")
    parser.add_argument("--port", type=int, default=AgentSettings.port, help="0 = any free port")
    parser.add_argument(
        "--advertise-host",
        default=os.environ.get("NODE_IP", AgentSettings.advertise_host),
        help="address clients reach the API at; in its certificate and the node's Lease",
    )
    parser.add_argument("--metrics-port", type=int, default=AgentSettings.metrics_port)
    parser.add_argument("--cpus", type=int, default=0, help="vCPUs offered; default all")
    parser.add_argument("--memory-mib", type=int, default=0, help="MiB offered; default most")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a node label a Sandbox's nodeSelector can match (repeatable)",
    )
    parser.add_argument("--renew-interval", type=float, default=AgentSettings.renew_interval)
    parser.add_argument(
        "--cgroup-root",
        type=Path,
        default=os.environ.get(cgroups.ROOT_ENV) or None,
        help="a cgroup v2 directory outside the agent's container; each VM gets a cgroup "
        f"under it, so a container restart leaves it running (default: ${cgroups.ROOT_ENV})",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    if args.cgroup_root is not None:
        try:
            cgroups.check_root(args.cgroup_root)
        except BootError as exc:
            parser.error(f"--cgroup-root: {exc}")
    settings = AgentSettings(
        node=args.node_name,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        host=args.host,
        port=args.port,
        advertise_host=args.advertise_host,
        metrics_port=args.metrics_port,
        cpus=args.cpus,
        memory_mib=args.memory_mib,
        labels=labels,
        renew_interval=args.renew_interval,
        cgroup_root=args.cgroup_root,
    )
    return settings, args.verbose


def main(argv: list[str] | None = None) -> None:
    """The `corral-node-agent` console script."""
    settings, verbose = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def run() -> None:
        task = asyncio.ensure_future(run_agent(settings))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            logger.info("stopped; the VMs keep running")

    asyncio.run(run())
