#!/usr/bin/env bash
# Benchmarks the rootfs ramdisk writer on generated images of ~20 MB and
# ~200 MB (uncompressed): throughput as a ratio to sha384sum of the same
# ramdisk bytes (measured in the same run), and peak RSS of mkimage and of
# the ramdisk command (/usr/bin/time -v). The goal: ramdisk peak RSS does
# not grow with image size.
#
# Usage: scripts/bench/rootfs-bench.sh [SIZES_MB...]   (default: 20 200)
# Needs: go, sha384sum, /usr/bin/time (installed with apt-get when root).
set -euo pipefail
cd "$(dirname "$0")/../.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20 200)

if [ ! -x /usr/bin/time ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get install -y -qq time >/dev/null
	else
		echo "rootfs-bench: /usr/bin/time missing (apt-get install time)" >&2
		exit 1
	fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rootfs-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0
go build -trimpath -o "$work/mkimage" ./rootfs/cmd/mkimage
go build -trimpath -o "$work/ramdisk" ./rootfs/cmd/ramdisk

now() { date +%s.%N; }
# peak KB and CPU seconds (user + system) from a /usr/bin/time -v log
peak() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }
cpu() { awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", bytes / 1048576 / s; else print "inf" }'; }

# gen DIR MB: about MB MiB in files of 4 KiB..2 MiB, half random (does not
# compress), half repetitive text (compresses), plus hard links and symlinks.
gen() {
	local dir=$1 mb=$2 total=0 i=0 size
	mkdir -p "$dir/bin" "$dir/usr/lib" "$dir/etc"
	local limit=$((mb * 1048576))
	while [ $total -lt $limit ]; do
		size=$(( (i * 7919 % 512 + 1) * 4096 ))
		if [ $((i % 2)) = 0 ]; then
			head -c "$size" /dev/urandom >"$dir/usr/lib/f$i.so"
		else
			yes "line $i of a text file that compresses well" | head -c "$size" >"$dir/usr/lib/f$i.txt"
		fi
		total=$((total + size))
		i=$((i + 1))
	done
	printf '#!/bin/sh\necho hi\n' >"$dir/bin/app"
	chmod 755 "$dir/bin/app"
	ln "$dir/bin/app" "$dir/bin/app-hardlink"
	ln -s ../bin/app "$dir/etc/app-link"
	echo "$i"
}

printf '%-6s %-6s %6s %6s %9s %9s %7s %8s %8s %7s %12s %12s\n' size source files MB/s ramdisk_s sha384_s ratio cpu_rd_s cpu_sha_s cpu_x rss_ramdisk rss_mkimage
for mb in "${sizes[@]}"; do
	root="$work/root$mb"
	nfiles=$(gen "$root" "$mb")
	/usr/bin/time -v "$work/mkimage" -o "$work/layout$mb" -tag bench -entrypoint '["/bin/app"]' "$root" \
		>/dev/null 2>"$work/mkimage$mb.time"
	mk_rss=$(peak "$work/mkimage$mb.time")
	for src in oci dir; do
		case $src in
		oci) ref="oci:$work/layout$mb:bench" ;;
		dir) ref="dir:$root" ;;
		esac
		out="$work/out$mb-$src.cpio"
		t0=$(now)
		/usr/bin/time -v "$work/ramdisk" -o "$out" -cmd '["/bin/app"]' "$ref" 2>"$work/ramdisk$mb$src.time" >/dev/null
		t1=$(now)
		rss=$(peak "$work/ramdisk$mb$src.time")
		bytes=$(stat -c %s "$out")
		cat "$out" >/dev/null # page cache, as the writer's input was
		t2=$(now)
		/usr/bin/time -v sha384sum "$out" >/dev/null 2>"$work/sha$mb$src.time"
		t3=$(now)
		rd=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
		sh=$(awk -v a="$t2" -v b="$t3" 'BEGIN { printf "%.3f", b - a }')
		crd=$(cpu "$work/ramdisk$mb$src.time")
		csh=$(cpu "$work/sha$mb$src.time")
		printf '%-6s %-6s %6s %6s %9s %9s %7s %8s %8s %7s %10sKB %10sKB\n' "${mb}MB" "$src" "$nfiles" \
			"$(mbps "$bytes" "$rd")" "$rd" "$sh" "$(ratio "$rd" "$sh")x" "$crd" "$csh" "$(ratio "$crd" "$csh")x" "$rss" "$mk_rss"
		rm -f "$out"
	done
	rm -rf "$root" "$work/layout$mb"
done
echo "ratio = ramdisk wall time / sha384sum wall time over the same ramdisk bytes (lower is better);"
echo "cpu_x = the same ratio for CPU time (user + system), steadier on a busy machine;"
echo "oci reads gzip layers (decompression included), dir packs the directory directly."
