"""The TSC frequency a TCG guest is told: the one measured on the running host
($CORRAL_TSC_KHZ, set by the node agent) wins over the one the assets recorded where they
were built; it reaches the kernel command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import BootError
from corral.node_agent.prepare import TSC_ENV, guest_tsc_khz
from corral.node_agent.vmm import VmSpec, kernel_cmdline


def test_the_measured_frequency_wins_over_the_recorded_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(TSC_ENV, "2894561")
    spec = VmSpec(
        accel="tcg",
        cpus=1,
        memory_mib=128,
        kernel=Path("/k"),
        initramfs=Path("/i"),
        channel_socket=Path("/c"),
        console_log=Path("/l"),
        tsc_khz=guest_tsc_khz(2100000),
    )
    assert "tsc_early_khz=2894561" in kernel_cmdline(spec).split()


def test_without_a_measurement_the_recorded_frequency_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TSC_ENV, raising=False)
    assert guest_tsc_khz(2100000) == 2100000
    monkeypatch.setenv(TSC_ENV, "")
    assert guest_tsc_khz(2100000) == 2100000


@pytest.mark.parametrize("value", ["2.1GHz", "0", "-5"])
def test_a_malformed_measurement_fails_the_boot_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(TSC_ENV, value)
    with pytest.raises(BootError, match=f"{TSC_ENV}='{value}'"):
        guest_tsc_khz(2100000)
