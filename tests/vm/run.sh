#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Kernel-matrix harness behind `make vmtest`.
#
#   bash tests/vm/run.sh [KERNEL...]        default: 5.10 6.1 6.12 newest
#   VMTEST_ARCH=arm64 bash tests/vm/run.sh [KERNEL...]
#                                           the arm64 kernels (qemu-system-aarch64 -M virt)
#   bash tests/vm/run.sh 6.12 arm64:6.12    a name may carry its architecture
#
# For every kernel: fetch (or re-use) a Debian cloud kernel, boot it under qemu/TCG
# with an initramfs holding busybox, the static btrace (a dynamic one is refused: the
# matrix proves the shipped binary, not the host's libraries), the workload helpers (only
# target/ufuncs is dynamic, for the libc uprobe checks: the libc it brings is its own) and
# the guest checks (tests/vm/guest-checks.sh + tests/vm/checks/*.sh), read the results from
# the serial console and print a table check x kernel. arm64 guests get Debian's arm64 cloud
# kernels, an arm64 busybox and libc (downloaded, never installed), the aarch64 btrace and
# the helpers cross-built into target/aarch64/ (see "arm64 guests" below). Exit status 1 if any check failed,
# a kernel could not be fetched, a guest timed out or a result is missing.
# See tests/vm/README.md for environment variables and how to add checks.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VMDIR=${VMTEST_DIR:-$ROOT/target/vm}
BTRACE_BIN=${BTRACE_BIN:-$ROOT/target/$(uname -m)-unknown-linux-gnu/release/btrace}
WORKLOAD_BIN=${WORKLOAD_BIN:-$ROOT/target/workload}
TIMEOUT=${VMTEST_TIMEOUT:-600}     # seconds per guest, boot to poweroff
JOBS=${VMTEST_JOBS:-3}             # guests booted at the same time
BUSYBOX=${VMTEST_BUSYBOX:-/bin/busybox}
# No CX16: with qemu 7.2 (bookworm) TCG, the 6.12 guest died at boot in about 1 run of 3:
# double fault with a pointer-like EFLAGS right after 6.12 SLUB's `cmpxchg16b %gs:(%rsi)`
# (this_cpu_cmpxchg128) in __kmalloc, or GPF in do_sync_core/text_poke_early, list
# corruption, NULL derefs -- all consistent with TCG computing wrong flags after that
# instruction. Without CX16 the kernel uses its non-cmpxchg128 path: 36 of 36 boots clean.
CPU=${VMTEST_CPU:-max,-cx16}
# ...except for kernels from 6.19 on, which keep CX16: there, task (and cgroup, socket,
# inode) local storage allocates with kmalloc_nolock() (f484f4a3e058 "bpf: Replace bpf
# memory allocator with kmalloc_nolock() in local storage"), and kmalloc_nolock() returns
# NULL whenever the slab cache has no __CMPXCHG_DOUBLE, i.e. on a CPU without CX16: every
# bpf_task_storage_get(..., F_CREATE) fails and hist/top lose every event on 7.3 with
# max,-cx16. No x86-64 machine btrace targets lacks CX16; the boot crash above was seen
# on 6.12. VMTEST_CPU, when set, applies to every kernel.
CPU_CX16=${VMTEST_CPU:-max}
# Single-threaded TCG (one host thread runs both vCPUs in turn): with multi-threaded TCG
# (qemu 7.2), repeated kernel live patching -- kprobe/fentry attach and detach by btrace or
# bpftrace, ftrace kprobe events without BPF, even static-key flips -- crashed 6.12 guests
# in 12 of 13 boots (NULL instruction fetches, int3 oopses at already-patched sites: a vCPU
# ran a stale translation). With 1 vCPU, or 2 vCPUs under thread=single, 0 of 18 crashed.
# -smp 2 stays, so per-CPU maps and cross-CPU paths are still exercised.
ACCEL=${VMTEST_ACCEL:-tcg,thread=single}

