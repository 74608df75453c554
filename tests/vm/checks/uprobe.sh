# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace uprobe / usdt, and the --hist latency histogram of uprobe and kprobe: exact calls
# of target/ufuncs (tests/workload/ufuncs.c) and of getppid, as the host tests expect.

UFUNCS=/bin/ufuncs

uprobe_exact() {
    run /tmp/u.json /tmp/u.err "$BTRACE" uprobe --json "$UFUNCS:f" --ret -c "$UFUNCS f 7" ||
        fail "btrace uprobe exited $?: $(head -n1 /tmp/u.err)"
    n=$(grep -c '"type":"event"' /tmp/u.json)
    [ "$n" = 7 ] || fail "events=$n, want 7"
    grep -q '"args":{"a":-2,"b":7,"s":"s-0"},"ret":-5' /tmp/u.json || fail "first call's args/ret wrong"
    grep -q '"args":{"a":3,"b":-4999999999993,"s":"s-5"},"ret":5' /tmp/u.json || fail "sixth call's args/ret wrong"
    grep -q '"truncated":\["s"\]' /tmp/u.json || fail "the long string is not marked truncated"
    detail "7 events, DWARF args and ret"
}
register uprobe_exact 60

uprobe_hist_exact() {
    run /tmp/uh.json /tmp/uh.err "$BTRACE" uprobe --json "$UFUNCS:f" --hist -c "$UFUNCS f 1000" ||
        fail "btrace uprobe --hist exited $?: $(head -n1 /tmp/uh.err)"
    c=$(json_get /tmp/uh.json '"type":"hist"' count)
    [ "$c" = 1000 ] || fail "hist count=${c:-none}, want 1000"
    detail "count=1000"
}
register uprobe_hist_exact 60

uprobe_libc_malloc() {
    run /tmp/um.json /tmp/um.err "$BTRACE" uprobe --json libc:malloc -c "$UFUNCS malloc 5" ||
        fail "btrace uprobe libc:malloc exited $?: $(head -n1 /tmp/um.err)"
    for s in 100000 100001 100002 100003 100004; do
        n=$(grep -c "\"arg0\":$s," /tmp/um.json)
        [ "$n" = 1 ] || fail "malloc($s) seen $n times, want 1"
    done
    detail "5 sizes, $(grep -c '"type":"event"' /tmp/um.json) events"
}
register uprobe_libc_malloc 60

usdt_exact() {
    if ! kver_ge 5.15; then
        # No BPF cookies: libbpf attaches a PIE's USDT probes only for one running process.
        run /tmp/us.json /tmp/us.err "$BTRACE" usdt --json "$UFUNCS:btrace_test:tick" -c "$UFUNCS usdt 4" &&
            fail "usdt -c on a kernel without BPF cookies worked: expected the -p hint"
        grep -q "use -p PID" /tmp/us.err || fail "no -p hint: $(head -n1 /tmp/us.err)"
        [ "$(wc -l </tmp/us.err)" = 1 ] || fail "more than one error line"
        detail "no BPF cookies: one line pointing at -p"
        return 0
    fi
    run /tmp/us.json /tmp/us.err "$BTRACE" usdt --json "$UFUNCS:btrace_test:tick" -c "$UFUNCS usdt 4" ||
        fail "btrace usdt exited $?: $(head -n1 /tmp/us.err)"
    n=$(grep -c '"type":"event"' /tmp/us.json)
    [ "$n" = 4 ] || fail "events=$n, want 4"
    grep -q '"args":{"arg0":3,"arg1":-4,"arg2":3000000}' /tmp/us.json || fail "last hit's args wrong"
    detail "4 hits with args"
}
register usdt_exact 60

kprobe_hist_exact() {
    run /tmp/kh.json /tmp/kh.err "$BTRACE" kprobe --json "$(sys_fn getppid)" --hist -c "$WORKLOAD syscalls 1000 0" ||
        fail "btrace kprobe --hist exited $?: $(head -n1 /tmp/kh.err)"
    c=$(json_get /tmp/kh.json '"type":"hist"' count)
    [ "$c" = 1000 ] || fail "hist count=${c:-none}, want 1000"
    detail "count=1000 via $(json_get /tmp/kh.json '"type":"summary"' hook)"
}
register kprobe_hist_exact 90

uprobe_count_exact() {
    if ! kver_ge 5.15; then
        # --count tells its functions apart by BPF cookie (5.15+).
        run /tmp/uc.json /tmp/uc.err "$BTRACE" uprobe --json "$UFUNCS:f" --count -c "$UFUNCS f 9" &&
            fail "--count worked without BPF cookies"
        grep -q "5.15" /tmp/uc.err || fail "no 5.15 hint: $(head -n1 /tmp/uc.err)"
        detail "no BPF cookies: one line"
        return 0
    fi
    run /tmp/uc.json /tmp/uc.err "$BTRACE" uprobe --json "libc:malloc*" --count -c "$UFUNCS malloc 5" ||
        fail "btrace uprobe --count exited $?: $(head -n1 /tmp/uc.err)"
    c=$(json_get /tmp/uc.json '"func":"malloc"' count)
    [ "$c" = 5 ] || fail "malloc count=${c:-none}, want 5"
    detail "malloc=5 of $(json_get /tmp/uc.json '"type":"summary"' functions) functions"
}
register uprobe_count_exact 60

