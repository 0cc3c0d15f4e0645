"""Choosing the accelerator: KVM when the host really offers it to this guest, else TCG.

A /dev/kvm provided by PVM (module kvm_pvm) runs only PVM-enlightened guest kernels;
stock kernels hang there, so `auto` picks TCG unless the kernel is declared PVM-capable.
The choice and its reason are always reported, never silent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Accel = Literal["kvm", "tcg"]


@dataclass(frozen=True)
class HostFacts:
    kvm_usable: bool
    hardware_virt: bool
    pvm: bool


@dataclass(frozen=True)
class AccelChoice:
    accel: Accel
    reason: str


def probe_host() -> HostFacts:
    kvm_usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    words = set(flags.split())
    return HostFacts(
        kvm_usable=kvm_usable,
        hardware_virt=bool(words & {"vmx", "svm"}),
        pvm=Path("/sys/module/kvm_pvm").exists(),
    )


def choose(requested: str, facts: HostFacts, kernel_pvm: bool) -> AccelChoice:
    """Pure decision from the request ("auto", "kvm", "tcg") and the host facts."""
    if requested == "tcg":
        return AccelChoice("tcg", "requested")
    if not facts.kvm_usable:
        reason = "/dev/kvm is missing or not accessible"
        if requested == "kvm":
            raise ValueError(f"KVM was requested but {reason}")
        return AccelChoice("tcg", reason)
    if facts.pvm and not kernel_pvm:
        reason = (
            "/dev/kvm is provided by kvm_pvm (PVM), which hangs guest kernels that are "
            "not PVM-enlightened; this kernel is not declared PVM-capable"
        )
        if requested == "kvm":
            raise ValueError(f"KVM was requested but {reason}")
        return AccelChoice("tcg", reason)
    if requested == "kvm":
        return AccelChoice("kvm", "requested")
    if facts.pvm:
        return AccelChoice("kvm", "/dev/kvm is PVM and the kernel is declared PVM-capable")
    return AccelChoice("kvm", "/dev/kvm is usable")
