from dataclasses import replace
from pathlib import Path

from corral.node_agent.vmm import Disk, VmSpec, kernel_cmdline, qemu_command


def spec(accel: str = "tcg") -> VmSpec:
    return VmSpec(
        accel=accel,  # type: ignore[arg-type]
        cpus=2,
        memory_mib=256,
        kernel=Path("/k/vmlinux"),
        initramfs=Path("/k/initramfs.cpio"),
        channel_socket=Path("/s/channel.sock"),
        console_log=Path("/s/console.log"),
        disks=[Disk(Path("/i/root.ext4"), True), Disk(Path("/s/upper.ext4"), False)],
        kernel_args=["corral.root=/dev/vda"],
        tsc_khz=2100000,
    )


def test_microvm_machine_with_acpi_off_and_no_defaults() -> None:
    command = qemu_command(spec())
    machine = command[command.index("-M") + 1]
    assert machine.startswith("microvm") and "acpi=off" in machine
    assert "-nodefaults" in command and "-no-reboot" in command
    assert command[command.index("-accel") + 1] == "tcg"


def test_disks_in_order_and_root_read_only() -> None:
    drives = [arg for arg in qemu_command(spec()) if arg.startswith("if=none")]
    assert drives[0].endswith("readonly=on") and "/i/root.ext4" in drives[0]
    assert "readonly" not in drives[1]


def test_tcg_gets_the_measured_timer_parameters_and_kvm_does_not() -> None:
    tcg = kernel_cmdline(spec("tcg"))
    assert "tsc_early_khz=2100000" in tcg and "lpj=21000000" in tcg and "noapictimer" in tcg
    kvm = kernel_cmdline(spec("kvm"))
    assert "noapictimer" not in kvm and "corral.root=/dev/vda" in kvm
    assert qemu_command(spec("kvm"))[qemu_command(spec("kvm")).index("-cpu") + 1] == "host"
    tcg = qemu_command(spec("tcg"))
    assert tcg[tcg.index("-cpu") + 1] == "max,-erms,-fsrm"


def test_a_kernel_that_finds_devices_in_acpi_gets_acpi_and_keeps_its_apic_timer() -> None:
    stock = replace(spec(), acpi=True)
    machine = qemu_command(stock)[qemu_command(stock).index("-M") + 1]
    assert "acpi=on" in machine and "acpi=off" not in machine
    assert "noapictimer" not in kernel_cmdline(stock)
    assert "tsc_early_khz=2100000" in kernel_cmdline(stock)
    default = qemu_command(spec())
    assert "acpi=off" in default[default.index("-M") + 1]
    assert "noapictimer" in kernel_cmdline(spec())
