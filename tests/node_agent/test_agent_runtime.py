"""The node agent's runtime boots image references only: a path on the node (copied or
bound as the root by the embedded runtime) is refused before anything is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import InvalidConfig
from corral._paths import Paths
from corral.api import Sandbox
from corral.node_agent.daemon.runtime import LocalRuntime


@pytest.mark.parametrize("image", ["bind:/", "/var/lib/kubelet", "./etc"])
async def test_host_sources_are_refused(image: str, tmp_path: Path) -> None:
    valid = Sandbox.model_validate(
        {"metadata": {"name": "s", "uid": "u1"}, "spec": {"image": "default"}}
    )
    resource = valid.model_copy(update={"spec": valid.spec.model_copy(update={"image": image})})
    with pytest.raises(InvalidConfig, match="never a node's path"):
        await LocalRuntime(Paths(tmp_path)).boot(resource)
    assert not (tmp_path / "state.db").exists()
