#!/usr/bin/env bash
# Verifies that a kernel .config honours config fragments: kconfig silently drops options
# whose dependencies are unmet, so after `make olddefconfig` every line of every fragment
# must still be there.
#   CONFIG_X=y|m|N|"s"   .config must hold exactly that line
#   # CONFIG_X is not set  .config must not set CONFIG_X to y or m
# Usage: scripts/check-kernel-config.sh .config FRAGMENT...
# Exit 0 when all lines hold, 1 (listing every offender) otherwise, 2 on usage errors.
set -euo pipefail

if [[ $# -lt 2 ]]; then
	echo "usage: $0 .config FRAGMENT..." >&2
	exit 2
fi
config=$1
shift
[[ -r $config ]] || {
	echo "check-kernel-config: cannot read $config" >&2
	exit 2
}

declare -A have
while IFS= read -r line; do
	if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
		have[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
	fi
done <"$config"

fail=0 checked=0
for frag in "$@"; do
	n=0
	while IFS= read -r line || [[ -n $line ]]; do
		n=$((n + 1))
		line=${line%%[[:space:]]}
		if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			sym=${BASH_REMATCH[1]} want=${BASH_REMATCH[2]}
			got=${have[$sym]-<not set>}
			checked=$((checked + 1))
			if [[ $got != "$want" ]]; then
				echo "check-kernel-config: $frag:$n: $sym=$want requested, .config has $got" >&2
				fail=1
			fi
		elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			sym=${BASH_REMATCH[1]}
			got=${have[$sym]-}
			checked=$((checked + 1))
			if [[ $got == y || $got == m ]]; then
				echo "check-kernel-config: $frag:$n: $sym must be unset, .config has $sym=$got" >&2
				fail=1
			fi
		elif [[ $line =~ ^[[:space:]]*(#|$) ]]; then
			continue
		else
			echo "check-kernel-config: $frag:$n: cannot parse: $line" >&2
			fail=1
		fi
	done <"$frag"
done

if [[ $fail != 0 ]]; then
	echo "check-kernel-config: FAILED: $config does not honour the fragments (unmet dependencies?)" >&2
	exit 1
fi
echo "check-kernel-config: ok, $checked fragment lines hold in $config"
