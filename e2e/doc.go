// Package e2e boots real enclave images under QEMU's nitro-enclave machine
// and checks the whole chain: image in -> rootfs -> ramdisks -> EIF -> boot
// -> init -> agent + workload -> exit status at the parent.
//
// The tests run only when QTENCLAVE_E2E=1 and need the artifacts that
// scripts/e2e.sh builds (cached): the enclave kernel and nsm module
// (QTENCLAVE_KERNEL_DIR), QEMU with nitro-enclave (QTENCLAVE_QEMU) and the
// project's binaries (QTENCLAVE_BIN, default ./bin). `make e2e` runs them.
// Each boot's console is kept under out/e2e/ (QTENCLAVE_E2E_OUT) so a
// failure can be read afterwards.
package e2e
