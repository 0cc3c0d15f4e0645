"""The boot assets the setup step built: guest kernel, initramfs, default image.

Setup records them in `$CORRAL_HOME/assets/current.json`; the runtime reads only that
file, so a sandbox never depends on how the assets were made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from corral._errors import BootError

SETUP_HINT = "run `make setup` (or scripts/setup) to build the guest kernel and agent"


@dataclass(frozen=True)
class Assets:
    kernel: Path
    kernel_version: str
    kernel_pvm: bool
    initramfs: Path
    agent_version: str
    default_image: Path
    tsc_khz: int

    @classmethod
    def load(cls, assets_dir: Path, kernel_override: str | None = None) -> Assets:
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
        assets = cls(
            kernel=Path(kernel_override or data["kernel"]),
            kernel_version=str(data.get("kernel_version", "")),
            kernel_pvm=bool(data.get("kernel_pvm", False)) and not kernel_override,
            initramfs=Path(data["initramfs"]),
            agent_version=str(data.get("agent_version", "")),
            default_image=Path(data["default_image"]),
            tsc_khz=int(data.get("tsc_khz", 0)),
        )
        for path in (assets.kernel, assets.initramfs, assets.default_image):
            if not path.exists():
                raise BootError(f"boot asset {path} is missing: {SETUP_HINT}")
        return assets


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
