"""Real kubectl against a test server: a private HOME and discovery cache per caller,
`AssertionError` with kubectl's output when a command that must work fails."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Kubectl:
    """Real kubectl against the test server, with a private HOME and discovery cache."""

    kubeconfig: Path
    home: Path

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        cmd = [
            "kubectl",
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.home / "cache"),
            *args,
        ]
        result = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"HOME": str(self.home), "PATH": "/usr/bin"},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def apply(
        self, manifest: dict[str, Any], *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", *args, input=yaml.safe_dump(manifest), check=check)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)
