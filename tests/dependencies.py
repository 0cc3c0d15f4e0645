"""What a test does when something set-up provides is missing: under CI (CI=true) the
test fails, naming it; elsewhere it is skipped with the command that installs it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI must not skip)", pytrace=False)
    pytest.skip(what)
