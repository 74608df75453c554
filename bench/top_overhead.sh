#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole cost of `btrace top`: its own CPU time (utime+stime from /proc/PID/stat)
# plus the kernel-measured run time of all its BPF programs (run_time_ns, which the
# dashboard itself enables), over DURATION seconds, as a share of the whole machine.
# Measured twice: with the machine otherwise as it is ("idle"), and under a syscall-heavy
# load (a getppid loop at a steady rate on every CPU). The dashboard runs as a person
# would run it: in a terminal (a detached tmux session), refreshing every second.
# Figures are written into README.md between the bench:top markers.
#
# Standalone: bash bench/top_overhead.sh   (DURATION=60 LOAD_RATE=300000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BTRACE=${BTRACE:-target/release/btrace}
WORKLOAD=${WORKLOAD:-target/workload}
DURATION=${DURATION:-60}
LOAD_RATE=${LOAD_RATE:-300000} # getppid per second on each CPU
[ -x "$BTRACE" ] || make -s build-release
[ -x "$WORKLOAD" ] || make -s target/workload
command -v tmux >/dev/null && command -v bpftool >/dev/null || { echo "needs tmux and bpftool: run make deps"; exit 1; }

NCPU=$(nproc)
HZ=$(getconf CLK_TCK)
SOCK=btrace-bench-$$
LOADS=()
cleanup() {
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    for p in "${LOADS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

prog_ids() {
    grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -un
}

# Sum of run_time_ns and run_cnt of the given programs.
bpf_runtime() {
    local ns=0 cnt=0 id j
    for id in $2; do
        j=$(bpftool -j prog show id "$id")
        ns=$((ns + $(echo "$j" | sed -n 's/.*"run_time_ns":\([0-9]*\).*/\1/p' | grep . || echo 0)))
        cnt=$((cnt + $(echo "$j" | sed -n 's/.*"run_cnt":\([0-9]*\).*/\1/p' | grep . || echo 0)))
    done
    echo "$ns $cnt"
}

# measure LABEL: runs the dashboard DURATION seconds; prints one table row.
measure() {
    tmux -L "$SOCK" new-session -d -s top -x 180 -y 50 "$BTRACE top"
    local shell pid=""
    shell=$(tmux -L "$SOCK" display -p -t top '#{pane_pid}')
    for _ in $(seq 100); do
        if [ "$(readlink "/proc/$shell/exe")" = "$(readlink -f "$BTRACE")" ]; then pid=$shell; break; fi
        pid=$(awk '{print $1}' "/proc/$shell/task/$shell/children" 2>/dev/null)
        [ -n "$pid" ] && break
        sleep 0.05
    done
    sleep 3 # loaded, attached, first refreshes drawn
    local ids t0 r0 t1 r1
    ids=$(prog_ids "$pid")
    t0=$(cpu_ticks "$pid"); r0=$(bpf_runtime "$pid" "$ids")
    sleep "$DURATION"
    t1=$(cpu_ticks "$pid"); r1=$(bpf_runtime "$pid" "$ids")
    tmux -L "$SOCK" send-keys -t top q
    sleep 1
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    awk -v label="$1" -v dt="$((t1 - t0))" -v hz="$HZ" -v ns0="${r0% *}" -v ns1="${r1% *}" \
        -v c0="${r0#* }" -v c1="${r1#* }" -v d="$DURATION" -v n="$NCPU" 'BEGIN {
        user = dt / hz; bpf = (ns1 - ns0) / 1e9; runs = c1 - c0;
        avg = runs > 0 ? (ns1 - ns0) / runs : 0;
        printf "| %s | %.3f%% | %.3f%% | **%.3f%%** | %.0f | %.0f ns |\n", label,
            100 * user / (d * n), 100 * bpf / (d * n), 100 * (user + bpf) / (d * n),
            runs / d, avg
    }'
}

echo "btrace top overhead: ${DURATION} s per case, ${NCPU} CPUs" >&2
header="| machine | dashboard user+sys CPU | its BPF programs' run time | whole cost | probe runs per s | avg ns per run |
|---|---|---|---|---|---|"
idle=$(measure "no load added")
echo "$idle" >&2
for cpu in $(seq 0 $((NCPU - 1))); do
    taskset -c "$cpu" "$WORKLOAD" pace "$LOAD_RATE" $((DURATION + 10)) &
    LOADS+=($!)
done
loaded=$(measure "getppid load, ${LOAD_RATE}/s per CPU")
echo "$loaded" >&2

text="$header
$idle
$loaded

\"No load added\": the machine as it was, with nothing else started by the bench (the
probe runs it shows come from whatever else ran). Whole cost = the
dashboard process's own CPU time plus the run time the kernel measured
for all its BPF programs, over ${DURATION} s, as a share of all ${NCPU} CPUs (100% = the
whole machine). The dashboard ran in a terminal (tmux, 180x50), refreshing every second.
The run-time statistics it enables add two clock reads to every BPF program run on the
machine; that part is not inside run_time_ns and is not counted here.
Measured $(date +%F) on kernel $(uname -r), one run of \`bash bench/top_overhead.sh\`."
echo "$text"
python3 - "$text" <<'EOF'
import re, sys
text = sys.argv[1]
doc = open("README.md").read()
new = re.sub(r"(<!-- bench:top -->\n).*?(<!-- /bench:top -->)",
             lambda m: m.group(1) + text + "\n" + m.group(2), doc, flags=re.S)
if new != doc:
    open("README.md", "w").write(new)
    print("(figures written into README.md)")
EOF
