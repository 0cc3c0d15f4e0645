"""QEMU: the command line (pure) and the process that owns one running VM.

`-M microvm` with virtio-mmio devices and direct kernel boot; the options and kernel
parameters below are the ones measured to boot fastest (shared/MEASURED.md). With
`acpi=off` QEMU lists the devices on the kernel command line (`virtio_mmio.device=`),
which only a kernel with VIRTIO_MMIO_CMDLINE_DEVICES reads; a stock kernel such as
Debian's cloud kernel finds them in the ACPI tables QEMU builds with `acpi=on`. Both a
PVH vmlinux and a bzImage boot with the same options (qboot loads a bzImage).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from corral.node_agent.accel import Accel

QEMU_BINARY = "qemu-system-x86_64"
CHANNEL_NAME = "corral.0"
ROOT_SHARE_TAG = "corral-root"
"""The 9p mount tag of a bind root; the guest finds it in `corral.root=9p:<tag>`."""
# Under TCG, hide ERMS/FSRM: with them the guest kernel uses `rep movsb/stosb`, which TCG
# runs a byte at a time (pipes 2-4x and first-touch memory 1.2-2.5x slower, measured).
TCG_CPU = "max,-erms,-fsrm"


@dataclass(frozen=True)
class Disk:
    path: Path
    readonly: bool


@dataclass(frozen=True)
class VmSpec:
    accel: Accel
    cpus: int
    memory_mib: int
    kernel: Path
    initramfs: Path
    channel_socket: Path
    console_log: Path
    disks: list[Disk] = field(default_factory=list)
    root_share: Path | None = None  # a host directory shared read-write as the 9p root
    kernel_args: list[str] = field(default_factory=list)
    tsc_khz: int = 0
    acpi: bool = False
    qmp_socket: Path | None = None  # QEMU listens here for its monitor protocol
    incoming: Path | None = None  # a boot snapshot to restore instead of booting
    qemu: Path | None = None  # the emulator setup built; None: the one on PATH

    @property
    def emulator(self) -> str:
        return str(self.qemu) if self.qemu is not None else QEMU_BINARY


def kernel_cmdline(spec: VmSpec) -> str:
    args = ["console=ttyS0", "reboot=t", "panic=-1", "quiet"]
    if spec.accel == "tcg" and spec.tsc_khz:
        args += [
            f"tsc_early_khz={spec.tsc_khz}",
            "tsc=reliable",
            "no_timer_check",
            f"lpj={spec.tsc_khz * 10}",
            "noreplace-smp",
        ]
        # Hardware-reduced ACPI (microvm's) drops the PIT, leaving the APIC timer as the
        # only tick: without it nothing that sleeps ever wakes, reboot included.
        if not spec.acpi:
            args.append("noapictimer")
    return " ".join(args + spec.kernel_args)


def qemu_command(spec: VmSpec) -> list[str]:
    command = [
        spec.emulator,
        "-M", f"microvm,x-option-roms=off,isa-serial=on,acpi={'on' if spec.acpi else 'off'}",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-accel", spec.accel,
        "-cpu", "host" if spec.accel == "kvm" else TCG_CPU,
        "-smp", str(spec.cpus),
        "-m", str(spec.memory_mib),
        "-kernel", str(spec.kernel),
        "-initrd", str(spec.initramfs),
        "-append", kernel_cmdline(spec),
        "-serial", f"file:{spec.console_log}",
        "-device", "virtio-rng-device",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=channel,path={spec.channel_socket}",
        "-device", f"virtserialport,chardev=channel,name={CHANNEL_NAME}",
    ]  # fmt: skip
    for index, disk in enumerate(spec.disks):
        readonly = ",readonly=on" if disk.readonly else ""
        command += [
            "-drive", f"if=none,id=disk{index},file={disk.path},format=raw{readonly}",
            "-device", f"virtio-blk-device,drive=disk{index}",
        ]  # fmt: skip
    if spec.qmp_socket is not None:
        command += ["-qmp", f"unix:{spec.qmp_socket},server=on,wait=off"]
    if spec.incoming is not None:
        command += ["-incoming", f"exec:cat {shlex.quote(str(spec.incoming))}"]
    if spec.root_share is not None:
        # security_model=none: QEMU acts with its own host permissions (what it may not
        # do, such as an unprivileged chown, is skipped) and keeps no guest metadata on
        # the side, so the directory stays an ordinary one, as under a bind mount.
        command += [
            "-fsdev", f"local,id=root,path={spec.root_share},security_model=none",
            "-device", f"virtio-9p-device,fsdev=root,mount_tag={ROOT_SHARE_TAG}",
        ]  # fmt: skip
    return command


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the forked child: a VM never outlives its supervisor."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class QemuProcess:
    """Owns one QEMU process; `kill` is idempotent and 'already gone' is success.

    Started synchronously (no event loop needed, so it can start before the supervisor
    has loaded); its exit is awaited through a pidfd. QEMU gets SIGKILL if its
    supervisor dies, so no VM is left without an owner.
    """

    def __init__(self, spec: VmSpec) -> None:
        self.spec = spec
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.spec.console_log.with_suffix(".qemu.log").open("ab") as log:
            self._process = subprocess.Popen(
                qemu_command(self.spec),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self._process.pid if self._process else 0

    def pidfd(self) -> int:
        """A descriptor that becomes readable when QEMU exits."""
        assert self._process is not None, "QEMU was not started"
        return os.pidfd_open(self._process.pid)

    def reap(self) -> int:
        """The exit status, once the pidfd said QEMU is gone (negative: killed by signal)."""
        assert self._process is not None, "QEMU was not started"
        return self._process.wait()

    def kill(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)

    def describe_exit(self, code: int) -> str:
        reason = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        qemu_log = self.spec.console_log.with_suffix(".qemu.log")
        with contextlib.suppress(OSError):
            tail = qemu_log.read_text(errors="replace").strip().splitlines()[-3:]
            if tail:
                reason += ": " + " | ".join(tail)
        return f"QEMU {reason}"
