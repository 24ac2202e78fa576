#!/usr/bin/env bash
# Builds qemu-system-x86_64 with the nitro-enclave machine and the virtio-nsm device from
# Debian's own QEMU 10.0 source package (Debian's binary QEMU lacks libcbor, so has neither).
# Only x86_64-softmmu, TCG (+KVM when the host has it), the microvm and nitro-enclave boards
# (scripts/lib/qemu-x86_64-devices.mak), libcbor, gnutls, system libfdt, vhost-user.
#
# Usage: scripts/build-qemu.sh [--force]
#   --force  rebuild even when cached (replaces the cached binary)
#
# Output: ${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave}/qemu/<key>/bin/qemu-system-x86_64
#   key = sha256(source package version, configure arguments, device list, this script,
#   compiler version). The last line printed is the binary's path.
# Firmware comes from Debian's seabios and qemu-system-data packages: the binary searches
# /usr/share/qemu and /usr/share/seabios; `-L /usr/share/seabios -L /usr/share/qemu` works too.
# Environment: QTENCLAVE_CACHE, JOBS (default 2), QTENCLAVE_QEMU_VERSION (another version of
# Debian's qemu source package than the pinned one). Needs scripts/deps.sh.
# Configure runs with Debian's /usr/bin/python3 (whose meson deps.sh installs), not whatever
# python3 comes first in PATH (pyenv and the like lack meson).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

PKG=qemu
# Pinned source: Debian trixie's QEMU 10.0 stable (bookworm-backports serves 10.0.2).
# Another 1:10.0.x version is used, with a warning, only when apt no longer has it.
PIN_VERSION=1:10.0.13+ds-0+deb13u1
DEVICES=$here/lib/qemu-x86_64-devices.mak
CONF=(
	--python=/usr/bin/python3
	--prefix=/usr
	--firmwarepath=/usr/share/qemu:/usr/share/seabios
	--disable-relocatable
	--target-list=x86_64-softmmu
	--without-default-features
	--without-default-devices
	--with-devices-x86_64=qtenclave
	--enable-tcg
	--enable-kvm
	--enable-libcbor
	--enable-gnutls
	--enable-fdt=system
	--enable-vhost-user
	--enable-pixman
	--disable-docs
	--disable-werror
	--disable-tools
	--disable-install-blobs
	--disable-download
	--disable-debug-info
	--audio-drv-list=
)
export LC_ALL=C TZ=UTC SOURCE_DATE_EPOCH=0

force=0
for a in "$@"; do
	case $a in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,17p' "$0"
		exit 0
		;;
	*)
		echo "build-qemu.sh: unknown argument $a" >&2
		exit 2
		;;
	esac
done

cache=${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave}/qemu
jobs=${JOBS:-2}

log() { echo "build-qemu: $*" >&2; }
die() {
	echo "build-qemu: error: $*" >&2
	exit 1
}

for t in cc ninja meson pkg-config /usr/bin/python3 dpkg-source; do
	command -v "$t" >/dev/null || die "$t not found: run scripts/deps.sh (as root) first"
done

key() {
	{
		echo "version=$1"
		printf '%s\n' "${CONF[@]}"
		cat "$DEVICES" "$here/build-qemu.sh"
		cc --version | head -1
	} | sha256sum | cut -c1-16
}

# check BINARY -> 0 when it has what the project needs.
check() {
	local b=$1
	"$b" -machine help | grep -q '^nitro-enclave ' || {
		log "$b -machine help lacks nitro-enclave"
		return 1
	}
	"$b" -device help | grep -q '"virtio-nsm-device"' || {
		log "$b -device help lacks virtio-nsm-device"
		return 1
	}
	"$b" -device help | grep -q '"vhost-user-vsock-device"' || {
		log "$b -device help lacks vhost-user-vsock-device"
		return 1
	}
}

