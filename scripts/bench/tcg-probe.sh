#!/usr/bin/env bash
# Boots scripts/bench/tcgprobe as PID 1 under QEMU's TCG (qtenclave run) and
# prints what common operations cost the first time and again in the same
# boot: the ratio is QEMU's translation of code that runs for the first
# time, which dominates init's wall-clock boot time under TCG.
#
# Usage: scripts/bench/tcg-probe.sh [BOOTS]   (default 1)
# Needs the cached kernel and QEMU (scripts/build-kernel.sh, scripts/build-qemu.sh)
# and bin/qtenclave (make build).
set -euo pipefail
cd "$(dirname "$0")/../.."
boots=${1:-1}
. scripts/bench/boot-lib.sh
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$tmp/tcgprobe" ./scripts/bench/tcgprobe
cp "$tmp/tcgprobe" "$tmp/root/app"
kmod=()
[ -f "$kdir/nsm.ko" ] && kmod=(--kmod "$kdir/nsm.ko")
bin/qtenclave build --image "dir:$tmp/root" --entrypoint /app --kernel "$kdir/bzImage" "${kmod[@]}" \
	--init "$tmp/tcgprobe" -o "$tmp/probe.eif" >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
for i in $(seq "$boots"); do
	bin/qtenclave run --qemu "$qemu" --timeout 60s "$tmp/probe.eif" 2>&1 | tr -d '\r' | grep '^tcgprobe:' || true
done
