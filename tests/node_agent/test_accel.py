import pytest

from corral.node_agent.accel import HostFacts, choose

PVM = HostFacts(kvm_usable=True, hardware_virt=False, pvm=True)
REAL_KVM = HostFacts(kvm_usable=True, hardware_virt=True, pvm=False)
NO_KVM = HostFacts(kvm_usable=False, hardware_virt=False, pvm=False)


def test_pvm_host_with_stock_kernel_gets_tcg_and_says_why() -> None:
    choice = choose("auto", PVM, kernel_pvm=False)
    assert choice.accel == "tcg"
    assert "kvm_pvm" in choice.reason


def test_pvm_host_with_pvm_kernel_gets_kvm() -> None:
    assert choose("auto", PVM, kernel_pvm=True).accel == "kvm"


def test_real_kvm_host() -> None:
    assert choose("auto", REAL_KVM, kernel_pvm=False).accel == "kvm"


def test_no_kvm() -> None:
    assert choose("auto", NO_KVM, kernel_pvm=False).accel == "tcg"


def test_requesting_kvm_where_it_cannot_work_is_an_error() -> None:
    with pytest.raises(ValueError, match="kvm_pvm"):
        choose("kvm", PVM, kernel_pvm=False)
    with pytest.raises(ValueError, match="missing"):
        choose("kvm", NO_KVM, kernel_pvm=False)


def test_tcg_can_always_be_requested() -> None:
    assert choose("tcg", REAL_KVM, kernel_pvm=False).accel == "tcg"
