# btrace hist: exact per-syscall counts for a child command (same expectations as the host
# tests), through the hook the kernel gets by default and through every fallback hook.

hist_counts_via() { # $1: extra flags; $2: label
    run /tmp/hist.json /tmp/hist.err "$BTRACE" hist --json $1 -c "$WORKLOAD syscalls 1000 500" ||
        fail "[$2] btrace hist exited $?: $(head -n1 /tmp/hist.err)"
    g=$(json_get /tmp/hist.json '"syscall":"getppid"' total)
    r=$(json_get /tmp/hist.json '"syscall":"read"' total)
    grep -q '"type":"summary"' /tmp/hist.json || fail "[$2] no summary line"
    [ "$g" = 1000 ] && [ "$r" = 500 ] || fail "[$2] getppid total=${g:-none} read total=${r:-none}, want 1000 and 500"
    HIST_WAY="$(json_get /tmp/hist.json '"type":"summary"' hook)+$(json_get /tmp/hist.json '"type":"summary"' store)"
}

hist_exact() {
    hist_counts_via "" auto
    detail "getppid=1000 read=500 via $HIST_WAY"
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
