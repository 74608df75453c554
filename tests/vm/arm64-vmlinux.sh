#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerate src/bpf/arm64/vmlinux.h on an x86_64 machine: the BTF of a Debian arm64 cloud
# kernel (an uncompressed arm64 Image carries its .BTF section as it is in memory), found
# by its header in the Image and dumped as C by bpftool. `make vmlinux` on an arm64 machine
# does the same from /sys/kernel/btf/vmlinux.
#
#   bash tests/vm/arm64-vmlinux.sh PATH/TO/linux-image-...-cloud-arm64_....deb
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deb=${1:?usage: arm64-vmlinux.sh linux-image-VERSION-cloud-arm64.deb (apt-get download with -o APT::Architecture=arm64)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/x"
# The first match of a glob over a package's files (plain names); none: empty.
# shellcheck disable=SC2012
image=$(ls "$tmp"/x/boot/vmlinuz-* "$tmp"/x/usr/lib/modules/*/vmlinuz 2>/dev/null | head -n1) || true
[ -n "$image" ] || { echo "arm64-vmlinux: no vmlinuz in $deb" >&2; exit 1; }
if gzip -t "$image" 2>/dev/null; then gzip -dc "$image" >"$tmp/Image"; else cp "$image" "$tmp/Image"; fi
python3 - "$tmp/Image" "$tmp/vmlinux.btf" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
best = None
i = data.find(b'\x9f\xeb\x01\x00')          # BTF magic 0xeb9f, version 1, flags 0
while i != -1:
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from('<5I', data, i + 4)
    size = hdr_len + str_off + str_len
    # the kernel's own BTF: types first, strings right after them, large, strings start with NUL
    if (hdr_len in (24, 32) and type_off == 0 and str_off == type_len and type_len > 1 << 20
            and i + size <= len(data) and data[i + hdr_len + str_off] == 0
            and (best is None or size > best[1])):
        best = (i, size)
    i = data.find(b'\x9f\xeb\x01\x00', i + 1)
if best is None:
    sys.exit('no kernel BTF found in the Image')
open(sys.argv[2], 'wb').write(data[best[0]:best[0] + best[1]])
PY
bpftool btf dump file "$tmp/vmlinux.btf" format c >"$ROOT/src/bpf/arm64/vmlinux.h"
echo "src/bpf/arm64/vmlinux.h from $(basename "$deb"): $(wc -l <"$ROOT/src/bpf/arm64/vmlinux.h") lines"
