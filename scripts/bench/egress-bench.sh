#!/usr/bin/env bash
# The egress path's figures, each against a baseline measured in the same run
# (parent/proxy TestEgressLoad): bulk throughput through the parent's tunnel
# server and through the whole path (qtsm-agent's proxy, its tunnels over loopback
# TCP standing in for vsock, the tunnel server) vs a direct loopback TCP copy;
# short tunnels per second vs direct connections; 200 tunnels at once (lost or
# corrupted streams, the companion's RSS). Usage: scripts/bench/egress-bench.sh [MiB]
set -euo pipefail
cd "$(dirname "$0")/../.."
QTENCLAVE_EGRESS_LOAD=1 QTENCLAVE_EGRESS_MIB="${1:-512}" go test -count=1 -run '^TestEgressLoad$' -v ./parent/proxy/
