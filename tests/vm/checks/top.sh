# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace top (JSON snapshots): exact syscall totals across snapshots, and run-queue
# latency samples from the runq tracer, whose task-state read is the CO-RE flavour case
# (task_struct.state before 5.14, __state after).

# Sum of "count" of one syscall over all snapshots of a file.
top_syscall_total() {
    grep -o "\"syscall\":\"$2\",\"nr\":[0-9]*,\"count\":[0-9]*" "$1" |
        awk -F'"count":' '{ s += $2 } END { print s + 0 }'
}

top_json() {
    run /tmp/top.json /tmp/top.err "$BTRACE" top --json -i 0.5 -c "$WORKLOAD syscalls 3000 700" ||
        fail "btrace top exited $?: $(head -n1 /tmp/top.err)"
    grep -q '"type":"summary"' /tmp/top.json || fail "no summary line"
    g=$(top_syscall_total /tmp/top.json getppid)
    r=$(top_syscall_total /tmp/top.json read)
    [ "$g" = 3000 ] && [ "$r" = 700 ] || fail "getppid=$g read=$r over all snapshots, want 3000 and 700"
    # 16 threads that sleep and wake: each wake-up is a run-queue wait the runq tracer sees.
    run /tmp/top2.json /tmp/top2.err "$BTRACE" top --json -c "$WORKLOAD block 16 50" ||
        fail "btrace top (runq) exited $?: $(head -n1 /tmp/top2.err)"
    waits=$(grep -o '"what":"run-queue latency","unit":"us","count":[0-9]*' /tmp/top2.json |
        awk -F'"count":' '{ s += $2 } END { print s + 0 }')
    [ "$waits" -ge 16 ] || fail "run-queue waits=$waits, want >= 16 for 16 waking threads"
    hooks=$(grep -o '"hooks":{[^}]*}' /tmp/top2.json)
    detail "getppid=3000 read=700 runq_waits=$waits $hooks"
}
register top_json 120
