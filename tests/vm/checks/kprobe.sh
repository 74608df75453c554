# btrace kprobe on real kernels (kprobes and fentry exist only here): every mode, --ret,
# and the clear error for an unknown function.

# kprobe_exact MODE [--ret]: the workload opens K uniquely named files; exactly K events,
# one per file, with the workload's pid and comm, from the asked mode.
kprobe_exact() {
    mode=$1
    ret=$2
    k=5
    dir=/tmp/kp-$mode$ret
    rm -rf "$dir" && mkdir -p "$dir"
    out=/tmp/kp-$mode$ret.json
    run "$out" /tmp/kp-$mode$ret.err "$BTRACE" kprobe --json --hook "$mode" $ret -c "$WORKLOAD open $dir $k" ||
        fail "btrace kprobe --hook $mode $ret exited $?: $(head -n1 /tmp/kp-$mode$ret.err)"
    n=$(grep -c '"type":"event"' "$out")
    [ "$n" = "$k" ] || fail "--mode $mode $ret: $n events, want $k"
    grep -q '"type":"summary"' "$out" || fail "no summary"
    lost=$(json_get "$out" '"type":"summary"' ringbuf)
    [ "$lost" = 0 ] || fail "summary says lost.ringbuf=$lost"
    used=$(json_get "$out" '"type":"summary"' hook)
    if [ "$mode" != auto ]; then
        [ "$used" = "$mode" ] || fail "asked --mode $mode, summary says $used"
    fi
    pid=$(json_get "$out" '"type":"event"' pid)
    [ -n "$pid" ] || fail "no pid in events"
    i=0
    while [ "$i" -lt "$k" ]; do
        f="$dir/btrace-$k-$pid-$i"
        c=$(grep -c "\"filename\":\"$f\"" "$out")
        [ "$c" = 1 ] || fail "--mode $mode: $c events for $f (pid $pid), want 1"
        i=$((i + 1))
    done
    [ "$(grep '"type":"event"' "$out" | grep -c "\"pid\":$pid,\"tid\":$pid,\"comm\":\"workload\",\"func\":\"do_sys_openat2\",\"hook\":\"$used\"")" = "$k" ] ||
        fail "--mode $mode: not every event has pid=tid=$pid comm=workload func=do_sys_openat2 hook=$used"
    [ "$(grep '"type":"event"' "$out" | grep -c '"dfd":-100,')" = "$k" ] || fail "--mode $mode: dfd is not -100 (AT_FDCWD) in every event"
    if [ -n "$ret" ]; then
        # fds of a fresh process: non-negative, and each latency positive
        bad=$(grep '"type":"event"' "$out" | grep -c -v '"ret":[0-9][0-9]*,"latency_ns":[1-9][0-9]*}')
        [ "$bad" = 0 ] || fail "--ret: $bad events without ret >= 0 and latency_ns > 0"
    else
        grep '"type":"event"' "$out" | grep -q '"ret"' && fail "ret present without --ret"
    fi
    detail "$k/$k events via $used${ret:+ with ret and latency}"
}

kprobe_auto() { kprobe_exact auto; }
kprobe_fentry() { kprobe_exact fentry; }
kprobe_kprobe() { kprobe_exact kprobe; }
kprobe_ret_fexit() { kprobe_exact fentry --ret; }
kprobe_ret_kretprobe() { kprobe_exact kprobe --ret; }
register kprobe_auto 90
register kprobe_fentry 90
register kprobe_kprobe 90
register kprobe_ret_fexit 90
register kprobe_ret_kretprobe 90

kprobe_unknown_function() {
    run /tmp/kpu.out /tmp/kpu.err "$BTRACE" kprobe no_such_function_btrace -d 1
    rc=$?
    [ "$rc" != 0 ] || fail "exit 0 for an unknown function"
    n=$(grep -c . /tmp/kpu.err)
    [ "$n" = 1 ] || fail "want one stderr line, got $n"
    grep -q "unknown kernel function 'no_such_function_btrace'" /tmp/kpu.err || fail "unclear: $(head -n1 /tmp/kpu.err)"
    detail "$(head -n1 /tmp/kpu.err)"
}
register kprobe_unknown_function 30

# Text mode: a header, one aligned line per call with name=value arguments, ret= and lat=.
kprobe_text() {
    dir=/tmp/kpt && rm -rf $dir && mkdir -p $dir
    run /tmp/kpt.out /tmp/kpt.err "$BTRACE" kprobe --ret -c "$WORKLOAD open $dir 3" ||
        fail "btrace kprobe exited $?: $(head -n1 /tmp/kpt.err)"
    head -n1 /tmp/kpt.out | grep -q '^TIME(s) *PID *TID *COMM *FUNCTION *ARGS' || fail "no header line"
    n=$(grep -c " do_sys_openat2 *dfd=-100 filename=\"$dir/btrace-3-[0-9]*-[0-2]\" how=0x[0-9a-f]* ret=[0-9][0-9]* lat=[0-9.]*[mun]*s$" /tmp/kpt.out)
    [ "$n" = 3 ] || fail "$n well-formed event lines, want 3"
    grep -q "^Traced do_sys_openat2 via .*: 3 events. Lost: 0 events" /tmp/kpt.out || fail "no summary line"
    detail "3 event lines and the summary"
}
register kprobe_text 60
