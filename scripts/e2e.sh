#!/usr/bin/env bash
# End-to-end boot: installs what it needs (scripts/deps.sh), builds (cached) the enclave
# kernel and QEMU with the nitro-enclave machine, builds the project's binaries, then boots
# the demo EIF under QEMU (TCG, no KVM) through `qtenclave run` and checks every step
# (package e2e). Usage: scripts/e2e.sh [go test flags...]
#   QTENCLAVE_E2E_BOOTS=N  boots the demo image N times (reports median and max)
# Console logs of failed boots are kept in out/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'e2e: %s\n' "$*" >&2; }
t0=$(date +%s)

if [ "$(id -u)" = 0 ]; then
	scripts/deps.sh
else
	log "not root: skipping scripts/deps.sh (packages must already be installed)"
fi
kdir=$(scripts/build-kernel.sh x86_64 | tail -n 1)
log "kernel: $kdir"
qemu=$(scripts/build-qemu.sh | tail -n 1)
log "qemu: $qemu"
make --no-print-directory build
t1=$(date +%s)
log "artifacts ready in $((t1 - t0))s"

QTENCLAVE_E2E=1 QTENCLAVE_KERNEL_DIR="$kdir" QTENCLAVE_QEMU="$qemu" QTENCLAVE_BIN="$PWD/bin" \
	go test -count=1 -v -timeout 60m ./e2e/ "$@"
log "done in $(($(date +%s) - t0))s (boots $(($(date +%s) - t1))s)"
