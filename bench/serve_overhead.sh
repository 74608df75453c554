#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The idle cost of `btrace serve` with the default groups, scraped every second: its own
# CPU time (utime+stime from /proc/PID/stat) plus the kernel-measured run time of its BPF
# programs (run_time_ns; serve enables run-time statistics itself), over DURATION
# seconds, as a share of the whole machine; and scrape latency (curl's time_total for
# the whole response, and the exporter's own btrace_scrape_duration_seconds) over
# SCRAPES scrapes; then the same scrape latency with `--by cgroup` once CGROUPS cgroups
# made by the bench (under the cgroup v2 mount) have each run a short workload (exec
# plus 100 getppid calls), so each has its own series, alone and while SLOW clients (5)
# read the body slowly. Figures are written into README.md between the bench:serve
# markers.
#
# Standalone: bash bench/serve_overhead.sh   (DURATION=60 SCRAPES=200 CGROUPS=100 by
# default); SERVE_PARTS=cgroup runs only the --by cgroup part and prints its row.
set -euo pipefail
cd "$(dirname "$0")/.."
BTRACE=${BTRACE:-target/release/btrace}
DURATION=${DURATION:-60}
SCRAPES=${SCRAPES:-200}
PORT=${PORT:-19535}
CGROUPS=${CGROUPS:-100}
SLOW=${SLOW:-5}
SERVE_PARTS=${SERVE_PARTS:-all}
[ -x "$BTRACE" ] || make -s build-release
[ -x target/workload ] || make -s target/workload
command -v bpftool >/dev/null && command -v curl >/dev/null || { echo "needs bpftool and curl"; exit 1; }

NCPU=$(nproc)
HZ=$(getconf CLK_TCK)

# SCRAPES timed scrapes of URL, back to back: "time_total size" lines into FILE; then as
# many untimed, each body kept (in memory: /dev/shm) for the exporter's own map-reading
# time, lines into FILE.own; the last body stays in FILE.body. The timed ones discard the
# body as it arrives: writing 6 MB to a disk file took curl 6.5 ms of a static 6 MB
# response's 9.8 ms here (3.3 ms to /dev/null), the client's cost, not the exporter's.
scrapes() {
    local url=$1 file=$2 body
    body=$(mktemp -p /dev/shm)
    for _ in $(seq "$SCRAPES"); do
        curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$url" >>"$file"
    done
    for _ in $(seq "$SCRAPES"); do
        curl -s -o "$body" "$url"
        awk '/^btrace_scrape_duration_seconds / { print $2 }' "$body" >>"$file.own"
    done
    mv "$body" "$file.body"
}

# Scrape latency of `--by cgroup` with CGROUPS cgroups that each have series: prints one
# row of the scrapes table.
by_cgroup_row() {
    local port=$((PORT + 1)) mnt parent pid err i lat n
    mnt=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
    [ -n "$mnt" ] || { echo "no cgroup v2 mount" >&2; return 1; }
    parent="$mnt/btrace-bench-serve-$$"
    err=$(mktemp)
    mkdir -p "$parent"
    # Machine-wide, the cap above the bench's cgroups plus the machine's own.
    "$BTRACE" serve --listen "127.0.0.1:$port" --by cgroup --max-cgroups $((CGROUPS + 28)) 2>"$err" &
    pid=$!
    CGPID=$pid
    trap 'kill $CGPID 2>/dev/null || true; kill ${PID:-} 2>/dev/null || true' EXIT
    for _ in $(seq 200); do grep -q '^Tracing' "$err" && break; sleep 0.05; done
    grep -q '^Tracing' "$err" || { cat "$err" >&2; return 1; }
    for i in $(seq "$CGROUPS"); do
        mkdir -p "$parent/cg$i"
        sh -c "echo \$\$ > $parent/cg$i/cgroup.procs && exec target/workload syscalls 100 0"
    done
    sleep 1
    lat=$(mktemp)
    scrapes "http://127.0.0.1:$port/metrics" "$lat"
    n=$(awk '/^btrace_cgroup_labels / { print $2 }' "$lat.body")
    local series
    series=$(grep -c '^btrace_syscall_latency_seconds_count{' "$lat.body")
    # The same scrapes while SLOW clients read the body at 20 KB/s each (curl's rate
    # limit), each one again as soon as the server drops it (10 s into its response).
    local slow=()
    for _ in $(seq "$SLOW"); do
        (while :; do curl -s --limit-rate 20k -o /dev/null "http://127.0.0.1:$port/metrics" || true; done) &
        slow+=($!)
    done
    sleep 2
    for _ in $(seq "$SCRAPES"); do
        curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics" >>"$lat.slow"
    done
    kill "${slow[@]}" 2>/dev/null || true
    wait "${slow[@]}" 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    for i in $(seq "$CGROUPS"); do rmdir "$parent/cg$i" 2>/dev/null || true; done
    rmdir "$parent" 2>/dev/null || true
    local t o
    t=$(sort -n "$lat" | awk -v n="$SCRAPES" '{ t[NR] = $1; b = $2 } END {
        printf "%.2f ms | %.2f ms | %.0f KB", 1000 * t[int(n / 2) + 1], 1000 * t[int(n * 0.95)], b / 1024 }')
    o=$(sort -n "$lat.own" | awk -v n="$SCRAPES" '{ t[NR] = $1 } END { printf "%.2f ms", 1000 * t[int(n / 2) + 1] }')
    local q0 q1
    q0=$(awk '{ print $1 }' "$lat" | sort -n | awk -v n="$SCRAPES" '{ t[NR] = $1 } END {
        printf "%.2f ms | %.2f ms", 1000 * t[int(n / 2) + 1], 1000 * t[int(n * 0.99)] }')
    q1=$(sort -n "$lat.slow" | awk -v n="$SCRAPES" '{ t[NR] = $1 } END {
        printf "%.2f ms | %.2f ms", 1000 * t[int(n / 2) + 1], 1000 * t[int(n * 0.99)] }')
    rm -f "$lat" "$lat.body" "$lat.own" "$lat.slow" "$err"
    echo "| $SCRAPES back to back, \`--by cgroup\`, $CGROUPS cgroups made by the bench ($n label values, $series syscall histograms) | $t | $o |"
    echo
    echo "| \`--by cgroup\`, $CGROUPS cgroups, $SCRAPES scrapes back to back | median | p99 |"
    echo "|---|---|---|"
    echo "| alone | $q0 |"
    echo "| while $SLOW clients read the body at 20 KB/s | $q1 |"
}

