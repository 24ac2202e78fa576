#!/usr/bin/env bash
# init's own time under QEMU's TCG against a baseline measured in the same
# run: scripts/bench/cinit, a minimal static C PID 1 that makes the same
# kernel calls in the same order (devtmpfs, console, /proc/cmdline,
# finit_module nsm.ko, GetRandom -> RNDADDENTROPY, heartbeat, /cmd, switch
# root, the mounts, lo, hostname, /etc/hosts, rlimits, vfork+exec) without
# the Go runtime. Both boot the same kernel and the same tiny static
# workload, without qtsm-agent, interleaved; each prints its "own time"
# (start to the workload's exec, heartbeat excluded).
#
# The C figure is what the boot contract itself costs under TCG on this
# host; the ratio is what Go adds.
#
# Usage: scripts/bench/init-vs-c.sh [BOOTS]   (default 5)
# Needs gcc with static glibc (scripts/deps.sh), the cached kernel and QEMU,
# and bin/init and bin/qtenclave (make build).
set -euo pipefail
cd "$(dirname "$0")/../.."
boots=${1:-5}
. scripts/bench/boot-lib.sh
gcc -static -O2 -Wall -o "$tmp/cinit" scripts/bench/cinit/cinit.c
printf '#include <unistd.h>\nint main(void) { return write(1, "workload: ok\\n", 13) != 13; }\n' >"$tmp/app.c"
gcc -static -O2 -o "$tmp/root/app" "$tmp/app.c"
for v in go c; do
	init=bin/init
	[ $v = c ] && init=$tmp/cinit
	bin/qtenclave build --image "dir:$tmp/root" --entrypoint /app --kernel "$kdir/bzImage" --kmod "$kdir/nsm.ko" \
		--init "$init" --no-agent -o "$tmp/$v.eif" >/dev/null
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, $boots boots each, interleaved"
for i in $(seq "$boots"); do
	for v in go c; do
		t=$(bin/qtenclave run --qemu "$qemu" --timeout 60s "$tmp/$v.eif" 2>&1 | tr -d '\r' |
			sed -n 's/^c\{0,1\}init: own time \([0-9.]*\)ms.*/\1/p')
		echo "$v ${t:-fail}"
	done
done | awk '
	{ t[$1] = t[$1] " " $2; v[$1, ++n[$1]] = $2 }
	function median(k,   i, j, a, m, x) {
		m = n[k]; for (i = 1; i <= m; i++) a[i] = v[k, i]
		for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
		return a[int((m + 1) / 2)]
	}
	END {
		g = median("go"); c = median("c")
		printf "init (Go) own time, ms:  %s   median %s\n", t["go"], g
		printf "cinit (C) own time, ms:  %s   median %s\n", t["c"], c
		if (c > 0) printf "ratio init / cinit: %.2fx\n", g / c
	}'
