"""Fixtures for tests that boot real microVMs (TCG here, KVM where the host offers it).

Each test session gets its own short CORRAL_HOME (unix socket paths are limited to 107
bytes) whose `assets` link to the ones `make setup` built; without them the tests fail
under CI and skip elsewhere with the command to run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import dependencies
import pytest

from corral import Sandbox, remove
from corral.testing.home import isolated_home

pytestmark = pytest.mark.vm


@pytest.fixture(scope="session")
def corral_home() -> Iterator[Path]:
    try:
        with isolated_home() as home:
            yield home
    except FileNotFoundError as exc:
        dependencies.missing(str(exc))


@pytest.fixture(scope="module")
def shared_sandbox(corral_home: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """One detached sandbox per test module; tests attach with `Sandbox.get(name)`."""
    name = "t-" + request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")[:40]

    async def create() -> None:
        sandbox = await Sandbox.builder(name).memory(256).create_detached()
        await sandbox.close()

    asyncio.run(create())
    yield name
    remove(name, force=True)


@pytest.fixture
async def sb(shared_sandbox: str) -> AsyncIterator[Sandbox]:
    """A handle on the module's shared sandbox, for this test's event loop."""
    sandbox = await Sandbox.get(shared_sandbox)
    yield sandbox
    await sandbox.close()
