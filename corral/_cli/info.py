"""`corral info`: what this host would run a sandbox with, and why.

Versions, the boot assets `make setup` recorded, and the accelerator `auto` picks
with its reason, so "why is it slow / why does it not boot" starts from facts.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

import click

from corral._errors import BootError
from corral._paths import Paths
from corral.node_agent import accel
from corral.node_agent.assets import Assets
from corral.node_agent.vmm import QEMU_BINARY


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for machines.")
def info(as_json: bool) -> int:
    """Show versions, boot assets, and the accelerator `auto` would choose."""
    facts = gather()
    print(json.dumps(facts, indent=2) if as_json else render(facts))
    return 0


def gather() -> dict[str, Any]:
    paths = Paths.from_env()
    facts: dict[str, Any] = {
        "corral_version": metadata.version("corral"),
        "python_version": platform.python_version(),
        "home": str(paths.home),
        "qemu": QEMU_BINARY,
        "qemu_version": None,
        "assets": None,
        "assets_problem": "",
    }
    kernel_pvm = False
    try:
        assets = Assets.load(paths.assets)
    except BootError as exc:
        facts["assets_problem"] = str(exc)
    else:
        kernel_pvm = assets.kernel_pvm
        facts["qemu"] = str(assets.qemu or QEMU_BINARY)
        facts["assets"] = {
            key: _plain(value)
            for key, value in dataclasses.asdict(assets).items()
            if key not in ("kernel_name", "kernel_acpi", "kernel_args", "qemu")
        }
    host = accel.probe_host()
    choice = accel.choose("auto", host, kernel_pvm)
    facts["accelerator"] = {"choice": choice.accel, "reason": choice.reason}
    facts["host"] = dataclasses.asdict(host)
    facts["qemu_version"] = qemu_version(facts["qemu"])
    return facts


def _plain(value: Any) -> Any:
    """Paths as strings, the kernel variants as nested objects, for JSON."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value if isinstance(value, bool | int) else str(value)


def qemu_version(qemu: str) -> str | None:
    """The first line of `<qemu> --version`, or None when it is not installed."""
    binary = shutil.which(qemu)
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unusable: {exc}"
    lines = result.stdout.strip().splitlines()
    return lines[0] if lines else f"unusable: exit status {result.returncode}"


def render(facts: dict[str, Any]) -> str:
    assets = facts["assets"]
    choice = facts["accelerator"]
    host = facts["host"]
    lines = [
        ("Corral", f"{facts['corral_version']} (Python {facts['python_version']})"),
        ("Home", facts["home"]),
        ("QEMU", f"{facts['qemu']} ({facts['qemu_version'] or 'not found'})"),
    ]
    if assets is None:
        lines.append(("Assets", f"not set up: {facts['assets_problem']}"))
    else:
        pvm = "PVM-capable" if assets["kernel_pvm"] else "not PVM-capable"
        lines += [
            ("Kernel", f"{assets['kernel']} ({assets['kernel_version'] or '?'}, {pvm})"),
            ("Initramfs", assets["initramfs"]),
            ("Kernel variants", _variants(assets["kernels"])),
            ("Agent", assets["agent_version"] or "?"),
            ("Default image", assets["default_image"]),
        ]
    lines += [
        ("Accelerator", f"{choice['choice']} (auto): {choice['reason']}"),
        (
            "Host",
            f"/dev/kvm usable: {_yes(host['kvm_usable'])}, "
            f"hardware virtualization: {_yes(host['hardware_virt'])}, "
            f"PVM (kvm_pvm): {_yes(host['pvm'])}",
        ),
    ]
    width = max(len(label) for label, _ in lines) + 2
    return "\n".join(f"{label + ':':<{width}}{value}" for label, value in lines)


def _variants(kernels: dict[str, dict[str, Any]]) -> str:
    """The names `--kernel` takes, each with its version; the default comes first."""
    return "; ".join(
        f"{name} {kernel['version'] or '?'}"
        + (" (default)" if index == 0 else "")
        + (", PVM-capable" if kernel["pvm"] else "")
        for index, (name, kernel) in enumerate(kernels.items())
    )


def _yes(value: bool) -> str:
    return "yes" if value else "no"
