"""What an image says its processes get: environment, entrypoint, cmd, workdir, user.

Apart from rootfs.py, which reads it from images: a supervisor keeps it for its
sandbox's whole life, and rootfs's imports (tarfile, tempfile, shutil) would stay with
it, about 2 MiB of RSS per sandbox (bench/memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageDefaults:
    """What the image says a process should get unless the sandbox overrides it."""

    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    workdir: str = "/"
    user: str = "root"

    def main_argv(self, entrypoint: list[str] | None, cmd: list[str] | None) -> list[str]:
        """The sandbox's main process, combined the way OCI runtimes do; [] for none.

        It runs only when the sandbox sets an entrypoint or cmd of its own: an image's
        default alone (often a shell) is what `corral run` offers interactively.
        """
        if entrypoint is not None:
            return [*entrypoint, *(cmd or [])]
        if cmd is not None:
            return [*self.entrypoint, *cmd]
        return []
