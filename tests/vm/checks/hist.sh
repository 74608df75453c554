# btrace hist: exact per-syscall counts for a child command (same expectations as the host tests).

hist_exact() {
    run /tmp/hist.json /tmp/hist.err "$BTRACE" hist --json -c "$WORKLOAD syscalls 1000 500" ||
        fail "btrace hist exited $?: $(head -n1 /tmp/hist.err)"
    g=$(json_get /tmp/hist.json '"syscall":"getppid"' total)
    r=$(json_get /tmp/hist.json '"syscall":"read"' total)
    grep -q '"type":"summary"' /tmp/hist.json || fail "no summary line"
    [ "$g" = 1000 ] && [ "$r" = 500 ] || fail "getppid total=${g:-none} read total=${r:-none}, want 1000 and 500"
    detail "getppid=1000 read=500"
}
register hist_exact 90
