#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Event throughput of `btrace tracepoint` against bpftrace `printf` on the same tracepoint
# (syscalls:sys_enter_getppid), both writing every event to a file.
#
# The workload makes N getppid calls paced at an offered rate R per second (about one
# second each); the tracer follows only that process. For each rate: the events that
# reached the output per second of the workload's own run time, and the events lost (btrace: its JSON
# summary, ring-buffer reserve failures counted in the kernel; bpftrace: its "Lost N
# events" lines). Last row: the workload flat out. Run standalone or from bench/run.sh.
#
#   bash bench/tracepoint_throughput.sh        (root; builds nothing: needs
#                                              target/release/btrace and target/workload)
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything printed is also kept, to be written into README.md at the end.
REPORT=$(mktemp)
exec > >(tee "$REPORT")
BTRACE=${BTRACE:-target/release/btrace}
WORKLOAD=${WORKLOAD:-$PWD/target/workload}
RATES=${RATES:-"25000 50000 100000 200000 400000 800000 1600000 0"}
TP=syscalls:sys_enter_getppid
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x "$BTRACE" ] || { echo "tracepoint bench: $BTRACE missing (make build-release)" >&2; exit 1; }
[ -x "$WORKLOAD" ] || { echo "tracepoint bench: $WORKLOAD missing (make target/workload)" >&2; exit 1; }
HAVE_BPFTRACE=1
command -v bpftrace >/dev/null || HAVE_BPFTRACE=0

# calls for an offered rate: about one second of work; flat out: a fixed million
calls_for() { if [ "$1" = 0 ]; then echo 1000000; else echo "$1"; fi; }

# run_btrace RATE -> "events lost seconds"
run_btrace() {
    local n ev lost
    n=$(calls_for "$1")
    WORKLOAD_TIME_FILE=$TMP/bt.time "$BTRACE" tracepoint --json "$TP" -c "$WORKLOAD rate $n $1" >"$TMP/bt.json" 2>"$TMP/bt.err"
    ev=$(grep -c '"type":"event"' "$TMP/bt.json" || true)
    lost=$(grep '"type":"summary"' "$TMP/bt.json" | sed 's/.*"lost":{"ringbuf":\([0-9]*\).*/\1/')
    echo "$ev ${lost:-?} $(cat "$TMP/bt.time")"
}

# run_bpftrace RATE -> "events lost seconds"
run_bpftrace() {
    local n ev lost
    n=$(calls_for "$1")
    WORKLOAD_TIME_FILE=$TMP/bp.time bpftrace -e "tracepoint:$TP /pid == cpid/ { printf(\"%d %d %s\\n\", pid, tid, comm); }" \
        -c "$WORKLOAD rate $n $1" >"$TMP/bp.out" 2>"$TMP/bp.err" || true
    ev=$(grep -c ' workload$' "$TMP/bp.out" || true)
    lost=$(cat "$TMP/bp.out" "$TMP/bp.err" | sed -n 's/.*Lost \([0-9]*\) events.*/\1/p' | awk '{s += $1} END {print s + 0}')
    echo "$ev $lost $(cat "$TMP/bp.time")"
}

rate_of() { awk -v e="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", e / s; else print "?" }'; }

echo "== tracepoint throughput: $TP, every event written to a file ($(uname -r), $(nproc) CPUs) =="
printf '%-12s | %-34s | %-34s\n' "offered/s" "btrace: delivered/s  lost" "bpftrace printf: delivered/s  lost"
BT_BEST=0 BP_BEST=0 BT_LOSS_AT="" BP_LOSS_AT=""
for r in $RATES; do
    read -r bev blost bsecs <<<"$(run_btrace "$r")"
    brate=$(rate_of "$bev" "$bsecs")
    if [ "$HAVE_BPFTRACE" = 1 ]; then
        read -r pev plost psecs <<<"$(run_bpftrace "$r")"
        prate=$(rate_of "$pev" "$psecs")
    else
        pev=- plost=- prate=-
    fi
    label=$r
    [ "$r" = 0 ] && label="flat out"
    printf '%-12s | %12s %8s of %-10s | %12s %8s of %-10s\n' "$label" "$brate" "$blost" "$(calls_for "$r")" "$prate" "$plost" "$(calls_for "$r")"
    if [ "$blost" = 0 ] && [ "$bev" = "$(calls_for "$r")" ]; then
        [ "$brate" -gt "$BT_BEST" ] && BT_BEST=$brate
    elif [ -z "$BT_LOSS_AT" ]; then BT_LOSS_AT=$label; fi
    if [ "$HAVE_BPFTRACE" = 1 ]; then
        if [ "$plost" = 0 ] && [ "$pev" = "$(calls_for "$r")" ]; then
            [ "$prate" -gt "$BP_BEST" ] && BP_BEST=$prate
        elif [ -z "$BP_LOSS_AT" ]; then BP_LOSS_AT=$label; fi
    fi
done
echo
echo "btrace:   highest rate delivered without loss ${BT_BEST}/s; loss starts at offered ${BT_LOSS_AT:-none of these rates}"
if [ "$HAVE_BPFTRACE" = 1 ]; then
    echo "bpftrace: highest rate delivered without loss ${BP_BEST}/s; loss starts at offered ${BP_LOSS_AT:-none of these rates}"
    if [ "$BP_BEST" -gt 0 ]; then
        echo "ratio (btrace / bpftrace, lossless events/s, this one run): $(awk -v a="$BT_BEST" -v b="$BP_BEST" 'BEGIN { printf "%.2fx", a / b }')"
    fi
else
    echo "bpftrace not installed: no comparison (apt-get install bpftrace)"
fi

# The figures of this run replace the fenced block between the bench:tracepoint markers.
exec >&-
wait "$!" 2>/dev/null || true
python3 - "$REPORT" <<'PY'
import re, sys
table = open(sys.argv[1]).read().strip()
doc = open("README.md").read()
new = re.sub(r"(<!-- bench:tracepoint -->.*?```\n).*?(\n```\n<!-- /bench:tracepoint -->)",
             lambda m: m.group(1) + table + m.group(2), doc, flags=re.S)
if new != doc:
    open("README.md", "w").write(new)
    print("(figures written into README.md)", file=sys.stderr)
PY
rm -f "$REPORT"
