"""The folder mapping (operator/ → corral.operator, node_agent/ → corral.node_agent)
works for a wheel and for an editable install into a fresh venv, and the public
surface is exactly what is meant."""

from __future__ import annotations

import site
import subprocess
import sys
import venv
from pathlib import Path
from types import ModuleType

import pytest

import corral

REPO = Path(__file__).resolve().parent.parent
IMPORTS = (
    "import corral, corral.operator, corral.node_agent, corral.node_agent.supervisor; "
    "print(corral.node_agent.supervisor.__name__)"
)


def fresh_venv(tmp_path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    return tmp_path / "venv/bin/python"


def run_imports(python: Path, cwd: Path) -> str:
    deps = ":".join(site.getsitepackages())
    result = subprocess.run(
        [str(python), "-c", f"import sys; sys.path.append({deps!r}); {IMPORTS}"],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("editable", [False, True])
def test_mapped_packages_import_from_a_fresh_venv(tmp_path: Path, editable: bool) -> None:
    python = fresh_venv(tmp_path)
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps"]
    install += ["-e", str(REPO)] if editable else [str(REPO)]
    subprocess.run(install, check=True, capture_output=True, cwd=tmp_path)
    assert run_imports(python, tmp_path) == "corral.node_agent.supervisor"


def test_public_surface() -> None:
    for name in corral.__all__:
        assert getattr(corral, name) is not None
    public = {
        name
        for name, value in vars(corral).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public - {"annotations", "importlib", "TYPE_CHECKING", "Any"} <= set(corral.__all__)
    assert {"Sandbox", "SandboxBuilder", "ExecOutput", "ExecTimeout", "ExecFailed"} <= set(
        corral.__all__
    )
    assert set(corral.__all__) <= set(dir(corral))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        corral.Nope  # noqa: B018


def test_the_boot_path_stays_light() -> None:
    """QEMU starts before the supervisor loads asyncio; pydantic is never loaded."""
    code = (
        "import sys, corral.node_agent.launch as launch; "
        "print('asyncio' in sys.modules, 'pydantic' in sys.modules); "
        "import corral.node_agent.supervisor; print('pydantic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False", "False"], result.stderr
