#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Event throughput of `btrace tracepoint` against bpftrace `printf` on the same tracepoint
# (syscalls:sys_enter_getppid), every event written to a file.
#
# The workload makes N getppid calls paced at an offered rate R per second (about one
# second each); the tracer follows only that process. For each rate: the events that
# reached the output per second of the workload's own run time, and the events lost
# (btrace: its summary, ring-buffer reserve failures counted in the kernel; bpftrace: its
# "Lost N events" lines). Last row: the workload flat out. Columns:
#   drain floor  `btrace tracepoint --drain-floor` (testing builds): takes every record
#                from the same ring buffer and counts it, decodes and writes nothing: the
#                most the kernel side and the wakeups allow
#   btrace json  `btrace tracepoint --json -o FILE`
#   btrace text  `btrace tracepoint -o FILE`
#   bpftrace     `bpftrace -e 'tracepoint:... { printf(...) }'` into a file
# Then the latency of a lone event at a low rate: the time from the event (its ts_ns) to
# its line reaching a reader of btrace's output.
# Run standalone or from bench/run.sh.
#
#   bash bench/tracepoint_throughput.sh        (root; builds nothing: needs
#                                              target/release/btrace and target/workload;
#                                              the drain floor needs BTRACE to be a
#                                              `testing` build, as make bench gives it)
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything printed is also kept, to be written into README.md at the end.
REPORT=$(mktemp)
exec > >(tee "$REPORT")
BTRACE=${BTRACE:-target/release/btrace}
WORKLOAD=${WORKLOAD:-$PWD/target/workload}
RATES=${RATES:-"50000 100000 200000 400000 800000 1000000 1200000 1600000 0"}
TP=syscalls:sys_enter_getppid
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x "$BTRACE" ] || { echo "tracepoint bench: $BTRACE missing (make build-release)" >&2; exit 1; }
[ -x "$WORKLOAD" ] || { echo "tracepoint bench: $WORKLOAD missing (make target/workload)" >&2; exit 1; }
HAVE_BPFTRACE=1
command -v bpftrace >/dev/null || HAVE_BPFTRACE=0
HAVE_FLOOR=1
"$BTRACE" tracepoint --drain-floor --help >/dev/null 2>&1 || HAVE_FLOOR=0

# calls for an offered rate: about one second of work; flat out: a fixed million
calls_for() { if [ "$1" = 0 ]; then echo 1000000; else echo "$1"; fi; }

summary_lost() { grep '"type":"summary"' "$1" | sed 's/.*"lost":{"ringbuf":\([0-9]*\).*/\1/'; }

# run_floor RATE -> "events lost seconds"
run_floor() {
    local n
    n=$(calls_for "$1")
    WORKLOAD_TIME_FILE=$TMP/fl.time "$BTRACE" tracepoint --drain-floor --json "$TP" -o "$TMP/fl.json" -c "$WORKLOAD rate $n $1" 2>"$TMP/fl.err"
    echo "$(grep '"type":"summary"' "$TMP/fl.json" | sed 's/.*"events":\([0-9]*\).*/\1/') $(summary_lost "$TMP/fl.json") $(cat "$TMP/fl.time")"
}

# run_json RATE -> "events lost seconds"
run_json() {
    local n ev
    n=$(calls_for "$1")
    WORKLOAD_TIME_FILE=$TMP/bt.time "$BTRACE" tracepoint --json "$TP" -o "$TMP/bt.json" -c "$WORKLOAD rate $n $1" 2>"$TMP/bt.err"
    ev=$(grep -c '"type":"event"' "$TMP/bt.json" || true)
    echo "$ev $(summary_lost "$TMP/bt.json") $(cat "$TMP/bt.time")"
}