say() { printf 'vmtest: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

# ---------------------------------------------------------------- architectures
# A kernel name is VERSION (amd64, or VMTEST_ARCH's) or ARCH:VERSION; inside, arm64 names
# are "arm64-VERSION" (file names, table columns) and amd64 names stay bare.
VMTEST_ARCH=${VMTEST_ARCH:-amd64}
# arm64 guests: the aarch64 btrace (make build-arm64) and the test helpers cross-built
# into target/aarch64/ (the Makefile's ARM64_HELPERS); a files.list path target/NAME is
# taken from target/aarch64/NAME for them.
BTRACE_BIN_ARM64=${BTRACE_BIN_ARM64:-$ROOT/target/aarch64-unknown-linux-gnu/release/btrace}
WORKLOAD_BIN_ARM64=${WORKLOAD_BIN_ARM64:-$ROOT/target/aarch64/workload}
ARM64_HELPERS=$ROOT/target/aarch64
# -cpu max emulates pointer authentication with the architected QARMA5 cipher, which TCG
# computes in software at every signed return (Debian's arm64 kernels sign every
# function's return address): pauth-impdef=on keeps PAuth but uses QEMU's cheap
# implementation-defined algorithm (see tests/vm/README.md for the boot times measured).
ARM64_CPU=${VMTEST_ARM64_CPU:-max,pauth-impdef=on}
# arm64 guests are slower under TCG: the whole set took 356 to 648 s per kernel here (two
# guests at a time on a busy 2-CPU host), against 600 s for amd64. VMTEST_TIMEOUT, when
# set, applies to both.
ARM64_TIMEOUT=${VMTEST_TIMEOUT:-1500}

canonical_kernel_names() {
    local i v arch
    for i in "${!KERNELS[@]}"; do
        v=${KERNELS[$i]}
        case "$v" in
            *:*) arch=${v%%:*} v=${v#*:} ;;
            arm64-*) arch=arm64 v=${v#arm64-} ;;
            *) arch=$VMTEST_ARCH ;;
        esac
        case "$arch" in
            amd64) KERNELS[i]=$v ;;
            arm64) KERNELS[i]=arm64-$v ;;
            *) die "unknown architecture '$arch' in kernel '${KERNELS[$i]}' (amd64 or arm64)" ;;
        esac
    done
}
# kernel_arch NAME: amd64 or arm64; kernel_version NAME: 5.10, 6.1, 6.12 or newest.
kernel_arch() { case "$1" in arm64-*) echo arm64 ;; *) echo amd64 ;; esac; }
kernel_version() { echo "${1#arm64-}"; }
# has_arch ARCH: a kernel of this run is of ARCH (no pipe into grep -q: under pipefail
# its early exit could fail the writer).
has_arch() {
    local v
    for v in "${KERNELS[@]}"; do [ "$(kernel_arch "$v")" = "$1" ] && return 0; done
    return 1
}
# The architectures of this run, each once, in the order of KERNELS.
run_archs() {
    local v a seen=" "
    for v in "${KERNELS[@]}"; do
        a=$(kernel_arch "$v")
        case "$seen" in *" $a "*) ;; *) seen+="$a " && echo "$a" ;; esac
    done
}

if [ $# -gt 0 ]; then
    # accept "5.10 6.1" as one argument too (make vmtest KERNELS="...")
    read -r -a KERNELS <<<"$*"
else
    KERNELS=(5.10 6.1 6.12 newest)
fi
canonical_kernel_names

# The Debian suites a kernel name is taken from. With several, the one whose
# linux-image-cloud-amd64 (-arm64) resolves to the highest version wins ("newest": sid and
# trixie-backports, either of which may be ahead).
suite_for() {
    case "$(kernel_version "$1")" in
        5.10) echo bullseye ;;
        6.1) echo bookworm ;;
        6.12) echo trixie ;;
        newest) echo "sid trixie-backports" ;;
        *) return 1 ;;
    esac
}
for v in "${KERNELS[@]}"; do
    suite_for "$v" >/dev/null ||
        die "unknown kernel '$v' (known: 5.10 bullseye, 6.1 bookworm, 6.12 trixie, newest = the higher of sid and trixie-backports; arm64:VERSION for arm64)"
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---------------------------------------------------------------- host packages
ensure_host_packages() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
    if has_arch arm64; then
        command -v qemu-system-aarch64 >/dev/null 2>&1 || need+=(qemu-system-arm)
    fi
    command -v cpio >/dev/null 2>&1 || need+=(cpio)
    command -v readelf >/dev/null 2>&1 || need+=(binutils)
    if [ -z "${VMTEST_BUSYBOX:-}" ] &&
        ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
        need+=(busybox-static)
    fi
    [ ${#need[@]} -eq 0 ] && return 0
    say "installing host packages: ${need[*]}"
    as_root apt-get update -qq || die "apt-get update failed (needed to install ${need[*]})"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null || die "apt-get install ${need[*]} failed"
}

# ---------------------------------------------------------------- kernels
# The mirror of the system's Debian sources (deb822 or one-line format).
debian_mirror() {
    local m=""
    if [ -n "${VMTEST_MIRROR:-}" ]; then echo "$VMTEST_MIRROR"; return; fi
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
            /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp):/) { if ($i !~ /security/) { print $i; exit } else break } }' \
            /etc/apt/sources.list)
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

# apt_opts SUITE [ARCH [NAME]]: the private apt configuration of one suite, in the array
# APT_OPTS. Everything apt touches lives under APT_DIR=$VMDIR/apt/NAME (default SUITE, or
# SUITE-arm64 for arm64: runs at the same time need different NAMEs); the system's sources
# are not used.
apt_opts() {
    local arch=${2:-amd64}
    local a=$VMDIR/apt/${3:-$1}
    [ -n "${3:-}" ] || [ "$arch" = amd64 ] || a+=-$arch
    APT_DIR=$a
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/deb"
    : >"$a/status"
    echo "deb [trusted=yes] $MIRROR $1 main" >"$a/sources.list"
    APT_OPTS=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$a/lists" -o "Dir::State::status=$a/status" -o "Dir::Cache=$a/cache"
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
        -o Acquire::Languages=none -o APT::Architecture="$arch" -o APT::Architectures="$arch"
        -o APT::Sandbox::User="$(id -un)" -o Acquire::Retries=3 -o Acquire::http::Timeout=60)
}

