#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The arm64 static libraries the aarch64 cross build links besides libc (which Debian's
# libc6-dev-arm64-cross gives the cross gcc): libelf.a and libz.a, from Debian's arm64
# libelf-dev and zlib1g-dev of this system's suite (the same versions as the x86_64 build's),
# and <sys/sdt.h> (systemtap-sdt-dev, multiarch: under usr/include/aarch64-linux-gnu) for
# the arm64 build of the USDT test helper (target/aarch64/ufuncs), fetched with a private
# apt configuration (the system's sources and dpkg's architectures stay untouched) and
# unpacked under DIR (default target/arm64/sysroot).
#
#   bash tests/vm/arm64-sysroot.sh [DIR]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${1:-$ROOT/target/arm64/sysroot}
APT=$ROOT/target/arm64/apt
PKGS="libelf-dev zlib1g-dev systemtap-sdt-dev"
# re-fetched when the package list grew
[ -e "$DIR/.done" ] && [ "$(cat "$DIR/.packages" 2>/dev/null)" = "$PKGS" ] && exit 0

mirror=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
        /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp):/) { if ($i !~ /security/) { print $i; exit } else break } }' \
        /etc/apt/sources.list)
fi
mirror=${VMTEST_MIRROR:-${mirror:-http://deb.debian.org/debian}}
suite=$(
    # shellcheck source=/dev/null
    . /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

rm -rf "$APT" "$DIR.tmp"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/deb" "$DIR.tmp"
: >"$APT/status"
echo "deb [trusted=yes] $mirror $suite main" >"$APT/sources.list"
opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status" -o "Dir::Cache=$APT/cache"
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
    -o Acquire::Languages=none -o APT::Architecture=arm64 -o APT::Architectures=arm64
    -o APT::Sandbox::User="$(id -un)" -o Acquire::Retries=3)
apt-get "${opts[@]}" -q update >/dev/null ||
    { echo "arm64-sysroot: apt-get update of $suite (arm64) from $mirror failed" >&2; exit 1; }
# shellcheck disable=SC2086 # one word per package
(cd "$APT/deb" && apt-get "${opts[@]}" -q download $PKGS >/dev/null) ||
    { echo "arm64-sysroot: apt-get download of $PKGS (arm64) failed" >&2; exit 1; }
for deb in "$APT"/deb/*.deb; do dpkg-deb -x "$deb" "$DIR.tmp"; done
for lib in libelf.a libz.a; do
    [ -e "$DIR.tmp/usr/lib/aarch64-linux-gnu/$lib" ] ||
        { echo "arm64-sysroot: no $lib in the arm64 packages" >&2; exit 1; }
done
[ -e "$DIR.tmp/usr/include/aarch64-linux-gnu/sys/sdt.h" ] ||
    { echo "arm64-sysroot: no sys/sdt.h in the arm64 systemtap-sdt-dev" >&2; exit 1; }
rm -rf "$DIR" && mv "$DIR.tmp" "$DIR"
echo "$PKGS" >"$DIR/.packages"
ls "$APT"/deb >"$DIR/.done"