# run_text RATE -> "events lost seconds"
run_text() {
    local n ev lost
    n=$(calls_for "$1")
    WORKLOAD_TIME_FILE=$TMP/tx.time "$BTRACE" tracepoint "$TP" -o "$TMP/bt.txt" -c "$WORKLOAD rate $n $1" 2>"$TMP/tx.err"
    ev=$(grep -c " $TP __syscall_nr=" "$TMP/bt.txt" || true)
    lost=$(sed -n 's/.*Lost: \([0-9]*\) events (ring buffer full).*/\1/p' "$TMP/bt.txt" | tail -1)
    echo "$ev ${lost:-?} $(cat "$TMP/tx.time")"
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

TOOLS="floor json text bpftrace"
declare -A BEST LOSS_AT
for t in $TOOLS; do BEST[$t]=0; LOSS_AT[$t]=""; done

echo "== tracepoint throughput: $TP, every event written to a file ($(uname -r), $(nproc) CPUs) =="
echo "   each cell: events delivered per second of the workload's run time / events lost"
printf '%-10s | %-20s | %-20s | %-20s | %-20s\n' "offered/s" "drain floor" "btrace --json" "btrace text" "bpftrace printf"
for r in $RATES; do
    label=$r
    [ "$r" = 0 ] && label="flat out"
    row=$(printf '%-10s' "$label")
    for t in $TOOLS; do
        if { [ "$t" = floor ] && [ "$HAVE_FLOOR" = 0 ]; } || { [ "$t" = bpftrace ] && [ "$HAVE_BPFTRACE" = 0 ]; }; then
            row+=$(printf ' | %-20s' "-")
            continue
        fi
        if [ "$t" = bpftrace ]; then out=$(run_bpftrace "$r"); else out=$(run_"$t" "$r"); fi
        read -r ev lost secs <<<"$out"
        rate=$(rate_of "$ev" "$secs")
        row+=$(printf ' | %9s / %-8s' "$rate" "$lost")
        if [ "$lost" = 0 ] && [ "$ev" = "$(calls_for "$r")" ]; then
            [ "$rate" -gt "${BEST[$t]}" ] && BEST[$t]=$rate
        elif [ -z "${LOSS_AT[$t]}" ]; then LOSS_AT[$t]=$label; fi
    done
    echo "$row"
done
echo
for t in $TOOLS; do
    case $t in
        floor) name="drain floor:  "; [ "$HAVE_FLOOR" = 1 ] || { echo "$name (not a testing build: no --drain-floor)"; continue; } ;;
        json) name="btrace --json:" ;;
        text) name="btrace text:  " ;;
        bpftrace) name="bpftrace:     "; [ "$HAVE_BPFTRACE" = 1 ] || { echo "bpftrace not installed: no comparison (apt-get install bpftrace)"; continue; } ;;
    esac
    echo "$name highest rate delivered without loss ${BEST[$t]}/s; loss starts at offered ${LOSS_AT[$t]:-none of these rates}"
done
if [ "$HAVE_BPFTRACE" = 1 ] && [ "${BEST[bpftrace]}" -gt 0 ]; then
    echo "ratio (btrace --json / bpftrace, lossless events/s, this one run): $(awk -v a="${BEST[json]}" -v b="${BEST[bpftrace]}" 'BEGIN { printf "%.2fx", a / b }')"
fi
if [ "$HAVE_FLOOR" = 1 ] && [ "${BEST[floor]}" -gt 0 ]; then
    echo "btrace --json / drain floor (lossless events/s): $(awk -v a="${BEST[json]}" -v b="${BEST[floor]}" 'BEGIN { printf "%.2f", a / b }')"
fi

# Latency at a low rate: this script's own getppid calls, 20 at 10 per second, each
# line timed as it reaches the reader (CLOCK_MONOTONIC, the clock of ts_ns).
python3 - "$BTRACE" "$TP" <<'PY'
import json, os, signal, subprocess, sys, threading, time
btrace, tp = sys.argv[1:]
p = subprocess.Popen([btrace, "tracepoint", "--json", tp, "-p", str(os.getpid())],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
for line in p.stderr:
    if line.startswith("Tracing"):
        break
lat = []
def read():
    for line in p.stdout:
        now = time.monotonic_ns()
        rec = json.loads(line)
        if rec.get("type") == "event":
            lat.append((now - rec["ts_ns"]) / 1e6)
reader = threading.Thread(target=read)
reader.start()
for _ in range(20):
    os.getppid()
    time.sleep(0.1)
time.sleep(0.2)
p.send_signal(signal.SIGINT)
reader.join()
p.wait()
lat.sort()
if lat:
    print(f"latency at 10 events/s, from the event to its line at the reader ({len(lat)} events): "
          f"median {lat[len(lat) // 2]:.2f} ms, max {lat[-1]:.2f} ms")
PY

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
