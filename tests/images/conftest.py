"""Registry fixtures for the image tests: one plain-HTTP and one TLS + basic-auth
registry on loopback per session (see registry.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from images.registry import RegistryServer, run_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Plain HTTP, anonymous; the client is told it is insecure."""
    with run_registry(tmp_path_factory.mktemp("registry") / "plain", tls=False) as server:
        yield server


@pytest.fixture(scope="session")
def secure_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """TLS with a test CA, htpasswd basic auth."""
    with run_registry(tmp_path_factory.mktemp("registry") / "tls", tls=True) as server:
        yield server
