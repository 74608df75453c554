#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Release archives and Debian packages of the static binaries, for `make dist`:
#
#   bash contrib/dist.sh OUT_DIR X86_64_BIN AARCH64_BIN
#
# writes OUT_DIR/btrace-VERSION-{x86_64,aarch64}-linux.tar.gz, btrace_VERSION_{amd64,arm64}.deb
# and SHA256SUMS. Man pages and completions come from `btrace generate` (the same flag
# definitions as --help), run with the binary of this machine's architecture. The files are
# reproducible: dates are the last commit's (SOURCE_DATE_EPOCH), owners root, names sorted.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$1
declare -A BIN=([x86_64]=$2 [aarch64]=$3)
declare -A DEB_ARCH=([x86_64]=amd64 [aarch64]=arm64)
cd "$ROOT"

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$EPOCH
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
MAINTAINER="btrace maintainers <maintainers@users.noreply.b-seed-03c51b71.example>"

for arch in x86_64 aarch64; do
    bin=${BIN[$arch]}
    [ -x "$bin" ] || { echo "dist: $bin is missing (make build-release build-arm64)" >&2; exit 1; }
    if readelf -lW "$bin" | grep -q INTERP || readelf -dW "$bin" | grep -q NEEDED; then
        echo "dist: $bin is not static" >&2
        exit 1
    fi
done
host_bin=${BIN[$(uname -m)]}

rm -rf "$OUT"
STAGE=$OUT/stage
mkdir -p "$STAGE/gen/man" "$STAGE/gen/completions"
"$host_bin" generate man "$STAGE/gen/man"
"$host_bin" generate complete-bash >"$STAGE/gen/completions/btrace.bash"
"$host_bin" generate complete-zsh >"$STAGE/gen/completions/_btrace"
"$host_bin" generate complete-fish >"$STAGE/gen/completions/btrace.fish"

