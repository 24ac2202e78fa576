#!/usr/bin/env bash
# Benchmarks `qtenclave build` (EIF writer + rootfs + bootstrap) and
# `qtenclave pcrs` (EIF reader/validator) on generated dir: images of ~20 MB
# and ~200 MB of random (incompressible) files, against sha384sum of the
# produced EIF (the same bytes, page-cached, measured in the same run):
#
#   ratio = wall time / sha384sum wall time       (goal: build within 2x)
#   cpu   = (user+sys) time / sha384sum (user+sys)
#   rss   = peak RSS from /usr/bin/time -v         (goal: < 100 MB, not growing)
#
# Each measurement is the best of RUNS (default 3) runs. Building hashes the
# measured bytes twice (PCR0, and PCR1 or PCR2) on two goroutines, computes
# the CRC and writes the file, so on an idle machine with two cores the wall
# ratio approaches 1x while the cpu ratio stays above 2x. On a loaded machine
# wall times are noisy: the load average is printed with the results.
#
# Usage: scripts/bench/eif-bench.sh [SIZES_MB...]   (default: 20 200)
# Environment: RUNS (default 3), TMPDIR (work directory; the output and the
# rootfs spool go there).
# Needs: go, sha384sum, /usr/bin/time (installed with apt-get when root).
set -euo pipefail
cd "$(dirname "$0")/../.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20 200)
runs=${RUNS:-3}

if [ ! -x /usr/bin/time ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get install -y -qq time >/dev/null
	else
		echo "eif-bench: /usr/bin/time missing (apt-get install time)" >&2
		exit 1
	fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/eif-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$work/qtenclave" ./image/cmd/qtenclave
# Stand-ins for init and qtsm-agent: any static x86_64 ELF will do (the
# qtenclave binary itself); a random 8 MiB "kernel".
head -c $((8 << 20)) /dev/urandom >"$work/kernel"

# timed LOG CMD...: runs CMD under /usr/bin/time -v, output discarded.
timed() {
	local log=$1
	shift
	/usr/bin/time -v "$@" >/dev/null 2>"$log"
}
field() { awk -F': ' -v k="$2" '$1 ~ k {print $2}' "$1"; }
# wall seconds from "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.23"
wall() { field "$1" "Elapsed" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.3f", s }'; }
cpu() { awk -v u="$(field "$1" "User time")" -v s="$(field "$1" "System time")" 'BEGIN { printf "%.3f", u + s }'; }
rss() { field "$1" "Maximum resident set size"; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "inf" }'; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, best of $runs runs"
printf '%-6s %-6s %9s %8s %8s %8s %8s %8s %10s\n' size step eif_MB wall_s cpu_s sha_wall sha_cpu ratio "cpu_ratio rss_MB"
for mb in "${sizes[@]}"; do
	root="$work/root$mb"
	mkdir -p "$root/data" "$root/bin"
	for i in $(seq 1 "$mb"); do head -c $((1 << 20)) /dev/urandom >"$root/data/f$i"; done
	printf '#!/bin/sh\n' >"$root/bin/app"
	chmod 755 "$root/bin/app"
	out="$work/out$mb.eif"
	bw="" bc="" br=0 pw="" pc="" pr=0 sw="" sc=""
	for r in $(seq 1 "$runs"); do
		rm -f "$out"
		timed "$work/b.log" "$work/qtenclave" build --image "dir:$root" --kernel "$work/kernel" \
			--init "$work/qtenclave" --agent "$work/qtenclave" --cmd /bin/app -o "$out"
		bw=$(min "$bw" "$(wall "$work/b.log")") bc=$(min "$bc" "$(cpu "$work/b.log")")
		br=$(awk -v a="$br" -v b="$(rss "$work/b.log")" 'BEGIN { print (b > a) ? b : a }')
		timed "$work/p.log" "$work/qtenclave" pcrs "$out"
		pw=$(min "$pw" "$(wall "$work/p.log")") pc=$(min "$pc" "$(cpu "$work/p.log")")
		pr=$(awk -v a="$pr" -v b="$(rss "$work/p.log")" 'BEGIN { print (b > a) ? b : a }')
		timed "$work/s.log" sha384sum "$out"
		sw=$(min "$sw" "$(wall "$work/s.log")") sc=$(min "$sc" "$(cpu "$work/s.log")")
	done
	size=$(awk -v b="$(stat -c %s "$out")" 'BEGIN { printf "%.1f", b / 1048576 }')
	printf '%-6s %-6s %9s %8s %8s %8s %8s %8s %10s %6s\n' "${mb}MB" build "$size" "$bw" "$bc" "$sw" "$sc" \
		"$(ratio "$bw" "$sw")" "$(ratio "$bc" "$sc")" "$((br / 1024))"
	printf '%-6s %-6s %9s %8s %8s %8s %8s %8s %10s %6s\n' "${mb}MB" pcrs "$size" "$pw" "$pc" "$sw" "$sc" \
		"$(ratio "$pw" "$sw")" "$(ratio "$pc" "$sc")" "$((pr / 1024))"
	rm -rf "$root" "$out"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
