"""The public surface of corral.api is what is meant, and it does no I/O on import."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import corral.api


def test_public_surface() -> None:
    public = {
        name
        for name, value in vars(corral.api).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(corral.api.__all__)
    assert all(getattr(corral.api, name) is not None for name in corral.api.__all__)


def test_importing_loads_neither_the_runtime_nor_a_kubernetes_client() -> None:
    heavy = "('kubernetes', 'kubernetes_asyncio', 'kopf', 'yaml', 'corral.node_agent')"
    code = (
        "import sys, corral.api.crd; "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
