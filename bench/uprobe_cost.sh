#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cost per traced call of a user-space function: target/ufuncs calls f() N times flat out
# (`ufuncs loop N`, ns per call measured by the program itself) with nothing attached,
# under `btrace uprobe` (entry only; with --ret; with --hist; with --count), under
# bpftrace's `uprobe:` with count(), and under the floors of --hist: btrace's hidden
# `floor uprobe` (a uprobe+uretprobe pair: clock on entry in task storage, clock on return,
# nothing else; only in `testing` builds, as `make bench` makes) and a bpftrace
# uprobe+uretprobe pair that only reads the clock.
# The configurations are run in turn, RUNS rounds of one run each (interleaved, so a
# change in the machine's load touches every configuration alike); each row shows the
# median and the spread (lowest..highest) of its runs. Figures go into README.md between
# the bench:uprobe markers.
#
# Standalone: bash bench/uprobe_cost.sh   (N=100000 RUNS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BTRACE=${BTRACE:-target/release/btrace}
UFUNCS=$(readlink -f target/ufuncs)
N=${N:-100000}
RUNS=${RUNS:-5}
[ -x "$BTRACE" ] || make -s build-release
make -s target/ufuncs
TIME_FILE=$(mktemp)
trap 'rm -f "$TIME_FILE"' EXIT
export UFUNCS_TIME_FILE=$TIME_FILE

LOAD=$(cut -d' ' -f1 /proc/loadavg)
LOOP="$UFUNCS loop $N"
F="$UFUNCS:f"
# name|label|command (run through eval; each runs `ufuncs loop N` once). btrace runs with
# --no-children: the one process, as bpftrace's -c binds its uprobes (without it btrace
# follows the command's children, so every process mapping the file traps and is filtered
# in the kernel).
CONFIGS=(
    "base|nothing attached|$LOOP"
    "entry|btrace uprobe (entry, an event per call)|$BTRACE uprobe $F -o /dev/null --no-children -c '$LOOP'"
    "ret|btrace uprobe --ret (entry+return, an event per call)|$BTRACE uprobe $F --ret -o /dev/null --no-children -c '$LOOP'"
    "hist|btrace uprobe --hist (entry+return, histogram in the kernel)|$BTRACE uprobe $F --hist -o /dev/null --no-children -c '$LOOP'"
    "count|btrace uprobe --count (entry, a count in the kernel)|$BTRACE uprobe $F --count -o /dev/null --no-children -c '$LOOP'"
    "bt_count|bpftrace uprobe with count()|bpftrace -e 'uprobe:$F { @ = count(); }' -c '$LOOP'"
    "bt_event|bpftrace uprobe with printf (an event per call)|bpftrace -e 'uprobe:$F { printf(\"%d %d %d\\n\", tid, arg0, arg1); }' -c '$LOOP' -o /dev/null"
    "bt_floor|bpftrace uprobe+uretprobe reading only the clock|bpftrace -e 'uprobe:$F { \$t = nsecs; } uretprobe:$F { \$t = nsecs; }' -c '$LOOP'"
)
if "$BTRACE" floor --help 2>/dev/null | grep -q uprobe; then
    CONFIGS+=("floor|floor: uprobe+uretprobe, clock in task storage (btrace floor uprobe)|$BTRACE floor uprobe $F -c '$LOOP'")
fi

declare -A VALUES
for round in $(seq "$RUNS"); do
    for c in "${CONFIGS[@]}"; do
        IFS='|' read -r name _ cmd <<<"$c"
        : >"$TIME_FILE"
        eval "$cmd" >/dev/null 2>&1 || true
        v=$(cat "$TIME_FILE")
        [ -n "$v" ] || { echo "uprobe_cost: '$name' gave no time (round $round)" >&2; exit 1; }
        VALUES[$name]="${VALUES[$name]:-} $v"
    done
done

