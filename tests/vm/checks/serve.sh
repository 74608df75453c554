# SPDX-License-Identifier: Apache-2.0
# btrace serve on every kernel: two exporters (syscalls scoped to the workload's name;
# tcp on one port) scraped with busybox wget; exact counts in the text format, the
# OpenMetrics body, and a clean exit on SIGTERM.

# serve_wait ERRFILE PID: until the Tracing line is out (60 s at most).
serve_wait() {
    i=0
    while ! grep -q '^Tracing' "$1" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { echo "btrace serve died: $(head -n3 "$1")"; return 1; }
        i=$((i + 1))
        [ $i -le 600 ] || { echo "btrace serve never said Tracing: $(head -n3 "$1")"; return 1; }
        sleep 0.1
    done
}

# serve_value FILE SERIES: the value of one sample line.
serve_value() {
    grep -v '^#' "$1" | grep -F -m1 "$2 " | awk '{ print $NF }'
}

# A failed check must not leave exporters running into the next checks.
serve_fail() {
    kill -9 $p1 $p2 2>/dev/null
    fail "$@"
}

serve_exact() {
    port=21400
    "$BTRACE" serve --listen 127.0.0.1:9435 --groups syscalls,runq --comm workload \
        >/tmp/s1.out 2>/tmp/s1.err &
    p1=$!
    "$BTRACE" serve --listen 127.0.0.1:9436 --groups tcp --port $port \
        >/tmp/s2.out 2>/tmp/s2.err &
    p2=$!
    serve_wait /tmp/s1.err $p1 || serve_fail "syscalls exporter did not start"
    serve_wait /tmp/s2.err $p2 || serve_fail "tcp exporter did not start"
    "$WORKLOAD" syscalls 1234 0 || serve_fail "workload syscalls failed"
    "$WORKLOAD" tcp-many 127.0.0.1 $port 3 || serve_fail "workload tcp-many failed"
    "$WORKLOAD" tcp-pair 127.0.0.1 $port 0 1000 2000 || serve_fail "workload tcp-pair failed"
    wget -q -O /tmp/m1.txt http://127.0.0.1:9435/metrics || serve_fail "scraping serve (syscalls) failed"
    wget -q -O /tmp/m2.txt http://127.0.0.1:9436/metrics || serve_fail "scraping serve (tcp) failed"
    wget -q -O /tmp/m3.txt --header 'Accept: application/openmetrics-text; version=1.0.0' \
        http://127.0.0.1:9435/metrics || serve_fail "scraping OpenMetrics failed"
    g=$(serve_value /tmp/m1.txt 'btrace_syscall_latency_seconds_count{syscall="getppid"}')
    inf=$(serve_value /tmp/m1.txt 'btrace_syscall_latency_seconds_bucket{syscall="getppid",le="+Inf"}')
    [ "$g" = 1234 ] && [ "$inf" = 1234 ] || serve_fail "getppid count=${g:-none} +Inf=${inf:-none}, want 1234"
    act=$(serve_value /tmp/m2.txt 'btrace_tcp_connections_opened_total{direction="active"}')
    pas=$(serve_value /tmp/m2.txt 'btrace_tcp_connections_opened_total{direction="passive"}')
    clo=$(serve_value /tmp/m2.txt 'btrace_tcp_connections_closed_total')
    tx=$(serve_value /tmp/m2.txt 'btrace_tcp_sent_bytes_total')
    rx=$(serve_value /tmp/m2.txt 'btrace_tcp_received_bytes_total')
    [ "$act $pas $clo $tx $rx" = "4 4 8 3000 3000" ] ||
        serve_fail "tcp opened active/passive, closed, sent, received = $act $pas $clo $tx $rx, want 4 4 8 3000 3000"
    tail -n1 /tmp/m3.txt | grep -qx '# EOF' || serve_fail "OpenMetrics body does not end with # EOF"
    grep -q '^# TYPE btrace_lost counter$' /tmp/m3.txt || serve_fail "OpenMetrics counter family not named without _total"
    hooks=$(grep -h '^btrace_group_info' /tmp/m1.txt /tmp/m2.txt | sed 's/btrace_group_info//' | tr '\n' ' ')
    kill -TERM $p1 $p2
    wait $p1
    r1=$?
    wait $p2
    r2=$?
    [ $r1 = 0 ] && [ $r2 = 0 ] || fail "exit codes after SIGTERM: $r1 $r2"
    detail "getppid=1234 tcp=4/4/8/3000/3000 $hooks"
}
register serve_exact 180
