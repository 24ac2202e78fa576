#!/usr/bin/env bash
# Builds the enclave guest kernel and the NSM driver module, reproducibly, from Debian's
# linux-source-6.12 package: `make tinyconfig` + kernel-config/common.fragment +
# kernel-config/<arch>.fragment, checked by scripts/check-kernel-config.sh.
#
# Usage: scripts/build-kernel.sh [x86_64|arm64] [--force] [--config-only]
#   --force        rebuild even when the cache has the artifacts (the result is compared
#                  byte for byte with the cached one, which proves reproducibility)
#   --config-only  generate and check the .config, build nothing (no cross compiler needed)
#
# Output, cached outside the repository:
#   ${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave}/kernel/<key>/
#     bzImage (x86_64) or Image (arm64), nsm.ko, nsm.ko.xz (xz --check=crc32, loadable with
#     finit_module(MODULE_INIT_COMPRESSED_FILE)), config, System.map, release, SHA256SUMS, info
#   key = sha256(arch, package version, fragments, these scripts, compiler and xz versions).
# The last line printed is that directory. Environment: QTENCLAVE_CACHE, JOBS (default 2),
# QTENCLAVE_KERNEL_VERSION (another linux-source-6.12 version than the pinned one).
# Needs scripts/deps.sh (arm64: scripts/deps.sh --arm64).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

PKG=linux-source-6.12
# Pinned source: Debian bookworm-security's linux 6.12 LTS (bookworm-backports serves an
# older 6.12.95). Another version is used, with a warning, only when apt no longer has it.
PIN_VERSION=6.12.117-1~deb12u1
# Fixed build identity, so two builds anywhere produce the same bytes.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970'
export KBUILD_BUILD_USER=qtenclave
export KBUILD_BUILD_HOST=qtenclave
export KBUILD_BUILD_VERSION=1
export LC_ALL=C TZ=UTC
unset KCONFIG_CONFIG ARCH CROSS_COMPILE O KBUILD_OUTPUT

arch=x86_64 force=0 config_only=0
for a in "$@"; do
	case $a in
	x86_64 | amd64) arch=x86_64 ;;
	arm64 | aarch64) arch=arm64 ;;
	--force) force=1 ;;
	--config-only) config_only=1 ;;
	-h | --help)
		sed -n '2,20p' "$0"
		exit 0
		;;
	*)
		echo "build-kernel.sh: unknown argument $a" >&2
		exit 2
		;;
	esac
done

case $arch in
x86_64) karch=x86_64 image=arch/x86/boot/bzImage cross= ;;
arm64) karch=arm64 image=arch/arm64/boot/Image cross=aarch64-linux-gnu- ;;
esac
[[ $(uname -m) == aarch64 && $arch == arm64 ]] && cross=
[[ $(uname -m) != x86_64 && $arch == x86_64 ]] && cross=x86_64-linux-gnu-

cache=${QTENCLAVE_CACHE:-$HOME/.cache/qtenclave}/kernel
jobs=${JOBS:-2}
frags=("$repo/kernel-config/common.fragment" "$repo/kernel-config/$arch.fragment")

log() { echo "build-kernel: $*" >&2; }
die() {
	echo "build-kernel: error: $*" >&2
	exit 1
}

for f in "${frags[@]}"; do [[ -r $f ]] || die "missing fragment $f"; done
for t in make gcc flex bison bc xz cpio; do
	command -v "$t" >/dev/null || die "$t not found: run scripts/deps.sh (as root) first"
done
if ! command -v "${cross}gcc" >/dev/null; then
	[[ $config_only == 1 ]] || die "${cross}gcc not found: run scripts/deps.sh --arm64 (as root), or use --config-only"
	# Kconfig probes the compiler; the host's gets the fragments checked, though a few
	# compiler-dependent options (e.g. branch protection) may differ from a real build.
	log "WARNING: ${cross}gcc not found; configuring with the host compiler"
	cross=
fi

# key VERSION -> cache key for that source version.
key() {
	{
		echo "arch=$arch version=$1 config_only=$config_only"
		cat "${frags[@]}" "$here/build-kernel.sh" "$here/check-kernel-config.sh"
		if [[ $config_only == 0 ]]; then
			"${cross}gcc" --version | head -1
			"${cross}ld" --version | head -1
		fi
		xz --version | head -1
	} | sha256sum | cut -c1-16
}

finish() {
	local dir=$1
	log "kernel $(cat "$dir/release" 2>/dev/null || echo '(config only)') from $PKG $(sed -n 's/^version=//p' "$dir/info")"
	(cd "$dir" && for f in bzImage Image nsm.ko nsm.ko.xz config; do
		[[ -e $f ]] && printf 'build-kernel:   %-10s %9d bytes  %s\n' "$f" "$(stat -c %s "$f")" "$dir/$f" >&2
	done)
	echo "$dir"
}

