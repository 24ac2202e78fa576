#!/usr/bin/env bash
# Runs every Fuzz* target in the module for the given time each (default 5m).
# Usage: scripts/fuzz.sh [DURATION] [PACKAGE-PATTERN]
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-5m}
pattern=${2:-./...}
for pkg in $(go list "$pattern"); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== fuzz $pkg $fn for $time"
		go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$time" "$pkg"
	done
done
