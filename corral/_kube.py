"""The Kubernetes client configuration the operator and the node agent start from.

A kubeconfig file when one is given (tests, running outside the cluster), otherwise the
pod's service account — the same choice for both components, so they authenticate alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

MERGE_PATCH: dict[str, Any] = {"_content_type": "application/merge-patch+json"}
"""Keyword arguments that make a kubernetes_asyncio patch a JSON merge patch: without
`_content_type` it sends a dict as a JSON Patch (its stubs omit the keyword, hence a dict)."""


async def client_configuration(kubeconfig: Path | None) -> k8s.Configuration:
    """The configuration from `kubeconfig`, or the in-cluster service account when None."""
    configuration = k8s.Configuration()
    if kubeconfig is not None:
        await k8s_config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration
