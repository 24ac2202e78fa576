# Sourced by the benchmarks that boot EIFs (tcg-probe.sh, init-vs-c.sh):
# sets kdir (the enclave kernel's cache directory), qemu (qemu-system-x86_64),
# building them when not cached, and tmp, a work directory with an empty
# root/ that is removed on exit. Run from the repository's root.
kdir=${QTENCLAVE_KERNEL_DIR:-$(scripts/build-kernel.sh | tail -n 1)}
qemu=${QTENCLAVE_QEMU:-$(scripts/build-qemu.sh | tail -n 1)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root"
