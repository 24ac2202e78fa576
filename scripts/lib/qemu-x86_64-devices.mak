# QEMU device set for scripts/build-qemu.sh (copied into the source as
# configs/devices/x86_64-softmmu/qtenclave.mak; configure --without-default-devices
# --with-devices-x86_64=qtenclave). Only the boards the project boots, and what they select:
#   nitro-enclave  EIF loader, virtio-nsm, vhost-user-vsock on virtio-mmio (built on microvm)
#   microvm        plus the standalone virtio-mmio devices for kernel smoke boots
# Everything that is not selected by these (PCI devices, q35, i440fx, ISA PC) stays out.
CONFIG_PCI_DEVICES=n
CONFIG_MICROVM=y
CONFIG_NITRO_ENCLAVE=y
CONFIG_VIRTIO_RNG=y
