#!/usr/bin/env bash
# Smoke-boots the project's guest kernel under the project's QEMU (microvm, TCG) with a
# virtio-nsm device and a throwaway initramfs whose /init is scripts/smoke/init: it loads
# the nsm module with finit_module, talks to /dev/nsm through package qtsm (Describe,
# DescribePCR, GetRandom), checks vsock loopback and reboots. Proves kernel + module +
# QEMU + qtsm device code together; needs no EIF and no vsock backend.
#
# Usage: scripts/smoke-kernel.sh [xz|ko] [BOOTS]
#   xz (default) loads /nsm.ko.xz with MODULE_INIT_COMPRESSED_FILE, ko loads /nsm.ko
#   BOOTS        boot that many times (default 1); every boot must print SMOKE OK
# Builds (or takes from the cache) the kernel and QEMU first. Exit 0 on success.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
variant=${1:-xz}
boots=${2:-1}
case $variant in xz | ko) ;; *)
	echo "usage: $0 [xz|ko] [BOOTS]" >&2
	exit 2
	;;
esac

kdir=$("$here/build-kernel.sh" x86_64 | tail -1)
qemu=$("$here/build-qemu.sh" | tail -1)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root"
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
	-o "$tmp/root/init" ./scripts/smoke/init)
if [[ $variant == xz ]]; then
	cp "$kdir/nsm.ko.xz" "$tmp/root/"
else
	cp "$kdir/nsm.ko" "$tmp/root/"
fi
# The kernel's built-in initramfs already has /dev/console; this archive is unpacked on top.
(cd "$tmp/root" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc --reproducible -R 0:0) >"$tmp/initrd.cpio"

# TSC calibration under TCG can hang microvm boots: tell the kernel the host's rate.
khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
# tsc=reliable: TCG's TSC follows the host clock, but on a loaded host the clocksource
# watchdog (driven by late timer ticks) calls it skewed and falls back to jiffies.
# nomodules: AWS's cmdline word, not a kernel parameter (the kernel's is nomodule); it
# reaches init as argv[1] and must not stop the module from loading.
cmdline="console=ttyS0 reboot=t panic=-1 tsc=reliable nomodules${khz:+ tsc_early_khz=$khz}"

ok=0
for i in $(seq 1 "$boots"); do
	start=$(date +%s.%N)
	set +e
	timeout 120 "$qemu" -L /usr/share/seabios -L /usr/share/qemu \
		-M microvm,acpi=off -accel tcg -smp 2 -m 512 \
		-nographic -nic none -no-reboot \
		-kernel "$kdir/bzImage" -initrd "$tmp/initrd.cpio" \
		-device virtio-nsm-device \
		-append "$cmdline" </dev/null >"$tmp/console.log" 2>&1
	rc=$?
	set -e
	secs=$(echo "$(date +%s.%N) - $start" | bc)
	if [[ $boots == 1 ]]; then
		tr -d '\r' <"$tmp/console.log"
	fi
	if [[ $rc == 0 ]] && grep -q '^SMOKE OK' "$tmp/console.log"; then
		ok=$((ok + 1))
		printf 'smoke-kernel: boot %d/%d ok in %.2f s\n' "$i" "$boots" "$secs"
	else
		[[ $boots == 1 ]] || tr -d '\r' <"$tmp/console.log"
		printf 'smoke-kernel: boot %d/%d FAILED (qemu exit %d, %.2f s)\n' "$i" "$boots" "$rc" "$secs"
	fi
done
echo "smoke-kernel: $ok/$boots boots printed SMOKE OK (nsm.$variant, $kdir, $qemu)"
[[ $ok == "$boots" ]]