# fetch_kernel VER: leaves $VMDIR/kernels/VER/vmlinuz (+ config, System.map, package).
fetch_kernel() {
    local ver=$1 suite dir meta real tmp deb
    local best_suite="" best_real="" best_version="" version
    dir=$VMDIR/kernels/$ver
    if [ -s "$dir/vmlinuz" ] && [ -e "$dir/modules.cpio" ] && [ -z "${VMTEST_REFRESH:-}" ]; then
        echo "cached: $(cat "$dir/package" 2>/dev/null)"
        return 0
    fi
    meta=linux-image-cloud-$(kernel_arch "$ver")
    for suite in $(suite_for "$ver"); do
        apt_opts "$suite" "$(kernel_arch "$ver")"
        if ! apt-get "${APT_OPTS[@]}" -q update; then
            echo "FETCH-ERROR kernel $ver: apt-get update of suite '$suite' from $MIRROR failed"
            return 1
        fi
        real=$(apt-cache "${APT_OPTS[@]}" depends "$meta" 2>/dev/null |
            awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
        if [ -z "$real" ]; then
            echo "FETCH-ERROR kernel $ver: metapackage $meta in suite '$suite' ($MIRROR) does not resolve to a linux-image package"
            return 1
        fi
        version=$(apt-cache "${APT_OPTS[@]}" show "$real" 2>/dev/null | awk '$1 == "Version:" { print $2; exit }')
        if [ -z "$version" ]; then
            echo "FETCH-ERROR kernel $ver: no version for $real in suite '$suite' ($MIRROR)"
            return 1
        fi
        echo "resolved $meta ($suite) -> $real $version"
        if [ -z "$best_suite" ] || dpkg --compare-versions "$version" gt "$best_version"; then
            best_suite=$suite best_real=$real best_version=$version
        fi
    done
    suite=$best_suite real=$best_real
    apt_opts "$suite" "$(kernel_arch "$ver")"
    # From 7.x on, linux-image-ABI is an empty package: the image is in linux-binary-ABI
    # (signed; linux-binary-unsigned-ABI is the alternative), config and System.map in
    # linux-base-ABI, modules (loop.ko, for biolatency's checks) in linux-modules-ABI (23 MB,
    # only loop.ko is kept). Take those of its dependencies too.
    local pkgs
    pkgs="$real $(apt-cache "${APT_OPTS[@]}" depends "$real" 2>/dev/null |
        awk -v abi="${real#linux-image-}" '$1 ~ /Depends:$/ &&
            ($2 == "linux-binary-" abi || $2 == "linux-base-" abi || $2 == "linux-modules-" abi) { print $2 }' | sort -u | tr '\n' ' ')"
    echo "downloading: $pkgs"
    local a=$APT_DIR
    rm -f "$a/deb"/*.deb
    # shellcheck disable=SC2086 # word splitting wanted
    if ! (cd "$a/deb" && apt-get "${APT_OPTS[@]}" -q download $pkgs); then
        echo "FETCH-ERROR kernel $ver: apt-get download $pkgs (suite '$suite', $MIRROR) failed"
        return 1
    fi
    tmp=$VMDIR/kernels/.$ver.tmp
    rm -rf "$tmp" && mkdir -p "$tmp/x"
    for deb in "$a/deb"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
    # The first match of a glob over Debian package files (plain names); none: empty.
    # shellcheck disable=SC2012
    deb=$(ls "$a/deb/${real}_"*.deb | head -n1)
    # up to 6.x: boot/vmlinuz-ABI, boot/config-ABI, boot/System.map-ABI;
    # 7.x: usr/lib/modules/ABI/vmlinuz, config, System.map
    local vmlinuz f
    # The first match of a glob over Debian package files (plain names); none: empty.
    # shellcheck disable=SC2012
    vmlinuz=$(ls "$tmp"/x/boot/vmlinuz-* "$tmp"/x/usr/lib/modules/*/vmlinuz 2>/dev/null | head -n1) || true
    if [ -z "$vmlinuz" ]; then
        echo "FETCH-ERROR kernel $ver: no boot/vmlinuz-* or usr/lib/modules/*/vmlinuz in $pkgs"
        return 1
    fi
    cp "$vmlinuz" "$tmp/vmlinuz"
    if [ "$(kernel_arch "$ver")" = arm64 ]; then arm64_image "$tmp/vmlinuz" || return 1; fi
    for f in config System.map; do
        # The first match of a glob over Debian package files (plain names); none: empty.
        # shellcheck disable=SC2012
        cp "$(ls "$tmp"/x/boot/$f-* "$tmp"/x/usr/lib/modules/*/$f 2>/dev/null | head -n1)" "$tmp/$f" 2>/dev/null || true
    done
    echo "$real $(dpkg-deb -f "$deb" Version) ($suite)" >"$tmp/package"
    # The loop module (biolatency's checks make a loop device), decompressed, as a cpio
    # archive appended to the shared initramfs at boot: lib/modules/RELEASE/loop.ko.
    # Empty when the package has none (then the check says so and skips).
    local ko rel
    mkdir -p "$tmp/mods"
    ko=$(find "$tmp/x" -path '*/kernel/drivers/block/loop.ko*' | head -n1)
    if [ -n "$ko" ]; then
        rel=${ko##*/modules/}
        rel=${rel%%/kernel/*}
        mkdir -p "$tmp/mods/lib/modules/$rel"
        case "$ko" in
            *.xz) xz -dc "$ko" >"$tmp/mods/lib/modules/$rel/loop.ko" ;;
            *.zst) zstd -qdc "$ko" >"$tmp/mods/lib/modules/$rel/loop.ko" ;;
            *.gz) gzip -dc "$ko" >"$tmp/mods/lib/modules/$rel/loop.ko" ;;
            *) cp "$ko" "$tmp/mods/lib/modules/$rel/loop.ko" ;;
        esac
    fi
    (cd "$tmp/mods" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) >"$tmp/modules.cpio"
    rm -rf "$tmp/mods"
    rm -rf "$tmp/x" "$a/deb"/*.deb
    rm -rf "$dir" && mv "$tmp" "$dir"
    echo "fetched: $(cat "$dir/package")"
}

# ---------------------------------------------------------------- initramfs
# One per architecture: initrd_for ARCH. build_initramfs ARCH sets STAGE and INITRD.
initrd_for() { if [ "$1" = amd64 ]; then echo "$VMDIR/initramfs.cpio"; else echo "$VMDIR/initramfs-$1.cpio"; fi; }
stage_for() { if [ "$1" = amd64 ]; then echo "$VMDIR/initramfs"; else echo "$VMDIR/initramfs-$1"; fi; }
STAGE_ARCH=amd64
STAGE=$(stage_for amd64)
INITRD=$(initrd_for amd64)

# stage_file HOST GUEST: copy a file (and, for dynamic ELF files, the libraries ldd names).
stage_file() {
    local src=$1 dst=$2 lib
    [ -e "$src" ] || die "file for the initramfs not found: $src"
    mkdir -p "$STAGE$(dirname "$dst")"
    # --remove-destination: DST may be a busybox applet link; never write through it
    cp -L --remove-destination "$src" "$STAGE$dst"
    if [ "$STAGE_ARCH" = arm64 ]; then
        stage_arm64_libs "$src"
    elif [ -f "$src" ] && [ -x "$src" ] && head -c4 "$src" | grep -q ELF; then
        for lib in $(ldd "$src" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
            [ -e "$STAGE$lib" ] && continue
            mkdir -p "$STAGE$(dirname "$lib")"
            cp -L --remove-destination "$lib" "$STAGE$lib"
        done
    fi
}

build_initramfs() {
    local applet f line src dst
    local arch=${1:-amd64} busybox=$BUSYBOX btrace=$BTRACE_BIN workload=$WORKLOAD_BIN
    STAGE_ARCH=$arch STAGE=$(stage_for "$arch") INITRD=$(initrd_for "$arch")
    if [ "$arch" = arm64 ]; then
        busybox=$ARM64_USERLAND/bin/busybox btrace=$BTRACE_BIN_ARM64 workload=$WORKLOAD_BIN_ARM64
    fi
    rm -rf "$STAGE"
    mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,vmtest/checks}
    cp "$busybox" "$STAGE/bin/busybox"
    # the applets of the host's busybox (arm64: the same Debian package, which cannot run here)
    for applet in $("$BUSYBOX" --list-full); do
        # never link busybox to itself (ELOOP), and keep our /init
        case "$applet" in bin/busybox | linuxrc | init) continue ;; esac
        # relative links, so that nothing on the host is ever reached through them
        local up=${applet//[^\/]/}
        up=${up//\//../}
        [ -e "$STAGE/$applet" ] || ln -s "${up}bin/busybox" "$STAGE/$applet"
    done
    mknod -m 600 "$STAGE/dev/console" c 5 1 2>/dev/null || true
    mknod -m 666 "$STAGE/dev/null" c 1 3 2>/dev/null || true
    echo 'root:x:0:0:root:/root:/bin/sh' >"$STAGE/etc/passwd"
    echo 'root:x:0:' >"$STAGE/etc/group"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$STAGE/etc/hosts"

    install -m 755 "$HERE/init" "$STAGE/init"
    install -m 755 "$HERE/guest-checks.sh" "$STAGE/vmtest/guest-checks.sh"
    install -m 644 "$HERE/lib.sh" "$STAGE/vmtest/lib.sh"
    for f in "$HERE"/checks/*.sh; do install -m 644 "$f" "$STAGE/vmtest/checks/"; done

    # static (checked above): stage_file copies no library for it
    stage_file "$btrace" /bin/btrace
    stage_file "$workload" /bin/workload
    # tests/vm/files.list: "HOST-PATH [GUEST-PATH]" per line, host paths relative to the repo root
    if [ -r "$HERE/files.list" ]; then
        while read -r src dst; do
            case "$src" in '' | '#'*) continue ;; esac
            case "$src" in /*) ;; *) src=$ROOT/$src ;; esac
            [ "$arch" = arm64 ] && src=$(arm64_helper "$src")
            stage_file "$src" "${dst:-/bin/$(basename "$src")}"
        done <"$HERE/files.list"
    fi
    # VMTEST_EXTRA_FILES="host[:guest] ..." for one-off additions
    for line in ${VMTEST_EXTRA_FILES:-}; do
        src=${line%%:*}
        dst=${line#*:}
        [ "$dst" = "$line" ] && dst=/bin/$(basename "$src")
        stage_file "$src" "$dst"
    done
    (cd "$STAGE" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) >"$INITRD"
}

# ---------------------------------------------------------------- boot
# cpu_for VER: the qemu -cpu model for a fetched kernel (see CPU and CPU_CX16 above).
cpu_for() {
    local rel
    rel=$(awk '{ sub(/^linux-image-/, "", $1); print $1; exit }' "$VMDIR/kernels/$1/package" 2>/dev/null)
    if awk -v r="$rel" 'BEGIN { split(r, v, "[.+-]"); exit !(v[1] > 6 || (v[1] == 6 && v[2] >= 19)) }'; then
        echo "$CPU_CX16"
    else
        echo "$CPU"
    fi
}

# qemu_for VER: the qemu command line (without -kernel, -initrd, -append) of a kernel's
# architecture in the array QEMU, its -cpu in QEMU_CPU, its serial console in CONSOLE and
# the guest's timeout in QEMU_TIMEOUT.
qemu_for() {
    if [ "$(kernel_arch "$1")" = arm64 ]; then
        # -M virt boots an arm64 Image directly (no firmware); its serial port is a PL011
        QEMU_CPU=$ARM64_CPU QEMU_TIMEOUT=$ARM64_TIMEOUT
        QEMU=(qemu-system-aarch64 -M virt -accel "$ACCEL" -cpu "$QEMU_CPU" -m 1G -smp 2
            -nographic -no-reboot -nic none)
        CONSOLE=ttyAMA0
    else
        QEMU_CPU=$(cpu_for "$1") QEMU_TIMEOUT=$TIMEOUT
        QEMU=(qemu-system-x86_64 -accel "$ACCEL" -cpu "$QEMU_CPU" -m 1G -smp 2
            -nographic -no-reboot -nic none)
        CONSOLE=ttyS0
    fi
}

boot_kernel() {
    local ver=$1 log=$VMDIR/logs/$1.log rc=0 t0 QEMU QEMU_CPU QEMU_TIMEOUT CONSOLE
    qemu_for "$ver"
    local append="console=$CONSOLE quiet panic=-1 vmtest.kernel=$ver"
    [ -n "${VMTEST_CHECKS:-}" ] && append+=" vmtest.checks=$VMTEST_CHECKS"
    [ -n "${VMTEST_VERBOSE:-}" ] && append+=" vmtest.verbose=1"
    [ -n "${VMTEST_APPEND:-}" ] && append+=" $VMTEST_APPEND"
    t0=$(date +%s)
    # the shared initramfs, then this kernel's modules (the kernel unpacks both archives)
    cat "$(initrd_for "$(kernel_arch "$ver")")" "$VMDIR/kernels/$ver/modules.cpio" >"$VMDIR/initramfs-$ver.cpio"
    timeout -k 10 "$QEMU_TIMEOUT" "${QEMU[@]}" \
        -kernel "$VMDIR/kernels/$ver/vmlinuz" -initrd "$VMDIR/initramfs-$ver.cpio" -append "$append" \
        </dev/null >"$log" 2>&1 || rc=$?
    echo "$rc" >"$VMDIR/logs/$ver.rc"
    say "$ver: guest finished in $(($(date +%s) - t0)) s (exit $rc, ${QEMU[0]} -cpu $QEMU_CPU)"
}

# ---------------------------------------------------------------- arm64 guests
# Nothing of arm64 is installed on the host: the kernels, busybox and the libc of the one
# dynamic helper (ufuncs) are Debian arm64 packages downloaded with a private apt
# configuration (APT::Architecture=arm64) and unpacked; btrace and the helpers are
# cross-built (make build-arm64, the Makefile's ARM64_HELPERS).
ARM64_USERLAND=$VMDIR/arm64-userland

# arm64_image FILE: make FILE a plain arm64 Image for qemu -kernel. Debian's arm64 vmlinuz
# is the Image gzipped (up to 6.x); an EFI zboot image ("MZ", "zimg" at byte 4) carries
# the compressed Image at the offset and size its header gives. Plain Images pass as they
# are ("ARM\x64" at byte 56).
arm64_image() {
    local f=$1 kind
    kind=$(od -An -c -j4 -N4 "$f" | tr -d ' ')
    if gzip -t "$f" 2>/dev/null; then
        gzip -dc "$f" >"$f.Image" && mv "$f.Image" "$f"
    elif [ "$kind" = zimg ]; then
        local off size comp
        off=$(od -An -tu4 -j8 -N4 "$f" | tr -d ' ')
        size=$(od -An -tu4 -j12 -N4 "$f" | tr -d ' ')
        comp=$(dd if="$f" bs=1 skip=24 count=8 status=none | tr -d '\0')
        case "$comp" in
            gzip) tail -c +$((off + 1)) "$f" | head -c "$size" | gzip -dc >"$f.Image" ;;
            zstd | zstd22) tail -c +$((off + 1)) "$f" | head -c "$size" | zstd -qdc >"$f.Image" ;;
            xzkern) tail -c +$((off + 1)) "$f" | head -c "$size" | xz -dc >"$f.Image" ;;
            *) echo "FETCH-ERROR arm64 EFI zboot image compressed with '$comp': not unpacked"; return 1 ;;
        esac
        mv "$f.Image" "$f"
    fi
    if [ "$(od -An -c -j56 -N4 "$f" | tr -d ' ')" != 'ARMd' ]; then
        echo "FETCH-ERROR the arm64 vmlinuz is not an arm64 Image (no Image magic at byte 56) after unpacking"
        return 1
    fi
}

# fetch_arm64_userland: busybox (busybox-static) and libc6 of the host's Debian suite for
# arm64, unpacked under $ARM64_USERLAND (kept until VMTEST_REFRESH).
fetch_arm64_userland() {
    local suite deb tmp=$ARM64_USERLAND.tmp
    if [ -x "$ARM64_USERLAND/bin/busybox" ] && [ -z "${VMTEST_REFRESH:-}" ]; then return 0; fi
    # shellcheck disable=SC1091 # the host's, read at run time
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    suite=${suite:-bookworm}
    # its own apt directory: the kernel of the same suite is fetched at the same time
    apt_opts "$suite" arm64 "$suite-arm64-userland"
    apt-get "${APT_OPTS[@]}" -q update >"$VMDIR/logs/fetch-arm64-userland.log" 2>&1 ||
        die "apt-get update of $suite (arm64) from $MIRROR failed: $VMDIR/logs/fetch-arm64-userland.log"
    rm -f "$APT_DIR/deb"/*.deb
    (cd "$APT_DIR/deb" && apt-get "${APT_OPTS[@]}" -q download busybox-static libc6) \
        >>"$VMDIR/logs/fetch-arm64-userland.log" 2>&1 ||
        die "apt-get download busybox-static libc6 ($suite, arm64) failed: $VMDIR/logs/fetch-arm64-userland.log"
    rm -rf "$tmp" && mkdir -p "$tmp"
    for deb in "$APT_DIR/deb"/*.deb; do dpkg-deb -x "$deb" "$tmp"; done
    [ -x "$tmp/bin/busybox" ] || die "no bin/busybox in the arm64 busybox-static package"
    rm -rf "$ARM64_USERLAND" && mv "$tmp" "$ARM64_USERLAND"
    (cd "$APT_DIR/deb" && ls) >"$ARM64_USERLAND/packages"
    rm -f "$APT_DIR/deb"/*.deb
    say "arm64 userland: $(tr '\n' ' ' <"$ARM64_USERLAND/packages")"
}

# stage_arm64_libs FILE: the program interpreter and NEEDED libraries (recursively) of an
# arm64 ELF file, taken from the unpacked arm64 libc6 (ldd cannot run a foreign binary).
stage_arm64_libs() {
    local todo=("$1") f lib path dir interp
    while [ ${#todo[@]} -gt 0 ]; do
        f=${todo[0]}
        todo=("${todo[@]:1}")
        head -c4 "$f" | grep -q ELF || continue
        interp=$(LC_ALL=C readelf -lW "$f" 2>/dev/null | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p')
        if [ -n "$interp" ] && [ ! -e "$STAGE$interp" ]; then
            [ -e "$ARM64_USERLAND$interp" ] || die "$f: its interpreter $interp is not in the arm64 libc6"
            mkdir -p "$STAGE$(dirname "$interp")"
            cp -L "$ARM64_USERLAND$interp" "$STAGE$interp"
        fi
        for lib in $(LC_ALL=C readelf -dW "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
            path=""
            for dir in /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu /lib; do
                if [ -e "$ARM64_USERLAND$dir/$lib" ]; then path=$dir/$lib && break; fi
            done
            [ -n "$path" ] || die "$f needs $lib, which the arm64 libc6 does not have"
            [ -e "$STAGE$path" ] && continue
            mkdir -p "$STAGE$(dirname "$path")"
            cp -L "$ARM64_USERLAND$path" "$STAGE$path"
            todo+=("$ARM64_USERLAND$path")
        done
    done
}

# arm64_helper HOST-PATH: the arm64 build of a test helper ($ROOT/target/NAME ->
# $ROOT/target/aarch64/NAME); other files as they are.
arm64_helper() {
    case "$1" in
        "$ROOT"/target/aarch64/*) echo "$1" ;;
        "$ROOT"/target/*) echo "$ARM64_HELPERS/${1#"$ROOT"/target/}" ;;
        *) echo "$1" ;;
    esac
}

# table_suffix: "" for amd64 guests only (logs/table.txt), else "-arm64" (table-arm64.txt).
table_suffix() {
    if has_arch arm64; then echo -arm64; fi
}

# check_arm64_binaries: the aarch64 btrace is static (like the amd64 one), btrace and the
# workload are aarch64 ELF files.
check_arm64_binaries() {
    local f headers
    for f in "$BTRACE_BIN_ARM64" "$WORKLOAD_BIN_ARM64"; do
        [ -x "$f" ] || die "arm64 guest file not found: $f (run 'make build-arm64 arm64-helpers' or set BTRACE_BIN_ARM64 / WORKLOAD_BIN_ARM64)"
        LC_ALL=C readelf -hW "$f" 2>/dev/null | grep -q 'Machine: *AArch64' || die "$f is not an aarch64 ELF file"
    done
    headers=$(LC_ALL=C readelf -lW -dW "$BTRACE_BIN_ARM64" 2>&1) || die "readelf cannot read $BTRACE_BIN_ARM64: $headers"
    case "$headers" in
        *INTERP* | *NEEDED*) die "$BTRACE_BIN_ARM64 is dynamically linked; the matrix tests the static binary: run 'make build-arm64'" ;;
    esac
}

# ---------------------------------------------------------------- main
T0=$(date +%s)
if has_arch amd64; then
    [ -x "$BTRACE_BIN" ] || die "btrace binary not found: $BTRACE_BIN (run 'make build-release' or set BTRACE_BIN)"
    [ -x "$WORKLOAD_BIN" ] || die "workload helper not found: $WORKLOAD_BIN (run 'make target/workload' or set WORKLOAD_BIN)"
fi
ensure_host_packages
if has_arch amd64; then
    # The guests must run btrace without any library of the host: no interpreter, no NEEDED.
    ELF_HEADERS=$(LC_ALL=C readelf -lW -dW "$BTRACE_BIN" 2>&1) || die "readelf cannot read $BTRACE_BIN: $ELF_HEADERS"
    case "$ELF_HEADERS" in
        *INTERP* | *NEEDED*)
            die "$BTRACE_BIN is dynamically linked ($(echo "$ELF_HEADERS" | grep -o -E 'program interpreter: [^]]*|Shared library: \[[^]]*\]' | tr '\n' ' ')); the matrix tests the static release binary: run 'make build-release'"
            ;;
    esac
fi
has_arch arm64 && check_arm64_binaries
MIRROR=$(debian_mirror)
mkdir -p "$VMDIR/logs" "$VMDIR/kernels"
# one run at a time per target dir (initramfs, logs and the apt cache are shared)
exec 9>"$VMDIR/.lock"
if ! flock -n 9; then
    say "waiting for another vmtest run using $VMDIR"
    flock 9
fi

declare -A FETCH_OK=()
pids=()
for v in "${KERNELS[@]}"; do
    rm -f "$VMDIR/logs/$v.log" "$VMDIR/logs/$v.rc"
    fetch_kernel "$v" >"$VMDIR/logs/fetch-$v.log" 2>&1 &
    pids+=($!)
done
for a in $(run_archs); do
    [ "$a" = arm64 ] && fetch_arm64_userland
    build_initramfs "$a"
done
for i in "${!KERNELS[@]}"; do
    v=${KERNELS[$i]}
    if wait "${pids[$i]}"; then
        FETCH_OK[$v]=1
        say "$v: kernel $(tail -n1 "$VMDIR/logs/fetch-$v.log")"
    else
        say "$v: cannot download kernel (Debian $(suite_for "$v"), package linux-image-cloud-$(kernel_arch "$v") from $MIRROR):"
        { grep -E '^(E|W):|FETCH-ERROR' "$VMDIR/logs/fetch-$v.log" || tail -n 5 "$VMDIR/logs/fetch-$v.log"; } |
            sed 's/^/    /' >&2
    fi
done
BOOT=()
for v in "${KERNELS[@]}"; do [ -n "${FETCH_OK[$v]:-}" ] && BOOT+=("$v"); done
[ ${#BOOT[@]} -gt 0 ] &&
    say "initramfs: $(for a in $(run_archs); do printf '%s %s ' "$a" "$(du -h "$(initrd_for "$a")" | cut -f1)"; done); booting ${BOOT[*]} ($ACCEL, timeout $(run_archs | sed "s/^amd64\$/${TIMEOUT}s/; s/^arm64\$/arm64 ${ARM64_TIMEOUT}s/" | paste -sd, -) each, $JOBS at a time)"

running=0
for v in "${BOOT[@]}"; do
    if [ "$running" -ge "$JOBS" ]; then wait -n || true; running=$((running - 1)); fi
    boot_kernel "$v" &
    running=$((running + 1))
done
wait

# ---------------------------------------------------------------- results
declare -A RES=() DET=() KREL=()
CHECKS=()
PROBLEMS=()
add_check() {
    local c
    for c in "${CHECKS[@]}"; do [ "$c" = "$1" ] && return 0; done
    CHECKS+=("$1")
}
for v in "${KERNELS[@]}"; do
    if [ -z "${FETCH_OK[$v]:-}" ]; then
        PROBLEMS+=("$v: kernel could not be downloaded (Debian $(suite_for "$v")); see $VMDIR/logs/fetch-$v.log")
        continue
    fi
    log=$VMDIR/logs/$v.log
    rc=$(cat "$VMDIR/logs/$v.rc" 2>/dev/null || echo "?")
    done_seen=""
    started=""
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            *VMTEST-*) line=VMTEST-${line#*VMTEST-} ;;
            *) continue ;;
        esac
        read -r tag name status detail <<<"$line" || true
        case "$tag" in
            VMTEST-PLAN) for c in $name $status $detail; do add_check "$c"; RES[$v,$c]=${RES[$v,$c]:-MISSING}; done ;;
            VMTEST-INFO) [ "$name" = kernel ] && KREL[$v]=$status ;;
            VMTEST-START) started=$name ;;
            VMTEST-RESULT)
                add_check "$name"
                RES[$v,$name]=$status
                DET[$v,$name]=$detail
                started=""
                ;;
            VMTEST-DONE) done_seen=1 ;;
        esac
    done <"$log"
    if [ -n "$started" ]; then RES[$v,$started]=HUNG; fi
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        # shellcheck disable=SC2016 # the quotes around the check's name are text
        PROBLEMS+=("$v: guest timed out after $(if [ "$(kernel_arch "$v")" = arm64 ]; then echo "$ARM64_TIMEOUT"; else echo "$TIMEOUT"; fi)s${started:+ during check '$started'}; log: $log")
    elif [ -z "$done_seen" ]; then
        if grep -q 'Kernel panic' "$log"; then
            PROBLEMS+=("$v: kernel panic: $(grep -m1 'Kernel panic' "$log" | tr -d '\r'); log: $log")
        else
            PROBLEMS+=("$v: guest stopped before VMTEST-DONE (qemu exit $rc); log: $log")
        fi
    fi
    [ -n "${KREL[$v]:-}" ] || PROBLEMS+=("$v: no results at all from the guest; log: $log")
done

FAILED=0
TABLE=$VMDIR/logs/table$(table_suffix).txt
exec 3>&1 >"$TABLE"
w=10
for c in "${CHECKS[@]}"; do [ "${#c}" -gt "$w" ] && w=${#c}; done
cw=8
for v in "${KERNELS[@]}"; do k=${KREL[$v]:-?}; [ "${#k}" -gt "$cw" ] && cw=${#k}; done
echo
printf "%-${w}s" "check"
for v in "${KERNELS[@]}"; do printf "  %-${cw}s" "$v"; done
echo
printf "%-${w}s" "(uname -r)"
for v in "${KERNELS[@]}"; do
    k=${KREL[$v]:-}
    [ -n "${FETCH_OK[$v]:-}" ] || k="NO KERNEL"
    printf "  %-${cw}s" "${k:-NO RESULTS}"
done
echo
for c in "${CHECKS[@]}"; do
    printf "%-${w}s" "$c"
    for v in "${KERNELS[@]}"; do
        r=${RES[$v,$c]:-MISSING}
        [ -n "${FETCH_OK[$v]:-}" ] || r=-
        case "$r" in PASS | SKIP) ;; *) FAILED=1 ;; esac
        printf "  %-${cw}s" "$r"
    done
    echo
done
exec >&3 3>&-
sed 's/ *$//' "$TABLE"
[ ${#CHECKS[@]} -gt 0 ] || [ ${#BOOT[@]} -eq 0 ] || PROBLEMS+=("no check reported anything")

# details of everything that did not pass
for v in "${KERNELS[@]}"; do
    [ -n "${FETCH_OK[$v]:-}" ] || continue
    for c in "${CHECKS[@]}"; do
        r=${RES[$v,$c]:-MISSING}
        case "$r" in
            PASS) continue ;;
            SKIP) echo "  $v $c: skipped: ${DET[$v,$c]:-}"; continue ;;
        esac
        echo
        echo "--- $v $c: $r ${DET[$v,$c]:-}"
        tr -d '\r' <"$VMDIR/logs/$v.log" | sed -n "s/^.*VMTEST-LOG $c| \{0,1\}/    /p" | tail -n 60
        if [ "$r" = HUNG ]; then
            # the guest died in this check: its last console lines (progress, kernel messages)
            tr -d '\r' <"$VMDIR/logs/$v.log" | grep -av 'VMTEST-' | tail -n 20 | sed 's/^/    console: /'
        fi
    done
done
for p in "${PROBLEMS[@]}"; do echo "vmtest: FAIL: $p"; done
echo
if [ "$FAILED" = 0 ] && [ ${#PROBLEMS[@]} -eq 0 ]; then
    say "all checks passed on ${KERNELS[*]} in $(($(date +%s) - T0)) s (logs: $VMDIR/logs)"
    exit 0
fi
say "FAILED (logs: $VMDIR/logs, $(($(date +%s) - T0)) s)"
exit 1
