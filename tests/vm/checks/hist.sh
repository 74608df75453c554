# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace hist: exact per-syscall counts for a child command (same expectations as the host
# tests), through the hook the kernel gets by default and through every fallback hook.

# exact_or_missed WANT GOT MISSED: GOT is WANT, or short by no more than the program runs
# the kernel skipped (lost.missed: 7.x runs syscall tracepoint programs preemptibly, and a
# preempted program's recursion guard makes other tasks' syscalls on its CPU skip it).
exact_or_missed() {
    [ "$2" = "$1" ] && return 0
    [ -n "$2" ] && [ "$2" -lt "$1" ] && [ $(($1 - $2)) -le "${3:-0}" ]
}

# A background load on both vCPUs (syscalls of other processes on the traced CPUs) until
# the file named by $1 exists.
hist_noise() {
    while [ ! -e "$1" ]; do "$WORKLOAD" spread 20000 >/dev/null 2>&1; done
}

hist_counts_via() { # $1: extra flags; $2: label; $3: "exact" to allow no skipped runs
    # shellcheck disable=SC2086 # $1: flags, split into words on purpose (none when empty)
    run /tmp/hist.json /tmp/hist.err "$BTRACE" hist --json $1 -c "$WORKLOAD syscalls 1000 500" ||
        fail "[$2] btrace hist exited $?: $(head -n1 /tmp/hist.err)"
    g=$(json_get /tmp/hist.json '"syscall":"getppid"' total)
    r=$(json_get /tmp/hist.json '"syscall":"read"' total)
    m=$(json_get /tmp/hist.json '"type":"summary"' missed)
    grep -q '"type":"summary"' /tmp/hist.json || fail "[$2] no summary line"
    [ "$3" = exact ] && m=0
    exact_or_missed 1000 "$g" "$m" && exact_or_missed 500 "$r" "$m" ||
        fail "[$2] getppid total=${g:-none} read total=${r:-none} missed=${m:-none}, want 1000 and 500"
    HIST_WAY="$(json_get /tmp/hist.json '"type":"summary"' hook)+$(json_get /tmp/hist.json '"type":"summary"' store)"
    [ "${m:-0}" = 0 ] || HIST_WAY="$HIST_WAY(missed $m)"
}

# The way auto takes must be exact even with other processes' syscalls on both CPUs: on
# 7.x that is the classic tracepoint (tp_btf and raw_tp programs get skipped there).
hist_exact() {
    rm -f /tmp/noise.stop
    hist_noise /tmp/noise.stop &
    hist_counts_via "" auto exact
    : >/tmp/noise.stop
    wait
    detail "getppid=1000 read=500 via $HIST_WAY under load"
}
register hist_exact 90

hist_every_hook() {
    ways=""
    for hook in tp_btf raw_tp tracepoint; do
        hist_counts_via "--hook $hook" "$hook"
        ways="$ways $HIST_WAY"
    done
    detail "exact via$ways"
}
register hist_every_hook 150

# The bounded store frees a thread's entry when the thread ends (sched_process_exit):
# 300 threads one after another fit a store of 8; new threads' clone returns are not
# counted as missing entries.
hist_threads_reaped() {
    ways=""
    for hook in tp_btf raw_tp tracepoint; do
        run /tmp/thr.json /tmp/thr.err "$BTRACE" hist --json --max-threads 8 --hook $hook \
            -c "$WORKLOAD threads 300 10" ||
            fail "[$hook] btrace hist exited $?: $(head -n1 /tmp/thr.err)"
        g=$(json_get /tmp/thr.json '"syscall":"getppid"' total)
        full=$(json_get /tmp/thr.json '"type":"summary"' map_full)
        missing=$(json_get /tmp/thr.json '"type":"summary"' no_entry)
        m=$(json_get /tmp/thr.json '"type":"summary"' missed)
        # A skipped entry run leaves its exit without an entry: no_entry may grow by missed.
        exact_or_missed 3000 "$g" "$m" && [ "$full" = 0 ] && [ "${missing:-9}" -le $((1 + ${m:-0})) ] ||
            fail "[$hook] getppid=${g:-none} map_full=${full:-none} no_entry=${missing:-none} missed=${m:-none}, want 3000, 0, <=1 (less what the kernel skipped)"
        ways="$ways $hook"
        [ "${m:-0}" = 0 ] || ways="$ways(missed $m)"
    done
    detail "3000 getppid from 300 threads, store of 8, via$ways"
}
register hist_threads_reaped 150

# hist --by process: exact per-process totals of two workloads; --errors and --errno.
hist_breakdowns() {
    run /tmp/hb.json /tmp/hb.err "$BTRACE" hist --json --by process \
        -c "sh -c '$WORKLOAD syscalls 300 0 & $WORKLOAD syscalls 700 0; wait'" ||
        fail "hist --by process exited $?: $(head -n1 /tmp/hb.err)"
    got=$(grep '"type":"hist_by"' /tmp/hb.json | grep -F '"comm":"workload"' | grep -F '"syscall":"getppid"' |
        sed 's/.*"unit":"us","count":\([0-9]*\),.*/\1/' | sort -n | tr '\n' ' ')
    [ "$got" = "300 700 " ] || fail "--by process getppid per workload: '$got', want '300 700 '"
    run /tmp/he.json /tmp/he.err "$BTRACE" hist --json --errors -c "$WORKLOAD fails 40" ||
        fail "hist --errors exited $?: $(head -n1 /tmp/he.err)"
    r=$(json_get /tmp/he.json '"syscall":"read"' count)
    o=$(json_get /tmp/he.json '"syscall":"openat"' count)
    g=$(json_get /tmp/he.json '"syscall":"getppid"' count)
    [ "$r" = 40 ] && [ "$o" = 40 ] && [ -z "$g" ] || fail "--errors read=${r:-none} openat=${o:-none} getppid=${g:-none}, want 40 40 none"
    run /tmp/hn.json /tmp/hn.err "$BTRACE" hist --json --errno EBADF -c "$WORKLOAD fails 40" ||
        fail "hist --errno exited $?: $(head -n1 /tmp/hn.err)"
    n=$(grep -c '"type":"hist"' /tmp/hn.json)
    r=$(json_get /tmp/hn.json '"syscall":"read"' count)
    [ "$n" = 1 ] && [ "$r" = 40 ] || fail "--errno EBADF: $n records, read=${r:-none}, want 1 and 40"
    detail "--by process 300/700, --errors 40+40, --errno EBADF 40"
}
register hist_breakdowns 90
