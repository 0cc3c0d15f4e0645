"""The boot assets the setup step built: QEMU, guest kernels, initramfs, default image.

Setup records them in `$CORRAL_HOME/assets/current.json`; the runtime reads only that
file, so a sandbox never depends on how the assets were made. The top-level `kernel` and
`initramfs` are the default variant (the project's own kernel); `kernels` adds the
others by name, e.g. `debian-cloud`, each with the initramfs that boots it. `qemu` is
the project's minimal build (scripts/build-qemu.sh); a manifest without one runs the
`qemu-system-x86_64` on PATH.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral._errors import BootError

SETUP_HINT = "run `make setup` (or scripts/setup) to build the guest kernel and agent"


DEFAULT_KERNEL = "corral"
CLOUD_KERNEL = "debian-cloud"


@dataclass(frozen=True)
class KernelVariant:
    """One provisioned guest kernel with the initramfs that boots it.

    `acpi`: the kernel finds its virtio-mmio devices in ACPI tables, not on the command
    line (a stock kernel without VIRTIO_MMIO_CMDLINE_DEVICES), so QEMU must build them.
    `args`: kernel parameters this kernel boots faster with.
    """

    kernel: Path
    initramfs: Path
    version: str
    pvm: bool
    acpi: bool
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Assets:
    kernel: Path
    kernel_version: str
    kernel_pvm: bool
    initramfs: Path
    agent_version: str
    default_image: Path
    tsc_khz: int
    kernel_name: str = DEFAULT_KERNEL
    kernel_acpi: bool = False
    kernel_args: tuple[str, ...] = ()
    kernels: Mapping[str, KernelVariant] = field(default_factory=dict)
    qemu: Path | None = None  # the project's QEMU build; None: the one on PATH

    @classmethod
    def load(cls, assets_dir: Path, kernel: str | None = None) -> Assets:
        """The assets for one sandbox. `kernel` is a variant name from the manifest, or an
        absolute path to a custom kernel (booted with the default initramfs); None is
        the default variant."""
        manifest = assets_dir / "current.json"
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise BootError(f"no boot assets at {manifest}: {SETUP_HINT}") from None
        except (OSError, ValueError) as exc:
            raise BootError(f"unreadable boot assets manifest {manifest}: {exc}") from exc
        missing = {"kernel", "initramfs", "default_image"} - set(data)
        if missing:
            raise BootError(
                f"boot assets manifest {manifest} lacks {sorted(missing)}: {SETUP_HINT}"
            )
        kernels = kernel_variants(data)
        chosen = select_kernel(kernels, kernel)
        assets = cls(
            kernel=chosen.kernel,
            kernel_version=chosen.version,
            kernel_pvm=chosen.pvm,
            initramfs=chosen.initramfs,
            agent_version=str(data.get("agent_version", "")),
            default_image=Path(data["default_image"]),
            tsc_khz=int(data.get("tsc_khz", 0)),
            kernel_name=kernel or DEFAULT_KERNEL,
            kernel_acpi=chosen.acpi,
            kernel_args=chosen.args,
            kernels=kernels,
            qemu=Path(data["qemu"]) if "qemu" in data else None,
        )
        for path in (assets.kernel, assets.initramfs, assets.default_image, assets.qemu):
            if path is None:
                continue
            if not path.exists():
                raise BootError(f"boot asset {path} is missing: {SETUP_HINT}")
        return assets


def kernel_variants(manifest: Mapping[str, Any]) -> dict[str, KernelVariant]:
    """The kernel variants a manifest records: its top-level kernel is the default, first,
    and `kernels` adds the others by name (a manifest from before variants has none)."""
    kernels = {
        DEFAULT_KERNEL: KernelVariant(
            kernel=Path(manifest["kernel"]),
            initramfs=Path(manifest["initramfs"]),
            version=str(manifest.get("kernel_version", "")),
            pvm=bool(manifest.get("kernel_pvm", False)),
            acpi=False,
        )
    }
    for name, entry in manifest.get("kernels", {}).items():
        kernels[name] = KernelVariant(
            kernel=Path(entry["kernel"]),
            initramfs=Path(entry["initramfs"]),
            version=str(entry.get("version", "")),
            pvm=bool(entry.get("pvm", False)),
            acpi=bool(entry.get("acpi", False)),
            args=tuple(str(arg) for arg in entry.get("args", [])),
        )
    return kernels


def select_kernel(kernels: Mapping[str, KernelVariant], kernel: str | None) -> KernelVariant:
    """The variant a sandbox asked for; a path is a custom kernel, assumed to need what the
    default needs (devices on the command line) and not to be PVM-capable."""
    if kernel is None:
        return kernels[DEFAULT_KERNEL]
    if kernel.startswith("/"):
        default = kernels[DEFAULT_KERNEL]
        return KernelVariant(Path(kernel), default.initramfs, "", pvm=False, acpi=False)
    if kernel not in kernels:
        raise BootError(
            f"unknown kernel {kernel!r}: the variants set up here are "
            f"{', '.join(sorted(kernels))} (or give an absolute path to a kernel image)"
        )
    return kernels[kernel]


def host_tsc_khz() -> int:
    """The host TSC frequency; under TCG the guest TSC runs at this rate.

    Read from the kernel's own calibration in the boot log, falling back to cpuinfo.
    """
    import subprocess

    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
    except OSError:
        log = ""
    for pattern in (
        r"Refined TSC clocksource calibration: (\d+)\.(\d+) MHz",
        r"tsc: Detected (\d+)\.(\d+) MHz processor",
    ):
        match = re.search(pattern, log)
        if match:
            return int(match.group(1)) * 1000 + int(match.group(2).ljust(3, "0")[:3])
    cpuinfo = Path("/proc/cpuinfo").read_text()
    match = re.search(r"cpu MHz\s*:\s*(\d+)\.(\d+)", cpuinfo)
    return int(match.group(1)) * 1000 + int(match.group(2).ljust(3, "0")[:3]) if match else 0
