#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cost per traced call of a user-space function: target/ufuncs calls f() N times flat out
# (`ufuncs loop N`, ns per call measured by the program itself) with nothing attached,
# under `btrace uprobe` (entry only; with --ret; with --hist), under bpftrace's
# `uprobe:` with count(), and under the floor for --hist: a bpftrace uprobe+uretprobe pair
# that only reads the clock. Median of RUNS runs each. Figures go into README.md between
# the bench:uprobe markers.
#
# Standalone: bash bench/uprobe_cost.sh   (N=200000 RUNS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BTRACE=${BTRACE:-target/release/btrace}
UFUNCS=$(readlink -f target/ufuncs)
N=${N:-200000}
RUNS=${RUNS:-3}
[ -x "$BTRACE" ] || make -s build-release
make -s target/ufuncs
TIME_FILE=$(mktemp)
trap 'rm -f "$TIME_FILE"' EXIT
export UFUNCS_TIME_FILE=$TIME_FILE

# median CMD...: runs CMD (which runs `ufuncs loop N`) RUNS times; prints the median ns/call.
median() {
    local v=()
    for _ in $(seq "$RUNS"); do
        : >"$TIME_FILE"
        "$@" >/dev/null 2>&1
        v+=("$(cat "$TIME_FILE")")
    done
    printf '%s\n' "${v[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

LOAD=$(cut -d' ' -f1 /proc/loadavg)
LOOP="$UFUNCS loop $N"
base=$(median $LOOP)
row() { # LABEL NS
    awk -v l="$1" -v ns="$2" -v b="$base" 'BEGIN { printf "| %s | %.0f ns | +%.0f ns |\n", l, ns, ns - b }'
}
entry=$(median "$BTRACE" uprobe "$UFUNCS:f" -o /dev/null -c "$LOOP")
ret=$(median "$BTRACE" uprobe "$UFUNCS:f" --ret -o /dev/null -c "$LOOP")
hist=$(median "$BTRACE" uprobe "$UFUNCS:f" --hist -o /dev/null -c "$LOOP")
bt_count=$(median bpftrace -e "uprobe:$UFUNCS:f { @ = count(); }" -c "$LOOP")
bt_floor=$(median bpftrace -e "uprobe:$UFUNCS:f { \$t = nsecs; } uretprobe:$UFUNCS:f { \$t = nsecs; }" -c "$LOOP")

table="| configuration | per call | added |
|---|---|---|
$(row "nothing attached" "$base")
$(row "btrace uprobe (entry, an event per call)" "$entry")
$(row "btrace uprobe --ret (entry+return, an event per call)" "$ret")
$(row "btrace uprobe --hist (entry+return, histogram in the kernel)" "$hist")
$(row "bpftrace uprobe with count()" "$bt_count")
$(row "floor: bpftrace uprobe+uretprobe reading only the clock" "$bt_floor")"
echo "$table"
ratio=$(awk -v h="$hist" -v f="$bt_floor" -v b="$base" 'BEGIN { printf "%.2f", (h - b) / (f - b) }')
block="<!-- bench:uprobe -->
$table

\`ufuncs loop $N\` (f called $N times flat out), ns per call as the program measures it,
median of $RUNS runs; \`-o /dev/null\` for btrace's events. \`--hist\` costs ${ratio}x the
floor's added cost. Measured $(date -u +%F) on kernel $(uname -r) ($(nproc) CPUs, load
average $LOAD at the start: uprobe traps are costly under emulation and vary with load),
one run of \`bash bench/uprobe_cost.sh\`.
<!-- /bench:uprobe -->"
python3 - "$block" <<'PY'
import re, sys
block = sys.argv[1]
s = open("README.md").read()
s2 = re.sub(r"<!-- bench:uprobe -->.*?<!-- /bench:uprobe -->", lambda m: block, s, flags=re.S)
open("README.md", "w").write(s2)
PY
