#!/usr/bin/env bash
# Runs every Fuzz* target in the module for the given time each (default 5m).
# Usage: scripts/fuzz.sh [DURATION] [PACKAGE-PATTERN]
#
# A target fails when it finds a crasher (written to testdata/fuzz/<target>/).
# Go 1.26's fuzz coordinator can also fail a target with "context deadline
# exceeded" at the end of -fuzztime without any crasher (a race in
# internal/fuzz, go.dev/issue/75804, fixed in Go 1.27); that is reported and
# not counted as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-5m}
pattern=${2:-./...}
failed=0
crashers() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
for pkg in $(go list "$pattern"); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for fn in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "== fuzz $pkg $fn for $time"
		corpus="$dir/testdata/fuzz/$fn"
		before=$(crashers "$corpus")
		log=$(mktemp)
		if go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$time" "$pkg" 2>&1 | tee "$log"; then
			rm -f "$log"
			continue
		fi
		after=$(crashers "$corpus")
		if [ "$after" -eq "$before" ] && grep -q '^    context deadline exceeded$' "$log"; then
			echo "== fuzz $pkg $fn: ended by the coordinator's deadline race (go.dev/issue/75804), no crasher: not a failure"
		else
			echo "== fuzz $pkg $fn: FAILED (see $corpus)"
			failed=1
		fi
		rm -f "$log"
	done
done
# The C libraries' answer parser (agent/clib), with its own mutation fuzzer
# under AddressSanitizer and UBSan.
if go list "$pattern" | grep -qx 'github.com/qtenclave/enclave/agent/clib'; then
	echo "== fuzz agent/clib fuzz_answers for $time"
	if ! QTSM_CFUZZ_TIME="$time" go test -count=1 -run='^TestFuzzAnswers$' -v ./agent/clib/; then
		echo "== fuzz agent/clib fuzz_answers: FAILED"
		failed=1
	fi
fi
exit $failed
