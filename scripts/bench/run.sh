#!/usr/bin/env bash
# Every benchmark that needs more than `go test -bench`: each reports ratios against a
# baseline measured in the same run (sha384sum of the same bytes, in-process calls).
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "== rootfs: ramdisk vs sha384sum, peak RSS 20 vs 200 MB"
scripts/bench/rootfs-bench.sh
echo "== eif: qtenclave build/pcrs vs sha384sum, peak RSS 20 vs 200 MB"
scripts/bench/eif-bench.sh 20 200
echo "== agent: 200 clients x 50,000 requests against the simulator"
QTSM_LOAD=1 go test -count=1 -run '^TestLoad$' -v ./agent/
echo "== TCG: first-time vs repeated cost of boot operations (a PID-1 probe under qtenclave run)"
scripts/bench/tcg-probe.sh
echo "== init's own time vs a minimal C init making the same kernel calls, under TCG"
scripts/bench/init-vs-c.sh
echo "== egress: the parent's tunnel server and the whole path vs a direct loopback copy; 200 tunnels"
scripts/bench/egress-bench.sh
