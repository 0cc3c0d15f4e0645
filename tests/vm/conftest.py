"""Fixtures for tests that boot real microVMs (TCG here, KVM where the host offers it).

Each test session gets its own short CORRAL_HOME (unix socket paths are limited to 107
bytes) whose `assets` link to the ones `make setup` built; without them the tests fail
under CI and skip elsewhere with the command to run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import Sandbox, remove
from corral._paths import Paths

pytestmark = pytest.mark.vm


@pytest.fixture(scope="session")
def corral_home() -> Iterator[Path]:
    assets = Paths.from_env().assets
    if not (assets / "current.json").exists():
        pytest.skip(f"no boot assets in {assets}: run `make setup`")
    home = Path(tempfile.mkdtemp(prefix="corral-t", dir="/tmp"))
    (home / "assets").symlink_to(assets)
    previous = os.environ.get("CORRAL_HOME")
    os.environ["CORRAL_HOME"] = str(home)
    try:
        yield home
    finally:
        for record in Sandbox.list():
            remove(record.name, force=True)
        if previous is None:
            del os.environ["CORRAL_HOME"]
        else:
            os.environ["CORRAL_HOME"] = previous
        shutil.rmtree(home, ignore_errors=True)


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
