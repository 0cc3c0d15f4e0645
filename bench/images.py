"""Images, with the Debian 12 minbase + python3 image on a loopback registry:

- pull + unpack into a tree, against `skopeo copy docker://… oci:…` + `umoci unpack` of
  the same image in the same run (each from an empty store). Target ≤ 1.0 times.
- root ready for a second sandbox of an already-pulled image: what a launch does before
  QEMU starts (resolve the image, find its root disk, copy the upper). Target ≤ 50 ms.
- cold `corral run <debian> -- /bin/true` against `corral run default -- /bin/true`.

The registry runner and the Debian image builder are the image tests' own helpers
(tests/images), so the benchmark measures exactly what the tests check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import bench_home, emit, median
from corral._paths import Paths
from corral.node_agent import rootfs
from corral.node_agent.assets import Assets
from corral.node_agent.images import settings
from corral.node_agent.images.pull import PullPolicy, pull
from corral.node_agent.images.store import ImageStore
from corral.node_agent.images.unpack import UnpackLimits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from images.debian import TAG, debian_layout
from images.registry import run_registry

RUNS = 3
READY_RUNS = 10
CORRAL = Path(sys.executable).parent / "corral"


async def corral_pull_unpack(reference: str, home: Path, scratch: Path) -> tuple[float, int]:
    """Seconds to pull into an empty store and unpack; the image's compressed size."""
    started = time.perf_counter()
    store = ImageStore(scratch / "images")
    image = await pull(reference, store, settings.load(home), PullPolicy.ALWAYS)
    tree = scratch / "tree"
    tree.mkdir()
    store.unpack(image, tree, UnpackLimits())
    return time.perf_counter() - started, sum(layer.size for layer in image.layers)


def skopeo_umoci(reference: str, scratch: Path) -> float:
    started = time.perf_counter()
    layout = f"{scratch / 'oci'}:{TAG}"
    copy = ["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false"]
    subprocess.run([*copy, f"docker://{reference}", f"oci:{layout}"], check=True)
    subprocess.run(["umoci", "unpack", "--image", layout, str(scratch / "bundle")], check=True)
    return time.perf_counter() - started


def root_ready(reference: str, paths: Paths, scratch: Path, index: int) -> float:
    """The launch's steps before QEMU, for an image whose root disk already exists."""
    default = Assets.load(paths.assets).default_image
    started = time.perf_counter()
    source = rootfs.resolve(reference, default, paths.images, "IfMissing")
    rootfs.base_disk(source, paths.images)
    rootfs.upper_disk(scratch / f"upper-{index}.ext4", 2048, paths.images)
    return time.perf_counter() - started


def cli_run_true(image: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(CORRAL), "run", image, "--", "/bin/true"], check=True)
    return time.perf_counter() - started


async def main() -> None:
    layout = debian_layout()
    with bench_home() as home, tempfile.TemporaryDirectory(dir="/tmp") as work:
        scratch = Path(work)
        with run_registry(scratch / "registry", tls=False) as server:
            (home / "registries.json").write_text(json.dumps({server.host: {"insecure": True}}))
            reference = server.push(layout, TAG, "debian/minbase")
            ours, theirs, size = [], [], 0
            for index in range(RUNS):
                run_dir = scratch / f"run-{index}"
                (run_dir / "ours").mkdir(parents=True)
                (run_dir / "theirs").mkdir()
                elapsed, size = await corral_pull_unpack(reference, home, run_dir / "ours")
                ours.append(elapsed)
                theirs.append(skopeo_umoci(reference, run_dir / "theirs"))
                shutil.rmtree(run_dir)
            emit(
                "image_pull_unpack",
                image="debian bookworm minbase + python3-minimal",
                compressed_mib=round(size / 2**20, 1),
                runs=RUNS,
                corral_s=round(median(ours), 3),
                skopeo_umoci_s=round(median(theirs), 3),
                corral_vs_skopeo_umoci=round(median(ours) / median(theirs), 3),
                target=1.0,
            )

            first = cli_run_true(reference)  # pulls, builds the root disk, boots
            paths = Paths.from_env()
            ready = [root_ready(reference, paths, scratch, i) for i in range(READY_RUNS)]
            emit(
                "image_second_root_ready",
                runs=READY_RUNS,
                median_ms=round(median(ready) * 1000, 2),
                max_ms=round(max(ready) * 1000, 2),
                target_ms=50,
            )

            cli_run_true("default")  # the default image's root disk, built once
            debian = [cli_run_true(reference) for _ in range(RUNS)]
            default = [cli_run_true("default") for _ in range(RUNS)]
            emit(
                "image_cold_run",
                runs=RUNS,
                first_debian_run_s=round(first, 3),
                debian_run_true_s=round(median(debian), 3),
                default_run_true_s=round(median(default), 3),
                debian_vs_default=round(median(debian) / median(default), 3),
            )
