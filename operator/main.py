"""`corral-operator`: runs the kopf operator that places Sandboxes on nodes.

`operate()` builds the API client from a kubeconfig (or the in-cluster service account),
hands kopf the same credentials, registers the handlers and runs kopf with Corral's own
finalizer and annotation prefix, so it never collides with another kopf operator.
Replicas coordinate through kopf peering: the highest-priority live one is active.
`main()` is the console script; tests call `operate()` in a thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s

from corral._kube import client_configuration
from corral.operator.sandboxes import SandboxHandler
from corral.operator.settings import OperatorSettings

FINALIZER = "corral.dev/operator"
"""The operator's finalizer on every Sandbox it handles."""
PREFIX = "corral.dev"
INSTANT_EXIT = 5.0
"""Seconds a stopping replica waits for a timer that is mid-reconciliation."""
"""Prefix of kopf's progress and diff-base annotations."""


async def operate(
    settings: OperatorSettings,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run the operator until `stop_flag` is set (or forever)."""
    configuration = await client_configuration(settings.kubeconfig)
    async with k8s.ApiClient(configuration) as api:
        registry = _registry(configuration)
        SandboxHandler(settings, api).register(registry)
        await kopf.operator(
            registry=registry,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=settings.peering is None,
            peering_name=settings.peering,
            priority=settings.priority,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )


def _registry(configuration: Any) -> kopf.OperatorRegistry:
    """A registry with kopf's settings and a login from the client's configuration."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        # A stopping or pausing replica lets a reconciliation in flight finish its API
        # calls (they are short) rather than orphan it mid-write.
        settings.background.instant_exit_timeout = INSTANT_EXIT
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PREFIX, key="last-handled-configuration"
        )

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        authorization = configuration.api_key.get("BearerToken", "")
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            token=authorization.removeprefix("Bearer ") or None,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
        )

    return registry


def parse_args(argv: list[str] | None = None) -> tuple[OperatorSettings, bool]:
    """The settings (and whether to log verbosely) from the command line."""
    parser = argparse.ArgumentParser(prog="corral-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", OperatorSettings.namespace),
        help="the operator's namespace, where node agents keep their Leases",
    )
    parser.add_argument(
        "--watch-namespace",
        action="append",
        default=[],
        help="handle Sandboxes only in this namespace (repeatable); all by default",
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: the in-cluster account")
    parser.add_argument(
        "--peering",
        default=OperatorSettings.peering,
        help="KopfPeering name the replicas coordinate through",
    )
    parser.add_argument("--standalone", action="store_true", help="no peering: the only replica")
    parser.add_argument(
        "--priority",
        type=int,
        help="peering priority; by default each replica draws its own, since kopf pauses "
        "every replica when two share one",
    )
    parser.add_argument(
        "--node-grace",
        type=float,
        default=OperatorSettings.node_grace.total_seconds(),
        help="seconds a node may miss renewing its Lease before it is not ready",
    )
    parser.add_argument(
        "--recheck-interval",
        type=float,
        default=OperatorSettings.recheck_interval,
        help="seconds between reconciliations of each Sandbox",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    settings = OperatorSettings(
        namespace=args.namespace,
        namespaces=tuple(args.watch_namespace),
        node_grace=timedelta(seconds=args.node_grace),
        recheck_interval=args.recheck_interval,
        peering=None if args.standalone else args.peering,
        priority=args.priority if args.priority is not None else secrets.randbelow(10**6) + 1,
        kubeconfig=args.kubeconfig,
    )
    return settings, args.verbose


def main(argv: list[str] | None = None) -> None:
    """The `corral-operator` console script."""
    settings, verbose = parse_args(argv)
    kopf.configure(verbose=verbose)
    asyncio.run(operate(settings))
