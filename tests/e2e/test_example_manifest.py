"""The README's path: `kubectl apply -f examples/sandbox.yaml`, wait for Ready, then
`corral --kubeconfig … exec` into it. No registry is reachable here, so the example's
image is loaded into each node's store first (as `kind load` preloads a node), and the
default IfMissing pull policy finds it there."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import condition
from images.oci_layout import Layout, busybox_layer, entry, tar

from corral.testing.cluster import BIN, Cluster

pytestmark = pytest.mark.vm
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sandbox.yaml"


def test_the_example_sandbox_runs_and_takes_exec(cluster: Cluster, tmp_path: Path) -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    image = example["spec"]["image"]
    layout = Layout(tmp_path / "layout")
    sleep = tar(entry("bin/sleep", type=tarfile.SYMTYPE, linkname="busybox"))
    layout.tag(layout.image([busybox_layer(), sleep], config={"Env": ["PATH=/bin"]}), "example")
    for agent in cluster.agents.values():
        subprocess.run(
            [str(BIN / "corral"), "image", "load", "--tag", image, str(layout.path)],
            check=True,
            capture_output=True,
            env={**os.environ, "CORRAL_HOME": str(agent.home)},
            timeout=120,
        )

    cluster.kubectl("apply", "-f", str(EXAMPLE))
    obj = cluster.wait_ready(example["metadata"]["name"])
    assert obj["status"]["phase"] == "Running"
    assert condition(obj, "ImageReady")["status"] == "True"
    reference = f"default/{example['metadata']['name']}"
    script = 'echo "$GREETING"; pwd; ls /proc/1/exe >/dev/null && echo ok'
    command = ["exec", reference, "--", "sh", "-c", script]
    result = subprocess.run(
        [str(BIN / "corral"), "--kubeconfig", str(cluster.kubeconfig), *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    greeting = next(e["value"] for e in example["spec"]["env"] if e["name"] == "GREETING")
    assert result.stdout == f"{greeting}\n{example['spec']['workingDir']}\nok\n"
    cluster.kubectl("delete", "-f", str(EXAMPLE), "--timeout=60s")
