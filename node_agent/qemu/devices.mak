# The devices Corral's QEMU is built with: the microvm machine and the virtio-mmio
# devices node_agent/vmm.py attaches, nothing else (no PCI, no PC machines).
CONFIG_PCI_DEVICES=n
CONFIG_MICROVM=y
CONFIG_VIRTIO_MMIO=y
CONFIG_VIRTIO_BLK=y
CONFIG_VIRTIO_SERIAL=y
CONFIG_VIRTIO_RNG=y
CONFIG_VIRTIO_NET=y
CONFIG_VIRTIO_9P=y
