"""A private CORRAL_HOME for a test session, a benchmark run or a test's node agent.

Sandboxes, disks and state go to a fresh short directory (unix socket paths are
limited to 107 bytes); the boot assets are the ones `make setup` built, linked in.
Every sandbox left at the end is removed, then the directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral._paths import Paths
from corral._sandbox import Sandbox, remove


@contextmanager
def private_home() -> Iterator[Path]:
    """A home for another process (pass it as CORRAL_HOME); this process's is unchanged.

    Raises FileNotFoundError (naming the set-up command) when there are no assets.
    """
    assets = Paths.from_env().assets
    if not (assets / "current.json").exists():
        raise FileNotFoundError(f"no boot assets in {assets}: run `make setup`")
    home = Path(tempfile.mkdtemp(prefix="corral-", dir="/tmp"))
    (home / "assets").symlink_to(assets.resolve())
    try:
        yield home
    finally:
        with _home(home):
            for record in Sandbox.list():
                remove(record.name, force=True)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def isolated_home() -> Iterator[Path]:
    """A private home that this process uses (CORRAL_HOME) until the block ends."""
    with private_home() as home, _home(home):
        yield home


@contextmanager
def _home(home: Path) -> Iterator[None]:
    previous = os.environ.get("CORRAL_HOME")
    os.environ["CORRAL_HOME"] = str(home)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["CORRAL_HOME"]
        else:
            os.environ["CORRAL_HOME"] = previous