if [ "$SERVE_PARTS" = cgroup ]; then
    by_cgroup_row
    exit 0
fi
URL="http://127.0.0.1:$PORT/metrics"
ERR=$(mktemp)
"$BTRACE" serve --listen "127.0.0.1:$PORT" 2>"$ERR" &
PID=$!
cleanup() { kill "$PID" ${CGPID:+"$CGPID"} 2>/dev/null || true; rm -f "$ERR"; }
trap cleanup EXIT
for _ in $(seq 200); do grep -q '^Tracing' "$ERR" && break; sleep 0.05; done
grep -q '^Tracing' "$ERR" || { cat "$ERR"; exit 1; }
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -un; }
bpf_runtime_ns() {
    local ns=0 id
    for id in $2; do
        ns=$((ns + $(bpftool -j prog show id "$id" | sed -n 's/.*"run_time_ns":\([0-9]*\).*/\1/p' | grep . || echo 0)))
    done
    echo "$ns"
}

ids=$(prog_ids "$PID")
t0=$(cpu_ticks "$PID"); r0=$(bpf_runtime_ns "$PID" "$ids")
end=$((SECONDS + DURATION))
while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null "$URL"
    sleep 1
done
t1=$(cpu_ticks "$PID"); r1=$(bpf_runtime_ns "$PID" "$ids")
idle=$(awk -v dt="$((t1 - t0))" -v hz="$HZ" -v ns="$((r1 - r0))" -v d="$DURATION" -v n="$NCPU" 'BEGIN {
    user = dt / hz; bpf = ns / 1e9;
    printf "| idle machine, scraped every 1 s, %d s | %.3f%% | %.3f%% | **%.3f%%** |", d,
        100 * user / (d * n), 100 * bpf / (d * n), 100 * (user + bpf) / (d * n)
}')
echo "$idle" >&2

lat=$(mktemp)
scrapes "$URL" "$lat"
scrape=$(sort -n "$lat" | awk -v n="$SCRAPES" '{ t[NR] = $1; b = $2 } END {
    printf "%.2f ms | %.2f ms | %.0f KB", 1000 * t[int(n / 2) + 1], 1000 * t[int(n * 0.95)], b / 1024 }')
own=$(sort -n "$lat.own" | awk -v n="$SCRAPES" '{ t[NR] = $1 } END { printf "%.2f ms", 1000 * t[int(n / 2) + 1] }')
rm -f "$lat" "$lat.body" "$lat.own"
cgrow=$(by_cgroup_row)

text="| case | serve user+sys CPU | its BPF programs' run time | whole cost |
|---|---|---|---|
$idle

| scrapes | median (curl, whole response, body discarded) | p95 | body | median map reading (btrace_scrape_duration_seconds) |
|---|---|---|---|---|
| $SCRAPES back to back, default groups | $scrape | $own |
$cgrow

Whole cost = the exporter's own CPU time plus the run time the kernel measured for all
its BPF programs, as a share of all ${NCPU} CPUs (100% = the whole machine); the
\"idle\" machine is this one as it was (other work on it is what the probes ran on). Not
counted: the two clock reads per BPF program run that run-time statistics add.
Not set beside ebpf_exporter's figures: none comparable were found.
Measured $(date +%F) on kernel $(uname -r), one run of \`bash bench/serve_overhead.sh\`."
echo "$text"
python3 - "$text" <<'PY'
import re, sys
text = sys.argv[1]
doc = open("README.md").read()
new = re.sub(r"(<!-- bench:serve -->\n).*?(<!-- /bench:serve -->)",
             lambda m: m.group(1) + text + "\n" + m.group(2), doc, flags=re.S)
if new != doc:
    open("README.md", "w").write(new)
    print("(figures written into README.md)")
PY
