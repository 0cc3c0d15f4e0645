"""A real distribution image: Debian 12 minbase with python3, built with debootstrap,
pushed with skopeo to the loopback registry, pulled and booted; python3 runs in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from images.debian import TAG, debian_layout
from images.registry import run_registry

from corral import Sandbox

pytestmark = pytest.mark.vm


async def test_debian_minbase_runs_python3(corral_home: Path, tmp_path: Path) -> None:
    layout = debian_layout()
    with run_registry(tmp_path / "registry", tls=False) as server:
        settings = corral_home / "registries.json"
        settings.write_text(json.dumps({server.host: {"insecure": True}}))
        try:
            reference = server.push(layout, TAG, "debian/minbase")
            builder = Sandbox.builder("debian").image(reference).memory(256)
            async with await builder.create() as sb:
                out = await sb.exec("python3", ["-c", "print(1)"])
                assert (out.stdout, out.exit_code) == (b"1\n", 0)
                release = await sb.exec("/bin/cat", ["/etc/debian_version"])
                assert release.stdout.startswith(b"12.")
        finally:
            settings.unlink()