finish() {
	local dir=$1
	log "QEMU $("$dir/bin/qemu-system-x86_64" --version | head -1 | sed 's/^QEMU emulator version //') ($(stat -c %s "$dir/bin/qemu-system-x86_64") bytes, from $PKG $(sed -n 's/^version=//p' "$dir/info"))"
	echo "$dir/bin/qemu-system-x86_64"
}

version=${QTENCLAVE_QEMU_VERSION:-$PIN_VERSION}
out=$cache/$(key "$version")
if [[ $force == 0 && -x $out/bin/qemu-system-x86_64 && -f $out/info ]]; then
	log "cached"
	finish "$out"
	exit 0
fi

# Resolve the source version apt can serve (deb-src lines from scripts/deps.sh).
avail=$(apt-cache showsrc "$PKG" 2>/dev/null | sed -n 's/^Version: //p' | sort -u)
if ! grep -qxF -- "$version" <<<"$avail"; then
	alt=$(grep '^1:10\.0\.' <<<"$avail" | while read -r v; do echo "$v"; done |
		sort -V | tail -1 || true)
	[[ -n $alt ]] || die "apt serves no $PKG 10.0 source (deb-src lines missing? run scripts/deps.sh as root)"
	log "WARNING: source $PKG=$version is not available from apt; using $alt instead (recorded in the cache key and info)"
	version=$alt
	out=$cache/$(key "$version")
	if [[ $force == 0 && -x $out/bin/qemu-system-x86_64 && -f $out/info ]]; then
		log "cached"
		finish "$out"
		exit 0
	fi
fi

start=$(date +%s)
upstream=${version#*:}
upstream=${upstream%-*}
dl=$cache/dl/$version
if [[ ! -f $dl/done ]]; then
	log "downloading source $PKG=$version"
	rm -rf "$dl"
	mkdir -p "$dl"
	chmod 755 "$dl"
	sandbox=()
	[[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
	# apt-get source checks the files against the signed Sources index.
	(cd "$dl" && apt-get source -q --download-only ${sandbox[@]+"${sandbox[@]}"} "$PKG=$version" >&2) ||
		die "apt-get source $PKG=$version failed"
	touch "$dl/done"
fi

work=$out.build.$$
rm -rf "$work"
mkdir -p "$work/out/bin"
trap 'rm -rf "$work"' EXIT
buildlog=$work/build.log
log "unpacking source (with Debian's patches) into $work/src"
dpkg-source -x "$dl"/*.dsc "$work/src" >>"$buildlog" 2>&1 || {
	tail -20 "$buildlog" >&2
	die "dpkg-source -x failed"
}
cp "$DEVICES" "$work/src/configs/devices/x86_64-softmmu/qtenclave.mak"

log "configuring: ${CONF[*]}"
mkdir -p "$work/src/build"
(cd "$work/src/build" && ../configure "${CONF[@]}") >>"$buildlog" 2>&1 || {
	tail -40 "$buildlog" >&2
	die "configure failed (log above)"
}
log "building qemu-system-x86_64 (ninja -j$jobs, log $buildlog)"
ninja -C "$work/src/build" -j"$jobs" qemu-system-x86_64 >>"$buildlog" 2>&1 || {
	tail -40 "$buildlog" >&2
	die "build failed (log above)"
}
objcopy --strip-all "$work/src/build/qemu-system-x86_64" "$work/out/bin/qemu-system-x86_64"
check "$work/out/bin/qemu-system-x86_64" || die "the built QEMU lacks required machines/devices"
{
	echo "package=$PKG"
	echo "version=$version"
	echo "configure=${CONF[*]}"
	echo "compiler=$(cc --version | head -1)"
} >"$work/out/info"
(cd "$work/out" && sha256sum bin/qemu-system-x86_64 >SHA256SUMS)

rm -rf "$out"
mv "$work/out" "$out"
log "built in $(($(date +%s) - start)) s"
finish "$out"
