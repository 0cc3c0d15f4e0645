"""The launch prepares the VM in a forked child: what comes back when it fails or dies."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from corral._errors import BootError, ImageError
from corral._paths import Paths
from corral.node_agent import launch


@pytest.fixture
def keep_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_in_child turns OpenSSL off in its caller, here the test process: undone."""
    for name in ("ssl", "_hashlib"):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name))


def test_a_failure_comes_back_as_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_openssl: None
) -> None:
    def refuse(paths: Paths, record: Any) -> Any:
        return launch.failure(ImageError("image '/nowhere' not found"))

    monkeypatch.setattr(launch, "prepare_or_failure", refuse)
    report = launch.prepare_in_child(Paths(tmp_path), None)  # type: ignore[arg-type]
    assert report == {
        "ok": False,
        "kind": "ImageError",
        "error": "image '/nowhere' not found",
        "console": "",
    }


def test_a_child_that_dies_is_a_boot_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_openssl: None
) -> None:
    def die(paths: Paths, record: Any) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(launch, "prepare_or_failure", die)
    with pytest.raises(BootError, match="preparing the VM failed \\(killed by signal 9\\)"):
        launch.prepare_in_child(Paths(tmp_path), None)  # type: ignore[arg-type]


def test_a_child_that_cannot_send_its_plan_is_a_boot_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_openssl: None
) -> None:
    monkeypatch.setattr(launch, "prepare_or_failure", lambda paths, record: lambda: None)
    with pytest.raises(BootError, match="exit status 1"):
        launch.prepare_in_child(Paths(tmp_path), None)  # type: ignore[arg-type]


def test_an_unexpected_error_is_reported_as_a_boot_error() -> None:
    report = launch.failure(OSError(28, "No space left on device"))
    assert report["kind"] == "BootError"
    assert report["error"] == "OSError: [Errno 28] No space left on device"