# The package's machine-readable copyright file: btrace's own licences, and the statically
# linked crates and libraries by reference to THIRD-PARTY.md.gz.
deb_copyright() {
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: btrace
Comment: The binary is statically linked with the Rust crates and C libraries
 listed in /usr/share/doc/btrace/THIRD-PARTY.md.gz, each under its own licence
 (MIT, Apache-2.0, BSD-2-Clause, BSD-3-Clause, ISC, Zlib, CDDL-1.0,
 Unicode-3.0; LGPL-2.1-or-later for glibc, GPL-2.0-or-later or
 LGPL-3.0-or-later for libelf). The release archive
 btrace-VERSION-ARCH-linux.tar.gz carries every licence text.

Files: *
Copyright: 2026 the btrace authors
License: Apache-2.0

Files: src/*.bpf.c src/bpf/include/*.h
Copyright: 2026 the btrace authors
License: GPL-2.0-only or BSD-2-Clause
Comment: the kernel programs embedded in the binary

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

License: GPL-2.0-only
 On Debian systems, the full text of the GNU General Public License version 2
 is in /usr/share/common-licenses/GPL-2.

License: BSD-2-Clause
EOF
    sed -e '1,/^Copyright/d' LICENSES/BSD-2-Clause.txt | sed -e '1{/^$/d}' -e 's/^$/./' -e 's/^/ /'
}

# One tarball: owners root, names sorted, dates the commit's, gzip without a timestamp.
pack() {
    local dir=$1 name=$2
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
        -C "$(dirname "$dir")" -cf - "$(basename "$dir")" | gzip -9n >"$OUT/$name"
}

for arch in x86_64 aarch64; do
    triple=$arch-unknown-linux-gnu
    # ---- the archive: btrace-VERSION-ARCH-linux/ ----
    top=$STAGE/btrace-$VERSION-$arch-linux
    mkdir -p "$top/man/man1" "$top/completions" "$top/systemd"
    install -m 0755 "${BIN[$arch]}" "$top/btrace"
    cp README.md CHANGELOG.md LICENSE "$top/"
    cp -r LICENSES "$top/LICENSES"
    cp "$STAGE"/gen/man/*.1 "$top/man/man1/"
    cp "$STAGE"/gen/completions/* "$top/completions/"
    cp contrib/btrace-serve.service "$top/systemd/"
    python3 contrib/third_party.py "$triple" "$top" >/dev/null
    pack "$top" "btrace-$VERSION-$arch-linux.tar.gz"

    # ---- the Debian package ----
    deb_arch=${DEB_ARCH[$arch]}
    pkg=$STAGE/deb-$deb_arch
    doc=$pkg/usr/share/doc/btrace
    mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/share/man/man1" "$doc" \
        "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
        "$pkg/usr/share/fish/vendor_completions.d" "$pkg/lib/systemd/system"
    install -m 0755 "${BIN[$arch]}" "$pkg/usr/bin/btrace"
    for m in "$STAGE"/gen/man/*.1; do
        page=$(basename "$m")
        gzip -9n <"$m" >"$pkg/usr/share/man/man1/$page.gz"
    done
    install -m 0644 "$STAGE/gen/completions/btrace.bash" "$pkg/usr/share/bash-completion/completions/btrace"
    install -m 0644 "$STAGE/gen/completions/_btrace" "$pkg/usr/share/zsh/vendor-completions/_btrace"
    install -m 0644 "$STAGE/gen/completions/btrace.fish" "$pkg/usr/share/fish/vendor_completions.d/btrace.fish"
    # Installed, not enabled: no maintainer script starts it.
    sed 's|/usr/local/bin/btrace|/usr/bin/btrace|g; /^# Install:/,/^# \/etc\/systemd/d' \
        contrib/btrace-serve.service >"$pkg/lib/systemd/system/btrace-serve.service"
    chmod 0644 "$pkg/lib/systemd/system/btrace-serve.service"
    # What lintian says of any static binary, kept by design (README, Build): one file
    # that runs on every distribution, with zlib's libz.a (libelf's compressed sections)
    # and unsafe-libyaml (serde_yaml_ng's Rust translation of libyaml, for serve
    # --web-config) inside it. A static-pie executable is ET_DYN without NEEDED entries.
    mkdir -p "$pkg/usr/share/lintian/overrides"
    cat >"$pkg/usr/share/lintian/overrides/btrace" <<'EOF'
# One static binary by design: it runs on any distribution, whatever its C library.
btrace: statically-linked-binary [usr/bin/btrace]
# A static-pie executable: ET_DYN with no NEEDED entry, not a library.
btrace: shared-library-lacks-prerequisites [usr/bin/btrace]
# Linked statically into the one binary: libz.a, and unsafe-libyaml (Rust).
btrace: embedded-library zlib [usr/bin/btrace]
btrace: embedded-library libyaml [usr/bin/btrace]
EOF
    gzip -9n <README.md >"$doc/README.md.gz"
    gzip -9n <CHANGELOG.md >"$doc/CHANGELOG.md.gz"
    gzip -9n <"$top/THIRD-PARTY.md" >"$doc/THIRD-PARTY.md.gz"
    deb_copyright >"$doc/copyright"
    {
        echo "btrace ($VERSION) unstable; urgency=medium"
        echo
        echo "  * Release $VERSION, built from commit $COMMIT; the changes are in"
        echo "    /usr/share/doc/btrace/CHANGELOG.md.gz."
        echo
        echo " -- $MAINTAINER  $(date -u -R -d "@$EPOCH")"
    } | gzip -9n >"$doc/changelog.gz"
    find "$pkg" -type d -exec chmod 0755 {} +
    find "$pkg/usr/share" -type f -exec chmod 0644 {} +
    size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
    cat >"$pkg/DEBIAN/control" <<EOF
Package: btrace
Version: $VERSION
Architecture: $deb_arch
Maintainer: $MAINTAINER
Installed-Size: $size
Section: utils
Priority: optional
Description: eBPF tracing tool for Linux in one static binary
 btrace answers what a process, service or container does in the kernel:
 syscall latency histograms, every exec and open, block I/O and run-queue
 latency, kernel and user function calls with typed arguments, tracepoints,
 USDT probes, TCP connections with their bytes, CPU and off-CPU profiles
 with flame graphs, a live dashboard and a Prometheus exporter.
 .
 Every kernel program is a CO-RE object embedded in the binary: nothing is
 compiled on the host and no kernel headers are needed (Linux 5.8 or newer
 with BTF). The binary is statically linked and needs no library.
 .
 The systemd unit btrace-serve.service is installed but not enabled.
EOF
    (cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
        xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
    find "$pkg" -exec touch -h -d "@$EPOCH" {} +
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$OUT/btrace_${VERSION}_${deb_arch}.deb" >/dev/null
done

(cd "$OUT" && sha256sum -- *.tar.gz *.deb >SHA256SUMS)
rm -rf "$STAGE"
ls -l "$OUT"