# Fast path: the pinned version is cached; no apt needed.
version=${QTENCLAVE_KERNEL_VERSION:-$PIN_VERSION}
out=$cache/$(key "$version")
if [[ $force == 0 && -f $out/info ]]; then
	log "cached"
	finish "$out"
	exit 0
fi

# Resolve the version apt can serve.
if ! apt-cache show "$PKG=$version" >/dev/null 2>&1; then
	avail=$(apt-cache madison "$PKG" 2>/dev/null | awk 'NR==1{print $3}')
	[[ -n $avail ]] || die "apt serves no $PKG: run scripts/deps.sh (as root) first"
	log "WARNING: $PKG=$version is not available from apt; using $avail instead (recorded in the cache key and $out/info)"
	version=$avail
	out=$cache/$(key "$version")
	if [[ $force == 0 && -f $out/info ]]; then
		log "cached"
		finish "$out"
		exit 0
	fi
fi

start=$(date +%s)
mkdir -p "$cache/dl"
deb=$cache/dl/${PKG}_${version/*:/}_all.deb
if [[ ! -s $deb ]]; then
	log "downloading $PKG=$version"
	dl=$(mktemp -d "$cache/dl/tmp.XXXXXX")
	sandbox=()
	[[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
	# apt-get download verifies the package against the signed index.
	(cd "$dl" && chmod 755 . && apt-get download -q ${sandbox[@]+"${sandbox[@]}"} "$PKG=$version" >&2) || die "apt-get download $PKG=$version failed"
	mv "$dl"/*.deb "$deb"
	rmdir "$dl"
fi

# Build in a scratch directory next to the cache entry; file paths are mapped away with
# -ffile-prefix-map so its name does not reach the artifacts.
work=$out.build.$$
rm -rf "$work"
mkdir -p "$work/obj" "$work/out"
trap 'rm -rf "$work"' EXIT
buildlog=$cache/build-$arch.log # kept after the scratch directory is gone
: >"$buildlog"
log "extracting source into $work/src"
mkdir -p "$work/src"
dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$PKG.tar.xz" | tar -xJ -C "$work/src" --strip-components=1

kmake() {
	make -C "$work/src" O="$work/obj" ARCH="$karch" CROSS_COMPILE="$cross" \
		KCFLAGS="-ffile-prefix-map=$work/=" KAFLAGS="-ffile-prefix-map=$work/=" "$@"
}
log "configuring: tinyconfig + ${frags[*]##*/}"
{
	kmake tinyconfig
	"$work/src/scripts/kconfig/merge_config.sh" -m -O "$work/obj" "$work/obj/.config" "${frags[@]}"
	kmake olddefconfig
} >>"$buildlog" 2>&1 || {
	tail -30 "$buildlog" >&2
	die "configuration failed (log above)"
}
"$here/check-kernel-config.sh" "$work/obj/.config" "${frags[@]}" >&2 || die "kernel .config check failed"
cp "$work/obj/.config" "$work/out/config"

if [[ $config_only == 0 ]]; then
	log "building ${image##*/} and modules (make -j$jobs, log $buildlog)"
	if ! kmake -j"$jobs" "${image##*/}" modules >>"$buildlog" 2>&1; then
		tail -40 "$buildlog" >&2
		die "kernel build failed (log above)"
	fi
	cp "$work/obj/$image" "$work/obj/System.map" "$work/out/"
	kmake -s kernelrelease >"$work/out/release" 2>/dev/null
	ko=$work/obj/drivers/misc/nsm.ko
	[[ -f $ko ]] || die "nsm.ko was not built"
	"${cross}objcopy" --strip-debug "$ko" "$work/out/nsm.ko"
	# The kernel's in-kernel xz decompressor only accepts CRC32 checks; single-threaded
	# for deterministic output.
	xz --check=crc32 --lzma2=dict=1MiB -T1 -c "$work/out/nsm.ko" >"$work/out/nsm.ko.xz"
fi

{
	echo "package=$PKG"
	echo "version=$version"
	echo "arch=$arch"
	[[ $config_only == 0 ]] && echo "compiler=$("${cross}gcc" --version | head -1)"
	echo "fragments=${frags[*]#"$repo"/}"
} >"$work/out/info"
(cd "$work/out" && sha256sum -- * >SHA256SUMS)

if [[ -d $out ]]; then
	# --force on an existing entry: the rebuild must match byte for byte.
	if cmp -s "$out/SHA256SUMS" "$work/out/SHA256SUMS"; then
		log "rebuild is byte-identical to the cached build"
	else
		diff "$out/SHA256SUMS" "$work/out/SHA256SUMS" >&2 || true
		die "rebuild differs from the cached build in $out: not reproducible"
	fi
	rm -rf "$out"
fi
mv "$work/out" "$out"
log "built in $(($(date +%s) - start)) s"
finish "$out"
