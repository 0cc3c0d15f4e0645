"""Kernel variants: the module load order for a stock kernel's initramfs, and choosing a
variant (and the QEMU) from the assets manifest."""

import json
import struct
from pathlib import Path

import pytest

from corral._errors import BootError
from corral.node_agent.assets import Assets
from corral.node_agent.provision import bzimage_payload, module_load_order, module_name

# Shaped like Debian's: each line lists a module's whole dependency closure, not in an
# order to load it (virtio_blk names virtio before virtio_ring, which virtio needs).
MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/overlayfs/overlay.ko:
"""  # noqa: E501
MODULES_BUILTIN = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\nkernel/lib/crc16.ko\n"


def short(paths: list[str]) -> list[str]:
    return [module_name(path) for path in paths]


def test_dependencies_load_first_and_each_module_once() -> None:
    order = module_load_order(MODULES_DEP, MODULES_BUILTIN, ["virtio_mmio", "virtio_blk"])
    assert short(order) == ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"]
    assert order[2] == "kernel/drivers/virtio/virtio_mmio.ko"


def test_a_dependency_of_a_dependency_comes_before_both() -> None:
    order = short(module_load_order(MODULES_DEP, "", ["virtio_net"]))
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")


def test_built_in_modules_are_skipped_and_dashes_match_underscores() -> None:
    order = module_load_order(MODULES_DEP, MODULES_BUILTIN, ["ext4", "virtio_rng", "overlay"])
    assert order == [
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/char/hw_random/virtio-rng.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ]
    assert module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz") == "virtio_rng"


def test_a_module_the_kernel_lacks_is_named() -> None:
    with pytest.raises(ValueError, match="9p"):
        module_load_order(MODULES_DEP, MODULES_BUILTIN, ["virtio_blk", "9p"])


def test_a_dependency_without_its_own_line_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"virtio_ring\.ko"):
        module_load_order("kernel/virtio.ko: kernel/virtio_ring.ko\n", "", ["virtio"])


def test_the_compressed_kernel_is_found_through_the_bzimage_header() -> None:
    setup_sects, offset = 3, 100
    stream = b"\x02\x21\x4c\x18compressed"
    payload = stream + struct.pack("<I", 4096)  # the build appends the decompressed size
    image = bytearray((setup_sects + 1) * 512 + offset) + payload + b"trailer"
    image[0x1F1] = setup_sects
    struct.pack_into("<II", image, 0x248, offset, len(payload))
    assert bzimage_payload(bytes(image)) == (stream, 4096)


def write_assets(root: Path, with_variants: bool = True) -> Path:
    for name in ("vmlinux", "initramfs.cpio", "vmlinuz", "cloud.cpio", "rootfs"):
        (root / name).touch()
    manifest: dict[str, object] = {
        "kernel": str(root / "vmlinux"),
        "kernel_version": "6.1.192",
        "kernel_pvm": False,
        "initramfs": str(root / "initramfs.cpio"),
        "default_image": str(root / "rootfs"),
        "tsc_khz": 2100000,
    }
    if with_variants:
        cloud = {"kernel": str(root / "vmlinuz"), "initramfs": str(root / "cloud.cpio"),
                 "version": "6.1.0-56-cloud-amd64", "pvm": False, "acpi": True,
                 "args": ["cryptomgr.notests"]}  # fmt: skip
        manifest["kernels"] = {"debian-cloud": cloud}
    (root / "current.json").write_text(json.dumps(manifest))
    return root


def test_a_variant_name_selects_its_kernel_and_initramfs(tmp_path: Path) -> None:
    assets = Assets.load(write_assets(tmp_path), "debian-cloud")
    assert (assets.kernel, assets.initramfs) == (tmp_path / "vmlinuz", tmp_path / "cloud.cpio")
    assert assets.kernel_acpi and assets.kernel_version == "6.1.0-56-cloud-amd64"
    assert assets.kernel_args == ("cryptomgr.notests",)
    default = Assets.load(tmp_path)
    assert (default.kernel, default.initramfs) == (
        tmp_path / "vmlinux",
        tmp_path / "initramfs.cpio",
    )
    assert not default.kernel_acpi and not default.kernel_args
    assert default.kernel_name == "corral"
    assert list(default.kernels) == ["corral", "debian-cloud"]


def test_a_path_is_a_custom_kernel_with_the_default_initramfs(tmp_path: Path) -> None:
    custom = tmp_path / "bzImage"
    custom.touch()
    assets = Assets.load(write_assets(tmp_path), str(custom))
    assert (assets.kernel, assets.initramfs) == (custom, tmp_path / "initramfs.cpio")
    assert not assets.kernel_pvm and not assets.kernel_acpi


def test_an_unknown_name_lists_the_known_variants(tmp_path: Path) -> None:
    with pytest.raises(BootError, match=r"unknown kernel 'ubuntu'.*corral, debian-cloud"):
        Assets.load(write_assets(tmp_path), "ubuntu")


def test_a_manifest_from_before_variants_still_has_the_default(tmp_path: Path) -> None:
    assets = Assets.load(write_assets(tmp_path, with_variants=False))
    assert assets.kernel == tmp_path / "vmlinux" and list(assets.kernels) == ["corral"]
    with pytest.raises(BootError, match="debian-cloud"):
        Assets.load(tmp_path, "debian-cloud")


def test_the_manifest_names_the_qemu_to_run(tmp_path: Path) -> None:
    write_assets(tmp_path)
    assert Assets.load(tmp_path).qemu is None  # a manifest without a build: PATH's QEMU
    manifest = json.loads((tmp_path / "current.json").read_text())
    built = tmp_path / "qemu" / "bin" / "qemu-system-x86_64"
    manifest["qemu"] = str(built)
    (tmp_path / "current.json").write_text(json.dumps(manifest))
    with pytest.raises(BootError, match=f"boot asset {built} is missing"):
        Assets.load(tmp_path)
    built.parent.mkdir(parents=True)
    built.touch()
    assert Assets.load(tmp_path, "debian-cloud").qemu == built
