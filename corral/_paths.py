"""Where Corral keeps its files on this host.

`CORRAL_HOME` (default `~/.local/share/corral`) holds assets built by the setup step
(kernel, initramfs, default image), the image root-disk cache, per-sandbox directories
and the SQLite state. Unix socket paths are limited to 107 bytes, so sandbox
directories use short ids and the home should be a short path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        home = os.environ.get("CORRAL_HOME") or str(Path.home() / ".local/share/corral")
        return cls(Path(home))

    @property
    def assets(self) -> Path:
        return self.home / "assets"

    @property
    def images(self) -> Path:
        return self.home / "images"

    @property
    def sandboxes(self) -> Path:
        return self.home / "sandboxes"

    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    def sandbox_dir(self, uid: str) -> Path:
        return self.sandboxes / uid
