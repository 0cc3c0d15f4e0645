"""What preparing a sandbox's VM (node_agent/prepare.py) hands back to its launch.

A module of its own, kept small: unpickling a Plan in the supervisor imports it (the
launch itself runs as `__main__`, and a second copy would stay resident).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.node_agent.image_defaults import ImageDefaults
from corral.node_agent.vmm import VmSpec

if TYPE_CHECKING:
    from corral.node_agent import snapshots


@dataclass(frozen=True)
class Plan:
    """A prepared VM: what the launch starts and what its supervisor needs to know.

    The launch's preparing child pickles it back to the supervisor process, where
    unpickling imports the modules of its types: each is kept light (image_defaults.py,
    not rootfs.py), since what they load stays for the sandbox's whole life."""

    spec: VmSpec
    defaults: ImageDefaults
    accel_reason: str
    restored_from: snapshots.Snapshot | None = None
    record_to: snapshots.Snapshot | None = None  # cold boot of a shape with no snapshot yet
