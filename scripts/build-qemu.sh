#!/usr/bin/env bash
# Build (or find in the cache) Corral's QEMU: qemu-system-x86_64 from Debian's own qemu
# source package (its security patches applied), with the microvm machine and the
# devices in node_agent/qemu/devices.mak only, KVM and TCG both on
# (node_agent/qemu/configure-options). Debian builds such a binary itself
# (qemu-system-x86_64-microvm) but without TCG and 9p; this one runs where KVM cannot,
# and its idle process is ~19 MiB smaller than the full emulator's (fewer devices to
# register and relocate, fewer libraries mapped). It is linked with packed relative
# relocations (DT_RELR: 1.1 MiB of .rela.dyn, read at every start and left resident,
# becomes 16 KiB) and, as Debian's build has it, with malloc-trim, so that QEMU's RCU
# thread hands freed heap back (~1 MiB once a snapshot has been restored).
#
# Usage: scripts/build-qemu.sh
#
# Cache key = sha256 of (node_agent/qemu/* + the source package version).
# Result:    $CORRAL_HOME/assets/qemu/<key>/{bin/qemu-system-x86_64,share/qemu,qemu.json};
#            share/qemu links to Debian's firmware (qboot, from qemu-system-data), where
#            QEMU looks relative to its binary.
# Build dir: $CORRAL_HOME/build/qemu-<key>  (a failed build resumes there; removed once
#            the binary is installed)
# stdout:    only the binary's path (last line); progress and errors go to stderr.
#
# Debian publishes source packages through deb-src entries: when apt has none, this
# adds /etc/apt/sources.list.d/corral-deb-src.sources for bookworm (and its updates and
# security suites), from the archive apt already uses.
#
# Environment: CORRAL_HOME (default ~/.local/share/corral), CORRAL_QEMU_JOBS (default
# nproc).
set -euo pipefail

log() { printf 'build-qemu: %s\n' "$*" >&2; }
die() { printf 'build-qemu: error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
inputs=$repo_root/node_agent/qemu
corral_home=${CORRAL_HOME:-$HOME/.local/share/corral}
firmware=/usr/share/qemu
jobs=${CORRAL_QEMU_JOBS:-$(nproc)}
src_list=/etc/apt/sources.list.d/corral-deb-src.sources
sudo=()
((EUID == 0)) || sudo=(sudo)

# --- Build dependencies (installed only when missing) -----------------------------
pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}
missing=()
for p in dpkg-dev meson ninja-build pkg-config libglib2.0-dev libpixman-1-dev \
  libfdt-dev zlib1g-dev libattr1-dev libcap-ng-dev qemu-system-data; do
  pkg_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing missing packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q \
    --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi
[[ -f $firmware/bios-microvm.bin ]] || die "$firmware/bios-microvm.bin missing (qemu-system-data)"

