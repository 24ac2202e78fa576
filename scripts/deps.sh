#!/usr/bin/env bash
# Installs, with apt-get, everything the kernel and QEMU builds and the QEMU boots need
# on a plain Debian 12 (bookworm) machine. Idempotent: when every package is already
# installed (checked with dpkg-query first) it returns at once without touching apt.
#
# Usage: scripts/deps.sh [--arm64]     (root; --arm64 adds the aarch64 cross compiler)
#
# Apt sources it adds, in a file of its own (/etc/apt/sources.list.d/qtenclave.sources):
#   deb + deb-src bookworm-backports  meson >= 1.5 (QEMU 10 needs it), qemu-system-data 10
#   deb-src bookworm, trixie          apt-get source qemu (scripts/build-qemu.sh)
# Only binary packages from bookworm(-security) and bookworm-backports are installed;
# trixie is used for source packages only, so the system never mixes releases.
set -euo pipefail

SOURCES=/etc/apt/sources.list.d/qtenclave.sources
MIRROR=${QTENCLAVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Binary packages from the default suites (bookworm + bookworm-security).
PKGS=(
	# kernel build
	build-essential flex bison bc libelf-dev libssl-dev cpio xz-utils kmod
	# apt-get source / dpkg-source
	dpkg-dev
	# QEMU build (configure with --without-default-features, see scripts/build-qemu.sh)
	python3 python3-venv ninja-build pkg-config libglib2.0-dev libpixman-1-dev zlib1g-dev
	libcbor-dev libgnutls28-dev libfdt-dev
	# running things: GNU time, timeout (coreutils); openssl for the KMS envelope's cross-checks
	time coreutils openssl
)
# Binary packages taken from bookworm-backports: name -> minimum acceptable version.
declare -A BPO=(
	[meson]=1.5.0
	[qemu-system-data]=1:10.0.0
	[seabios]=1.16.3
)

want_arm64=0
for a in "$@"; do
	case $a in
	--arm64) want_arm64=1 ;;
	-h | --help)
		sed -n '2,12p' "$0"
		exit 0
		;;
	*)
		echo "deps.sh: unknown argument $a" >&2
		exit 2
		;;
	esac
done
if [[ $want_arm64 == 1 ]]; then
	PKGS+=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu)
fi

log() { echo "deps: $*"; }

# One dpkg-query for every package: status[NAME]="installed VERSION".
declare -A status
load_status() {
	status=()
	local name st ver
	while read -r name st ver; do
		status[${name%%:*}]="$st $ver"
	done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' "${PKGS[@]}" "${!BPO[@]}" 2>/dev/null || true)
}

# installed NAME [MINVERSION] -> 0 when NAME is installed (and >= MINVERSION).
installed() {
	local v=${status[$1]-}
	[[ $v == installed\ * ]] || return 1
	[[ -z ${2:-} ]] && return 0
	dpkg --compare-versions "${v#installed }" ge "$2"
}

want_sources() {
	cat <<EOF
# Written by qtenclave scripts/deps.sh; delete this file to undo.
Types: deb deb-src
URIs: $MIRROR
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: $MIRROR
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

load_status
missing=()
for p in "${PKGS[@]}"; do
	installed "$p" || missing+=("$p")
done
missing_bpo=()
for p in "${!BPO[@]}"; do
	installed "$p" "${BPO[$p]}" || missing_bpo+=("$p")
done

sources_ok=0
if [[ -f $SOURCES ]] && [[ "$(cat "$SOURCES")" == "$(want_sources)" ]]; then
	sources_ok=1
fi

if [[ ${#missing[@]} == 0 && ${#missing_bpo[@]} == 0 && $sources_ok == 1 ]]; then
	log "all ${#PKGS[@]}+${#BPO[@]} packages present, apt sources in place: nothing to do"
	exit 0
fi

if [[ $(id -u) != 0 ]]; then
	echo "deps.sh: must run as root to install: ${missing[*]} ${missing_bpo[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive

if [[ $sources_ok == 0 ]]; then
	log "writing $SOURCES (bookworm-backports deb+deb-src; bookworm, trixie deb-src)"
	want_sources >"$SOURCES.tmp"
	mv "$SOURCES.tmp" "$SOURCES"
fi
log "apt-get update"
apt-get update -q >/dev/null

if [[ ${#missing[@]} != 0 ]]; then
	log "apt-get install ${missing[*]}"
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [[ ${#missing_bpo[@]} != 0 ]]; then
	log "apt-get install -t bookworm-backports ${missing_bpo[*]}"
	apt-get install -y -q --no-install-recommends -t bookworm-backports "${missing_bpo[@]}"
fi

# Verify: everything must be there now.
load_status
bad=0
for p in "${PKGS[@]}"; do
	installed "$p" || {
		echo "deps.sh: $p still not installed" >&2
		bad=1
	}
done
for p in "${!BPO[@]}"; do
	installed "$p" "${BPO[$p]}" || {
		echo "deps.sh: $p >= ${BPO[$p]} still not installed" >&2
		bad=1
	}
done
[[ $bad == 0 ]] || exit 1
log "done"