# stat NAME: "median min max" of its runs.
stat() {
    tr ' ' '\n' <<<"${VALUES[$1]}" | grep . | sort -n |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[1], a[NR] }'
}
read -r base _ _ <<<"$(stat base)"
declare -A MED
rows=""
for c in "${CONFIGS[@]}"; do
    IFS='|' read -r name label _ <<<"$c"
    read -r med lo hi <<<"$(stat "$name")"
    MED[$name]=$med
    rows+=$(awk -v l="$label" -v m="$med" -v lo="$lo" -v hi="$hi" -v b="$base" \
        'BEGIN { printf "| %s | %.0f ns | +%.0f ns | %.0f..%.0f ns |", l, m, m - b, lo, hi }')$'\n'
done
table="| configuration | per call (median) | added | spread (lowest..highest) |
|---|---|---|---|
${rows%$'\n'}"
echo "$table"
# Start-up and exit with many probes: `uprobe 'libc:*a*' --count` (about 1000 functions of
# libc, every process mapping it trapping) for -d 1, RUNS times: seconds from start to the
# `Tracing` line, and from the end of the second traced to exit (detaching), median.
MANY_GLOB='libc:*a*'
read -r many_n many_hook many_attach many_exit <<<"$(python3 - "$BTRACE" "$MANY_GLOB" "$RUNS" <<'PY'
import json, statistics, subprocess, sys, time
btrace, glob, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
attach, exit_, n, hook = [], [], 0, "?"
for _ in range(runs):
    t0 = time.monotonic()
    p = subprocess.Popen([btrace, "uprobe", glob, "--count", "--max-probes", "10000", "-d", "1", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if line.startswith("Tracing"):
            attach.append(time.monotonic() - t0)
            t1 = time.monotonic()
            break
    out, _ = p.communicate()
    exit_.append(time.monotonic() - t1 - 1.0)
    s = [json.loads(l) for l in out.splitlines() if '"summary"' in l][-1]
    n, hook = s["functions"] + s.get("refused", 0), s["hook"]
print(n, hook, "%.2f" % statistics.median(attach), "%.2f" % statistics.median(exit_))
PY
)"

ratio() { # A B: added cost of A over added cost of B
    awk -v a="${MED[$1]}" -v c="${MED[$2]}" -v b="$base" 'BEGIN { printf "%.2f", (a - b) / (c - b) }'
}
floor_note=""
if [ -n "${MED[floor]:-}" ]; then
    floor_note=" and $(ratio hist floor)x that of btrace's own floor (goal: at most 1.2x)"
fi
block="<!-- bench:uprobe -->
$table

\`ufuncs loop $N\` (f called $N times flat out), ns per call as the program measures it;
$RUNS rounds, each running every configuration once in turn (interleaved), median and
spread of the rounds; \`-o /dev/null\` for btrace's output. The added cost of \`--hist\` is
$(ratio hist bt_floor)x that of the bpftrace clock-only pair$floor_note; \`--count\` costs
$(ratio count bt_count)x bpftrace's \`count()\`; entry-only events $(ratio entry bt_count)x its
\`count()\` and $(ratio entry bt_event)x its \`printf\` of an event per call.
Many probes: \`btrace uprobe '$MANY_GLOB' --count -d 1\` ($many_n functions of libc, via
$many_hook) said \`Tracing\` after $many_attach s and exited $many_exit s after its second
(medians of $RUNS runs).
Measured $(date -u +%F) on kernel $(uname -r) ($(nproc) CPUs, load average $LOAD at the
start: uprobe traps are costly under emulation and vary with load), one run of
\`bash bench/uprobe_cost.sh\`.
<!-- /bench:uprobe -->"
python3 - "$block" <<'PY'
import re, sys
block = sys.argv[1]
s = open("README.md").read()
s2 = re.sub(r"<!-- bench:uprobe -->.*?<!-- /bench:uprobe -->", lambda m: block, s, flags=re.S)
open("README.md", "w").write(s2)
PY