# An offset inside an instruction of f is refused before attaching (a breakpoint there
# crashed every process running f), and f still runs; the first valid offset the message
# suggests attaches and counts every call. (f+2: ufuncs is built -O0, so f starts with
# `push %rbp` (1 byte) then a 3-byte `mov`, or with a 4-byte `endbr64`: inside either way;
# on arm64 every instruction is 4 bytes.)
uprobe_mid_instruction_refused() {
    # btrace in the background, f called 1 s later: had it attached, f would crash.
    "$BTRACE" uprobe --json "$UFUNCS:f+2" -d 3 >/tmp/ui.json 2>/tmp/ui.err &
    tracer=$!
    sleep 1
    "$UFUNCS" f 5 || fail "ufuncs f exited $? while btrace ran"
    wait "$tracer" && fail "uprobe at f+2 was not refused"
    cat /tmp/ui.err
    grep -q "f+2 is inside the instruction at f+" /tmp/ui.err || fail "unexpected error: $(head -n1 /tmp/ui.err)"
    [ "$(wc -l </tmp/ui.err)" = 1 ] || fail "more than one error line"
    grep -q Tracing /tmp/ui.err && fail "refused after Tracing"
    "$UFUNCS" f 3 || fail "ufuncs f exited $? after the refusal"
    ok=$(sed -n 's/.*valid offsets near it: \(f+[0-9]*\).*/\1/p' /tmp/ui.err)
    [ -n "$ok" ] || fail "no valid offset suggested: $(head -n1 /tmp/ui.err)"
    run /tmp/uv.json /tmp/uv.err "$BTRACE" uprobe --json "$UFUNCS:$ok" -c "$UFUNCS f 5" ||
        fail "btrace uprobe $ok exited $?: $(head -n1 /tmp/uv.err)"
    n=$(grep -c '"type":"event"' /tmp/uv.json)
    [ "$n" = 5 ] || fail "events at $ok=$n, want 5"
    run /tmp/u0.json /tmp/u0.err "$BTRACE" uprobe --json "$UFUNCS:0x0" -d 1 &&
        fail "uprobe at 0x0 was not refused"
    grep -q "not in executable code" /tmp/u0.err || fail "0x0: $(head -n1 /tmp/u0.err)"
    detail "f+2 refused, f ran; $ok counted 5"
}
register uprobe_mid_instruction_refused 60

# --count over many functions: where the kernel has uprobe_multi links (6.6+), every
# function of libc in one link (about 2000 here), attached and detached in seconds, the
# refused ones skipped and listed; before that (5.15+, BPF cookies), one perf-event uprobe
# per function, fewer of them (each takes a grace period to detach).
uprobe_count_many() {
    if ! kver_ge 5.15; then
        skip "no BPF cookies before 5.15 (uprobe_count_exact checks the one-line error)"
    fi
    if kver_ge 6.6; then glob='libc:*' want=uprobe.multi; else glob='libc:*alloc*' want=uprobe; fi
    t0=$(date +%s)
    run /tmp/ucm.json /tmp/ucm.err "$BTRACE" uprobe --json "$glob" --count --max-probes 10000 -c "$UFUNCS malloc 5" ||
        fail "btrace uprobe '$glob' --count exited $?: $(head -n1 /tmp/ucm.err)"
    t1=$(date +%s)
    c=$(json_get /tmp/ucm.json '"func":"malloc"' count)
    [ "$c" = 5 ] || fail "malloc count=${c:-none}, want 5"
    hook=$(json_get /tmp/ucm.json '"type":"summary"' hook)
    [ "$hook" = "$want" ] || fail "hook=$hook, want $want"
    detail "malloc=5 via $hook, $(json_get /tmp/ucm.json '"type":"summary"' functions) functions, $(json_get /tmp/ucm.json '"type":"summary"' refused) refused, $((t1 - t0)) s start to exit"
}
register uprobe_count_many 300

# As user nobody with only CAP_BPF and CAP_PERFMON (/bin/capsrun): from 6.6 uprobes work
# through uprobe_multi links. Before, through perf events, whose uprobe PMU wants
# CAP_SYS_ADMIN since "perf/core: Fix perf_uprobe_event_init()" (backported to stable
# kernels; from 5.8 until that fix CAP_PERFMON sufficed): either exact events via perf
# events (a kernel without the fix) or one line naming CAP_SYS_ADMIN.
uprobe_caps_only() {
    if run /tmp/ucap.json /tmp/ucap.err /bin/capsrun "$BTRACE" uprobe --json "$UFUNCS:f" -c "$UFUNCS f 7"; then
        n=$(grep -c '"type":"event"' /tmp/ucap.json)
        [ "$n" = 7 ] || fail "events=$n, want 7"
        a=$(json_get /tmp/ucap.json '"type":"summary"' attach)
        if kver_ge 6.6; then want=uprobe.multi; else want=uprobe; fi
        [ "$a" = "$want" ] || fail "attach=$a, want $want"
        detail "7 events via $a as nobody with CAP_BPF+CAP_PERFMON"
        return 0
    fi
    kver_ge 6.6 && fail "btrace uprobe as nobody with CAP_BPF+CAP_PERFMON failed on 6.6+: $(head -n1 /tmp/ucap.err)"
    # 5.10 refuses to load the object itself (EPERM) with these two capabilities: not
    # the uprobe attach this check is about.
    if grep -q "failed to load" /tmp/ucap.err; then
        skip "the object does not load with CAP_BPF+CAP_PERFMON here: $(head -c 200 /tmp/ucap.err)"
    fi
    grep -q "need CAP_SYS_ADMIN" /tmp/ucap.err || fail "CAP_SYS_ADMIN not named: $(head -n1 /tmp/ucap.err)"
    grep -q "no uprobe_multi links" /tmp/ucap.err || fail "no word of uprobe_multi: $(head -n1 /tmp/ucap.err)"
    [ "$(wc -l </tmp/ucap.err)" = 1 ] || fail "more than one error line"
    detail "perf-event uprobes refused without CAP_SYS_ADMIN: one line naming it"
}
register uprobe_caps_only 60
