"""How an image reference is told apart from a path (pure, no VM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral._errors import ImageError
from corral.node_agent.rootfs import resolve


def test_only_path_like_references_name_local_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alpine").mkdir()
    default = tmp_path / "default-rootfs"
    default.mkdir()
    assert resolve("./alpine", default).kind == "directory"
    assert resolve(str(tmp_path / "alpine"), default).kind == "directory"
    assert resolve("default", default).path == default
    with pytest.raises(ImageError, match="not found"):
        resolve("alpine", default)  # an image name, even with a same-named directory here


def test_a_path_that_is_not_a_tarball_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "rootfs.tar"
    bogus.write_text("not a tar archive")
    with pytest.raises(ImageError, match="not a tar archive"):
        resolve(str(bogus), tmp_path)
