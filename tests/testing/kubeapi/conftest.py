"""Fixtures: a test server per test, its kubeconfig, both Python clients, and real kubectl.

    def test_x(kubeapi, kubeconfig, kubectl, k8s, widgets): ...
    async def test_y(ak8s): ...

`kubeapi_settings` can be overridden by a test module to change the server's
`Settings` (history size, bookmark interval, tokens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import kubernetes
import kubernetes_asyncio
import pytest

from corral.testing.kubeapi import KubeAPIServer, Settings, write_kubeconfig
from corral.testing.kubectl import Kubectl

from .manifests import widget_crd


@pytest.fixture
def kubeapi_settings() -> Settings:
    return Settings()


@pytest.fixture
def kubeapi(kubeapi_settings: Settings) -> Iterator[KubeAPIServer]:
    """A running server (in its own thread) for one test."""
    with KubeAPIServer(kubeapi_settings) as server:
        yield server


@pytest.fixture
def kubeconfig(kubeapi: KubeAPIServer, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", kubeapi.url)


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kubeconfig, home)


@pytest.fixture
def k8s(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    """A synchronous `kubernetes` client."""
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


@pytest.fixture
async def ak8s(kubeconfig: Path) -> AsyncIterator[kubernetes_asyncio.client.ApiClient]:
    """A `kubernetes_asyncio` client."""
    client = await kubernetes_asyncio.config.new_client_from_config(config_file=str(kubeconfig))
    async with client:
        yield client


@pytest.fixture
def widgets(k8s: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    """The Widget CRD installed; returns a CustomObjectsApi."""
    kubernetes.client.ApiextensionsV1Api(k8s).create_custom_resource_definition(widget_crd())
    return kubernetes.client.CustomObjectsApi(k8s)
