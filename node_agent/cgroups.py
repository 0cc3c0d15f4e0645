"""Sandbox cgroups (cgroup v2): each sandbox's supervisor and QEMU in a cgroup of its own.

A container runtime stops a container by killing every process in the container's
cgroup, so in a node-agent pod the VMs would die with every agent restart. With
CORRAL_CGROUP_ROOT naming a cgroup v2 directory outside the pod's cgroup, the launch
(node_agent/launch.py) moves itself into `<root>/<sandbox uid>` before anything else,
and QEMU inherits it. The node agent checks the root when it starts.

The launch names the cgroup in the sandbox directory's `cgroup` file, and the SDK's
remove (corral/_sandbox.py `_kill_leftovers`) rmdirs it with the standard library once
the processes are gone. Why there: the SDK core may not import the runtime (reading a
path and an rmdir need nothing of it), and the supervisor cannot do it, as a cgroup with
a process in it cannot be removed and a forced remove or a failed boot leaves no
supervisor to run an exit handler. The one exception is a supervisor that removes its
own sandbox when its owner exits: it `leave`s first.

Standard library only: this runs on the launch's boot path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from corral._errors import BootError

ROOT_ENV = "CORRAL_CGROUP_ROOT"
POINTER = "cgroup"
"""The file in a sandbox directory naming its cgroup (corral/_sandbox.py reads it too)."""


def check_root(root: Path) -> None:
    """Raise BootError, naming `root`, unless it is a writable cgroup v2 directory."""
    if not root.is_dir():
        raise BootError(f"cgroup root {root} does not exist")
    if not (root / "cgroup.controllers").is_file():
        raise BootError(
            f"cgroup root {root} is not in a cgroup v2 hierarchy (it has no "
            "cgroup.controllers); cgroup v1 is not supported"
        )
    if not os.access(root, os.W_OK):
        raise BootError(f"cgroup root {root} is not writable")


def join(root: Path, uid: str, sandbox_dir: Path) -> None:
    """Move this process into `<root>/<uid>`, a cgroup it creates.

    The pointer file is written first, so a remove finds the cgroup whatever happens next;
    a failure removes the cgroup again (the creator removes the sandbox directory).
    """
    check_root(root)
    cgroup = root / uid
    (sandbox_dir / POINTER).write_text(str(cgroup))
    try:
        cgroup.mkdir()
    except OSError as exc:
        raise BootError(f"cannot create cgroup {cgroup}: {exc.strerror}") from None
    try:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        cgroup.rmdir()
        raise BootError(f"cannot move the sandbox into cgroup {cgroup}: {exc.strerror}") from None


def leave(sandbox_dir: Path) -> None:
    """Move this process up to the root and remove the sandbox's cgroup, if it has one.

    Best effort: the move fails where controllers are enabled in the root's subtree (no
    process may live there), and the empty cgroup then stays.
    """
    with contextlib.suppress(OSError):
        cgroup = Path((sandbox_dir / POINTER).read_text())
        (cgroup.parent / "cgroup.procs").write_text(str(os.getpid()))
        cgroup.rmdir()
