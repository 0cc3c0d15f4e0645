"""The test server's fixtures (shared from tests/api, which shares tests/testing/kubeapi's)
and `deployed`: manifests/ applied the way the README says."""

from __future__ import annotations

from pathlib import Path

import pytest
from api.conftest import k8s, kubeapi, kubeapi_settings, kubeconfig, kubectl
from testing.kubeapi.conftest import Kubectl

__all__ = ["deployed", "k8s", "kubeapi", "kubeapi_settings", "kubeconfig", "kubectl"]

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


@pytest.fixture
def deployed(kubectl: Kubectl) -> str:
    """The README's steps (CRDs, wait until established, everything); kubectl's output of
    the last one."""
    kubectl("apply", "-k", str(MANIFESTS / "crds"))
    rendered = kubectl("kustomize", str(MANIFESTS / "crds")).stdout
    kubectl("wait", "--for=condition=Established", "-f", "-", input=rendered)
    return kubectl("apply", "-k", str(MANIFESTS)).stdout