# --- Which source: the version apt would fetch (needs deb-src) ---------------------
source_dsc() { apt-get source --print-uris -q qemu 2>/dev/null | awk '$2 ~ /\.dsc$/ {print $2}'; }
if ! dsc=$(source_dsc) || [[ -z $dsc ]]; then
  if [[ ! -e $src_list ]]; then
    archive=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' \
      | grep -m1 -E '/debian/$' || true)
    archive=${archive:-http://deb.debian.org/debian/}
    log "adding deb-src entries for ${archive} in $src_list"
    "${sudo[@]}" tee "$src_list" >/dev/null <<EOF
Types: deb-src
URIs: ${archive}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: ${archive%/debian/}/debian-security/
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
  dsc=$(source_dsc) && [[ -n $dsc ]] || die "apt finds no qemu source package (deb-src: $src_list)"
fi
src_version=${dsc#qemu_}
src_version=${src_version%.dsc}
key=$( { cat "$inputs"/*; printf '\nqemu=%s\n' "$src_version"; } \
       | sha256sum | cut -d' ' -f1)
asset_dir=$corral_home/assets/qemu/$key
binary=$asset_dir/bin/qemu-system-x86_64

if [[ -x $binary ]]; then
  log "cached: $asset_dir (key ${key:0:12}, qemu $src_version)"
  printf '%s\n' "$binary"
  exit 0
fi

build_root=$corral_home/build
build_dir=$build_root/qemu-$key
mkdir -p "$build_root" "$corral_home/assets/qemu"
exec 9>"$build_root/qemu-$key.lock"
if ! flock -n 9; then
  log "another build of key ${key:0:12} is running; waiting for it"
  flock 9
fi
if [[ -x $binary ]]; then
  log "built by a concurrent run: $asset_dir"
  printf '%s\n' "$binary"
  exit 0
fi

# --- Source tree: apt fetches and verifies it, dpkg-source applies Debian's patches ---
if [[ ! -f $build_dir/source/configure ]]; then
  log "fetching Debian's qemu $src_version source into $build_dir"
  rm -rf "$build_dir"
  mkdir -p "$build_dir/fetch"
  (cd "$build_dir/fetch" && apt-get source -q --download-only qemu >&2) \
    || die "apt-get source qemu failed"
  dpkg-source -x "$build_dir/fetch/$dsc" "$build_dir/extract" >&2 \
    || die "dpkg-source could not unpack $dsc"
  patch -d "$build_dir/extract" -p1 -s <"$inputs/microvm-only-link.patch" \
    || die "microvm-only-link.patch does not apply to qemu $src_version"
  # Debian's source drops the prebuilt EDK2 firmware archives, which QEMU's build
  # would unpack; this build installs no firmware.
  sed -i 's/^unpack_edk2_blobs = .*/unpack_edk2_blobs = false/' "$build_dir/extract/meson.build"
  cp "$inputs/devices.mak" "$build_dir/extract/configs/devices/x86_64-softmmu/corral.mak"
  mv -T "$build_dir/extract" "$build_dir/source"
  rm -rf "$build_dir/fetch"
fi

build_log=$build_dir/corral-build.log
mapfile -t options <"$inputs/configure-options"
log "configuring and compiling with -j$jobs (log: $build_log; takes a few minutes)"
start=$SECONDS
[[ -f $build_dir/out/build.ninja ]] || rm -rf "$build_dir/out"  # a configure that failed
mkdir -p "$build_dir/out"
if ! (
  cd "$build_dir/out"
  [[ -f build.ninja ]] || ../source/configure "${options[@]}" --meson=/usr/bin/meson
  ninja -j"$jobs" qemu-system-x86_64
) >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  die "QEMU build failed (full log: $build_log)"
fi
log "compiled in $((SECONDS - start)) s"

# --- Install atomically: temp dir, then rename ----------------------------------
tmp_asset=$(mktemp -d "$corral_home/assets/qemu/.tmp-$key-XXXXXX")
trap 'rm -rf "$tmp_asset"' EXIT
mkdir -p "$tmp_asset/bin" "$tmp_asset/share"
strip -o "$tmp_asset/bin/qemu-system-x86_64" "$build_dir/out/qemu-system-x86_64"
ln -s "$firmware" "$tmp_asset/share/qemu"
version=$("$tmp_asset/bin/qemu-system-x86_64" --version | head -n1)
printf '{"version": "%s", "key": "%s", "source": {"package": "qemu", "version": "%s"}}\n' \
  "$version" "$key" "$src_version" >"$tmp_asset/qemu.json"
chmod 0755 "$tmp_asset"
if ! mv -T "$tmp_asset" "$asset_dir" 2>/dev/null; then
  [[ -x $binary ]] || die "could not install into $asset_dir"
  log "$asset_dir appeared meanwhile; keeping it"
fi
trap - EXIT
rm -rf "$tmp_asset" "$build_dir"
log "installed $version into $asset_dir"
printf '%s\n' "$binary"
