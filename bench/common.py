"""What every benchmark shares: a private CORRAL_HOME, timing, percentiles, output."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from corral import Sandbox, remove
from corral._paths import Paths


@contextmanager
def bench_home() -> Iterator[Path]:
    """A fresh CORRAL_HOME whose assets are the ones `make setup` built."""
    assets = Paths.from_env().assets
    if not (assets / "current.json").exists():
        raise SystemExit(f"no boot assets in {assets}: run `make setup` first")
    home = Path(tempfile.mkdtemp(prefix="corral-b", dir="/tmp"))
    (home / "assets").symlink_to(assets)
    previous = os.environ.get("CORRAL_HOME")
    os.environ["CORRAL_HOME"] = str(home)
    try:
        yield home
    finally:
        for record in Sandbox.list():
            remove(record.name, force=True)
        if previous is None:
            os.environ.pop("CORRAL_HOME", None)
        else:
            os.environ["CORRAL_HOME"] = previous
        shutil.rmtree(home, ignore_errors=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(benchmark: str, **figures: object) -> None:
    print(json.dumps({"benchmark": benchmark, **figures}), flush=True)
