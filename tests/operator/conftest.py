"""The test server's fixtures (`kubeapi`, `kubeconfig`, `kubectl`), shared from
tests/testing/kubeapi, plus the Corral CRDs installed through real kubectl."""

from __future__ import annotations

from pathlib import Path

import pytest
from testing.kubeapi import conftest as server
from testing.kubeapi.conftest import Kubectl

kubeapi_settings = server.kubeapi_settings
kubeapi = server.kubeapi
kubeconfig = server.kubeconfig
kubectl = server.kubectl

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def crds(kubectl: Kubectl) -> Kubectl:
    """kubectl against a server with the committed CRDs applied and established."""
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=10s")
    return kubectl
