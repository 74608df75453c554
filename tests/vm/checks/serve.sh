# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
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
    # shellcheck disable=SC2086 # pids, either one perhaps not started yet (no word then)
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

# --by cgroup on every kernel: three cgroups under one parent (the scope), 111/222/444
# getppid calls; --max-cgroups 2: two labelled exactly, the third's calls exactly in
# cgroup="other", the overflow counted; the per-CPU hash batch read works here too.
serve_by_cgroup() {
    cg=/sys/fs/cgroup
    grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none $cg || fail "cannot mount cgroup2"
    mkdir -p $cg/sv/a $cg/sv/b $cg/sv/c || fail "cannot make test cgroups"
    "$BTRACE" serve --listen 127.0.0.1:9437 --groups syscalls,runq --by cgroup --max-cgroups 2 \
        --cgroup $cg/sv >/tmp/s3.out 2>/tmp/s3.err &
    p1=$!
    p2=
    serve_wait /tmp/s3.err $p1 || serve_fail "--by cgroup exporter did not start"
    for x in a:111 b:222 c:444; do
        d=${x%:*}
        sh -c "echo \$\$ > $cg/sv/$d/cgroup.procs && exec $WORKLOAD syscalls ${x#*:} 0" ||
            serve_fail "workload in $d failed"
    done
    wget -q -O /tmp/m4.txt http://127.0.0.1:9437/metrics || serve_fail "scraping serve --by cgroup failed"
    kill -TERM $p1
    wait $p1
    r1=$?
    rmdir $cg/sv/a $cg/sv/b $cg/sv/c $cg/sv
    [ $r1 = 0 ] || fail "exit code after SIGTERM: $r1"
    got=""
    sum=0
    for x in a:111 b:222 c:444; do
        v=$(serve_value /tmp/m4.txt "btrace_syscall_latency_seconds_count{cgroup=\"/sv/${x%:*}\",syscall=\"getppid\"}")
        [ -z "$v" ] && continue
        [ "$v" = "${x#*:}" ] || fail "/sv/${x%:*}: getppid=$v, want ${x#*:}"
        got="$got ${x%:*}=$v"
        sum=$((sum + v))
    done
    o=$(serve_value /tmp/m4.txt 'btrace_syscall_latency_seconds_count{cgroup="other",syscall="getppid"}')
    ov=$(serve_value /tmp/m4.txt 'btrace_cgroup_overflow_total{reason="cap"}')
    n=$(echo "$got" | wc -w)
    [ "$n" = 2 ] && [ $((sum + ${o:-0})) = 777 ] && [ "$ov" = 1 ] ||
        fail "labelled:$got other=${o:-none} overflow=${ov:-none}, want two exact, the rest in other, overflow 1"
    detail "labelled:$got other=$o overflow=$ov"
}
register serve_by_cgroup 120

# --by cgroup for tcp on every kernel: the socket's cgroup read through either layout of
# struct sock_cgroup_data (a tagged word before 5.15, a pointer since). 3 connections in
# cgroup a, 1 with 1000/2000 bytes in cgroup b, client and listener in the same cgroup:
# the passive opens, done in softirq, carry the listener's cgroup.
serve_tcp_by_cgroup() {
    cg=/sys/fs/cgroup
    port=21401
    grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none $cg || fail "cannot mount cgroup2"
    mkdir -p $cg/tc/a $cg/tc/b || fail "cannot make test cgroups"
    "$BTRACE" serve --listen 127.0.0.1:9438 --groups tcp --by cgroup --port $port \
        >/tmp/s5.out 2>/tmp/s5.err &
    p1=$!
    p2=
    serve_wait /tmp/s5.err $p1 || serve_fail "tcp --by cgroup exporter did not start"
    sh -c "echo \$\$ > $cg/tc/a/cgroup.procs && exec $WORKLOAD tcp-many 127.0.0.1 $port 3" ||
        serve_fail "workload tcp-many in a failed"
    sh -c "echo \$\$ > $cg/tc/b/cgroup.procs && exec $WORKLOAD tcp-pair 127.0.0.1 $port 0 1000 2000" ||
        serve_fail "workload tcp-pair in b failed"
    wget -q -O /tmp/m5.txt http://127.0.0.1:9438/metrics || serve_fail "scraping serve tcp --by cgroup failed"
    kill -TERM $p1
    wait $p1
    r1=$?
    rmdir $cg/tc/a $cg/tc/b $cg/tc
    [ $r1 = 0 ] || fail "exit code after SIGTERM: $r1"
    got=""
    for d in a b; do
        l="cgroup=\"/tc/$d\""
        act=$(serve_value /tmp/m5.txt "btrace_tcp_connections_opened_total{$l,direction=\"active\"}")
        pas=$(serve_value /tmp/m5.txt "btrace_tcp_connections_opened_total{$l,direction=\"passive\"}")
        clo=$(serve_value /tmp/m5.txt "btrace_tcp_connections_closed_total{$l}")
        tx=$(serve_value /tmp/m5.txt "btrace_tcp_sent_bytes_total{$l}")
        rx=$(serve_value /tmp/m5.txt "btrace_tcp_received_bytes_total{$l}")
        got="$got $d=$act/$pas/$clo/$tx/$rx"
    done
    others=$(grep -c '^btrace_tcp_connections_closed_total' /tmp/m5.txt)
    [ "$got" = " a=3/3/6/0/0 b=1/1/2/3000/3000" ] && [ "$others" = 2 ] ||
        fail "active/passive/closed/sent/received:$got, closed series $others; want a=3/3/6/0/0 b=1/1/2/3000/3000, 2 series"
    detail "$got"
}
register serve_tcp_by_cgroup 120
