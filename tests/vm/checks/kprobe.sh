# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace kprobe on real kernels (kprobes and fentry exist only here): every mode, --ret,
# and the clear error for an unknown function.

# kprobe_exact MODE [--ret]: the workload opens K uniquely named files; exactly K events,
# one per file, with the workload's pid and comm, from the asked mode (the files' names
# only where do_sys_openat2 has a BTF prototype: openat2_typed).
kprobe_exact() {
    mode=$1
    ret=$2
    k=5
    dir=/tmp/kp-$mode$ret
    rm -rf "$dir" && mkdir -p "$dir"
    out=/tmp/kp-$mode$ret.json
    if [ "$mode" = fentry ] && ! has_fentry; then
        # no direct-call ftrace (arm64 before 6.4): --hook fentry is refused in one line
        err="/tmp/kp-$mode$ret.err"
        run "$out" "$err" "$BTRACE" kprobe --json --hook "$mode" ${ret:+"$ret"} -c "$WORKLOAD open $dir $k" &&
            fail "--hook fentry $ret worked on a kernel without direct-call ftrace"
        no_fentry_refusal "$out" "$err"
        detail "no fentry on this kernel: refused in one line: $(head -c 150 "$err")"
        return 0
    fi
    # shellcheck disable=SC2086 # $ret: a flag or none (no word when empty)
    run "$out" "/tmp/kp-$mode$ret.err" "$BTRACE" kprobe --json --hook "$mode" $ret -c "$WORKLOAD open $dir $k" ||
        fail "btrace kprobe --hook $mode $ret exited $?: $(head -n1 "/tmp/kp-$mode$ret.err")"
    n=$(grep -c '"type":"event"' "$out")
    [ "$n" = "$k" ] || fail "--mode $mode $ret: $n events, want $k"
    grep -q '"type":"summary"' "$out" || fail "no summary"
    lost=$(json_get "$out" '"type":"summary"' ringbuf)
    [ "$lost" = 0 ] || fail "summary says lost.ringbuf=$lost"
    used=$(json_get "$out" '"type":"summary"' hook)
    if [ "$mode" != auto ]; then
        [ "$used" = "$mode" ] || fail "asked --mode $mode, summary says $used"
    elif ! has_fentry; then
        [ "$used" = kprobe ] || fail "no fentry on this kernel, yet auto used $used"
    fi
    pid=$(json_get "$out" '"type":"event"' pid)
    [ -n "$pid" ] || fail "no pid in events"
    if ! openat2_typed; then
        [ "$(grep '"type":"event"' "$out" | grep "\"pid\":$pid,\"tid\":$pid,\"comm\":\"workload\"," |
            grep -c "\"func\":\"do_sys_openat2\",\"hook\":\"$used\"")" = "$k" ] ||
            fail "--mode $mode: not every event has pid=tid=$pid comm=workload func=do_sys_openat2 hook=$used"
        skip "$(openat2_untyped); $k/$k calls via $used, pid and comm right"
    fi
    i=0
    while [ "$i" -lt "$k" ]; do
        f="$dir/btrace-$k-$pid-$i"
        c=$(grep -c "\"filename\":\"$f\"" "$out")
        [ "$c" = 1 ] || fail "--mode $mode: $c events for $f (pid $pid), want 1"
        i=$((i + 1))
    done
    [ "$(grep '"type":"event"' "$out" | grep "\"pid\":$pid,\"tid\":$pid,\"comm\":\"workload\"," |
        grep -c "\"func\":\"do_sys_openat2\",\"hook\":\"$used\"")" = "$k" ] ||
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

# Text mode: a header, one aligned line per call with name=value arguments, ret= and lat=
# (arguments only where do_sys_openat2 has a BTF prototype: openat2_typed).
kprobe_text() {
    dir=/tmp/kpt && rm -rf $dir && mkdir -p $dir
    run /tmp/kpt.out /tmp/kpt.err "$BTRACE" kprobe --ret -c "$WORKLOAD open $dir 3" ||
        fail "btrace kprobe exited $?: $(head -n1 /tmp/kpt.err)"
    head -n1 /tmp/kpt.out | grep -q '^TIME(s) *PID *TID *COMM *FUNCTION *ARGS' || fail "no header line"
    if ! openat2_typed; then
        grep -q "^Traced do_sys_openat2 via .*: 3 events. Lost: 0 events" /tmp/kpt.out || fail "no summary line of 3 events"
        skip "$(openat2_untyped); header and summary of 3 events right"
    fi
    n=$(grep -c " do_sys_openat2 *dfd=-100 filename=\"$dir/btrace-3-[0-9]*-[0-2]\" how=0x[0-9a-f]* ret=[0-9][0-9]* lat=[0-9.]*[mun]*s$" /tmp/kpt.out)
    [ "$n" = 3 ] || fail "$n well-formed event lines, want 3"
    grep -q "^Traced do_sys_openat2 via .*: 3 events. Lost: 0 events" /tmp/kpt.out || fail "no summary line"
    detail "3 event lines and the summary"
}
register kprobe_text 60

# ---- Decoding (issue 11): exact bytes, buffers at return, enum names, no ret for void ----

# Hooks to try for vfs_read/vfs_write: auto and kprobe everywhere; fentry named only from
# 6.1, since 5.10's verifier refuses fentry loads of pointer-to-integer arguments (their
# `loff_t *pos`: "arg3 type INT is not a struct"), where auto falls back to kprobe; and
# only where the kernel has fentry at all (has_fentry: not arm64 before 6.4).
buffer_hooks() {
    if kver_ge 6.1 && has_fentry; then echo "auto fentry kprobe"; else echo "auto kprobe"; fi
}

# The 9 bytes `workload bytes` writes to /dev/null, as serde_json writes the escaped form
# (not valid UTF-8: listed under "escaped").
WRITTEN_JSON='"buf":"ab\u0000c\\xff\n\\\\\"d","count":9'

# kprobe vfs_write: the buffer is exactly the count bytes written (never read on to a NUL),
# with every hook.
kprobe_write_bytes() {
    for hook in $(buffer_hooks); do
        out=/tmp/kpw-$hook.json
        run "$out" /tmp/kpw.err "$BTRACE" kprobe vfs_write --json --hook "$hook" -c "$WORKLOAD bytes" ||
            fail "--hook $hook: btrace exited $?: $(head -n1 /tmp/kpw.err)"
        n=$(grep '"comm":"workload"' "$out" | grep -c '"type":"event"')
        [ "$n" = 1 ] || fail "--hook $hook: $n vfs_write events of the workload, want 1"
        grep '"comm":"workload"' "$out" | grep -qF "$WRITTEN_JSON" ||
            fail "--hook $hook: not exactly the 9 bytes written: $(grep '"comm":"workload"' "$out" | head -c 400)"
        grep '"comm":"workload"' "$out" | grep -qF '"escaped":["buf"]' || fail "--hook $hook: buf not listed as escaped"
    done
    # The largest string size: the biggest scratch and in-flight values, with --ret.
    run /tmp/kpw-max.json /tmp/kpw.err "$BTRACE" kprobe vfs_write --ret --string-size 4096 --json -c "$WORKLOAD bytes" ||
        fail "--string-size 4096 --ret: btrace exited $?: $(head -n1 /tmp/kpw.err)"
    grep '"comm":"workload"' /tmp/kpw-max.json | grep -qF "$WRITTEN_JSON" ||
        fail "--string-size 4096 --ret: not exactly the 9 bytes written"
    run /tmp/kpw.txt /tmp/kpw.err "$BTRACE" kprobe vfs_write -c "$WORKLOAD bytes" ||
        fail "text: btrace exited $?"
    grep ' workload ' /tmp/kpw.txt | grep -qF ' buf="ab\x00c\xff\n\\\"d" count=9' ||
        fail "text: not the C-escaped 9 bytes: $(grep ' workload ' /tmp/kpw.txt)"
    detail "vfs_write buf = the 9 bytes written ($(buffer_hooks), text)"
}
register kprobe_write_bytes 120

# kprobe --ret vfs_read: the buffer is read at return (4 NULs from /dev/zero, where entry
# would have seen "XXXX"); without --ret, at entry, it is only its address.
kprobe_read_at_return() {
    for hook in $(buffer_hooks); do
        out=/tmp/kpr-$hook.json
        run "$out" /tmp/kpr.err "$BTRACE" kprobe vfs_read --ret --json --hook "$hook" -c "$WORKLOAD bytes" ||
            fail "--hook $hook: btrace exited $?: $(head -n1 /tmp/kpr.err)"
        line=$(grep '"comm":"workload"' "$out" | grep '"count":4,')
        [ -n "$line" ] || fail "--hook $hook: no vfs_read of 4 bytes by the workload"
        echo "$line" | grep -qF '"buf":"\u0000\u0000\u0000\u0000","count":4' ||
            fail "--hook $hook: buf is not the 4 bytes read: $line"
        echo "$line" | grep -qF '"ret":4,' || fail "--hook $hook: ret is not 4: $line"
    done
    run /tmp/kpr.json /tmp/kpr.err "$BTRACE" kprobe vfs_read --json -c "$WORKLOAD bytes" ||
        fail "no --ret: btrace exited $?"
    grep '"comm":"workload"' /tmp/kpr.json | grep '"count":4,' | grep -q '"buf":"0x[0-9a-f]*"' ||
        fail "no --ret: the unfilled buffer is not shown as its address: $(grep '"count":4,' /tmp/kpr.json)"
    detail "vfs_read buf: 4 bytes at return ($(buffer_hooks)), address at entry"
}
register kprobe_read_at_return 120

# A void function has no ret (JSON and text); a pointer return is bare hex in text. (fentry
# only where the kernel has it: kprobe_fentry checks the refusal elsewhere.)
kprobe_void_and_pointer_ret() {
    for hook in $(has_fentry && echo fentry) kprobe; do
        out=/tmp/kpv-$hook.json
        run "$out" /tmp/kpv.err "$BTRACE" kprobe fput --ret --json --hook "$hook" -c "$WORKLOAD bytes" ||
            fail "--hook $hook: btrace exited $?: $(head -n1 /tmp/kpv.err)"
        n=$(grep -c '"type":"event"' "$out")
        [ "$n" -ge 2 ] || fail "--hook $hook: $n fput events, want >= 2 (two closes)"
        grep '"type":"event"' "$out" | grep -q '"ret"' && fail "--hook $hook: fput is void but has ret"
        [ "$(grep '"type":"event"' "$out" | grep -c '"latency_ns":[1-9]')" = "$n" ] ||
            fail "--hook $hook: latency missing"
    done
    run /tmp/kpv.txt /tmp/kpv.err "$BTRACE" kprobe fput --ret -c "$WORKLOAD bytes" || fail "text: exited $?"
    grep ' fput ' /tmp/kpv.txt | grep -q 'ret=' && fail "text: fput is void but shows ret="
    grep ' fput ' /tmp/kpv.txt | grep -q ' lat=[0-9.]*[mun]*s$' || fail "text: no lat="
    # A function returning struct file *, called for each open: do_filp_open, gone from
    # 7.x kernels; alloc_empty_file everywhere.
    pf=$(kallsyms_pick "do_filp_open|alloc_empty_file") || fail "no do_filp_open or alloc_empty_file in kallsyms"
    dir=/tmp/kpp && rm -rf $dir && mkdir -p $dir
    run /tmp/kpp.txt /tmp/kpp.err "$BTRACE" kprobe "$pf" --ret -c "$WORKLOAD open $dir 2" ||
        fail "$pf: exited $?: $(head -n1 /tmp/kpp.err)"
    n=$(grep " $pf " /tmp/kpp.txt | grep -c ' ret=0x[0-9a-f]* lat=')
    [ "$n" -ge 2 ] || fail "$pf: $n lines with a bare hex ret, want >= 2"
    detail "fput: no ret; $pf: ret=0x..."
}
register kprobe_void_and_pointer_ret 120

# An enum argument by enumerator name, the number in raw: getppid's pid lookup.
kprobe_enum_by_name() {
    run /tmp/kpe.json /tmp/kpe.err "$BTRACE" kprobe __task_pid_nr_ns --json -c "$WORKLOAD syscalls 3 0" ||
        fail "btrace exited $?: $(head -n1 /tmp/kpe.err)"
    n=$(grep '"comm":"workload"' /tmp/kpe.json | grep -c '"type":"PIDTYPE_TGID"')
    [ "$n" -ge 3 ] || fail "$n events with type=PIDTYPE_TGID, want >= 3 (three getppid)"
    grep '"comm":"workload"' /tmp/kpe.json | grep '"type":"PIDTYPE_TGID"' | grep -q '"raw":{"type":1}' ||
        fail "raw number missing: $(grep -m1 PIDTYPE_TGID /tmp/kpe.json)"
    detail "$n calls with type=PIDTYPE_TGID (raw 1)"
}
register kprobe_enum_by_name 60

# Functions the BPF trampoline itself uses never get fentry (older kernels hang on it):
# auto goes to kprobe, which counts calls normally; --hook fentry is refused in one line.
kprobe_trampoline_deny_list() {
    # The first function of btrace's deny list this kernel has (which exist depends on its
    # configuration: __rcu_read_lock only with preemptible RCU, as on 6.1+ here), once:
    # arm64 7.3 has a dozen local copies of an inlined __rcu_read_unlock, which a kprobe
    # cannot name (EADDRNOTAVAIL: the name matches several symbols).
    f=""
    for c in __rcu_read_lock __rcu_read_unlock migrate_disable migrate_enable preempt_count_add; do
        if [ "$(grep -c " [tT] $c\$" /proc/kallsyms)" = 1 ]; then f=$c; break; fi
    done
    [ -n "$f" ] || skip "no function of the deny list in this kernel"
    run /tmp/kpd.json /tmp/kpd.err "$BTRACE" kprobe $f --json -d 0.5 ||
        fail "auto on $f exited $?: $(head -n1 /tmp/kpd.err)"
    [ "$(json_get /tmp/kpd.json '"type":"summary"' hook)" = kprobe ] ||
        fail "auto on $f did not take kprobe: $(tail -n1 /tmp/kpd.json)"
    n=$(grep -c '"type":"event"' /tmp/kpd.json)
    # migrate_disable is inlined at its callers from 6.18 on; its out-of-line copy (for
    # modules) may see no call at all: SKIP then, once the refusal below is checked.
    [ "$n" -gt 0 ] || case "$f" in migrate_*) ;; *) fail "no $f calls in 0.5 s" ;; esac
    run /tmp/kpd2.out /tmp/kpd2.err "$BTRACE" kprobe $f --hook fentry -d 0.5 &&
        fail "--hook fentry on $f was not refused"
    [ "$(wc -l </tmp/kpd2.err)" = 1 ] || fail "not one line: $(cat /tmp/kpd2.err)"
    grep -q "BPF trampoline" /tmp/kpd2.err || fail "no reason: $(cat /tmp/kpd2.err)"
    [ "$n" -gt 0 ] || skip "$f: auto took kprobe, --hook fentry refused; no call of the out-of-line $f in 0.5 s to count"
    detail "$f: auto took kprobe ($n calls); --hook fentry refused"
}
register kprobe_trampoline_deny_list 60

# ---- Globs and --count (issue 16): calls per kernel function counted in the kernel ----

# __x64_sys_getp?id matches exactly __x64_sys_getppid and __x64_sys_getpgid (arm64:
# __arm64_sys_*, sys_fn), each entered once per syscall on every kernel; `workload getids
# 300 200` makes 300 and 200 of them. auto (kprobe.multi from 5.18 where the kernel has
# fprobe, else one kprobe per function) and --hook kprobe (one kprobe per function
# everywhere): exact counts, no other function, nothing lost.
kprobe_count_exact() {
    for hook in auto kprobe; do
        out=/tmp/kc-$hook.json
        run "$out" /tmp/kc.err "$BTRACE" kprobe --json "$(sys_fn 'getp?id')" --count --hook "$hook" \
            -c "$WORKLOAD getids 300 200" ||
            fail "--hook $hook: btrace kprobe --count exited $?: $(head -n1 /tmp/kc.err)"
        a=$(json_get "$out" "\"func\":\"$(sys_fn getppid)\"" count)
        [ "$a" = 300 ] || fail "--hook $hook: getppid count=${a:-none}, want 300"
        b=$(json_get "$out" "\"func\":\"$(sys_fn getpgid)\"" count)
        [ "$b" = 200 ] || fail "--hook $hook: getpgid count=${b:-none}, want 200"
        n=$(grep -c '"type":"count"' "$out")
        [ "$n" = 2 ] || fail "--hook $hook: $n count records, want 2"
        f=$(json_get "$out" '"type":"summary"' functions)
        [ "$f" = 2 ] || fail "--hook $hook: summary functions=${f:-none}, want 2"
        for k in ringbuf map_full missed; do
            v=$(json_get "$out" '"type":"summary"' $k)
            [ "$v" = 0 ] || fail "--hook $hook: lost.$k=${v:-none}"
        done
        used=$(json_get "$out" '"type":"summary"' hook)
        if [ "$hook" = kprobe ]; then
            [ "$used" = kprobe ] || fail "--hook kprobe used $used"
        elif ! has_fprobe; then
            # no CONFIG_FPROBE (Debian's arm64 kernels, 5.10): one kprobe per function
            [ "$used" = kprobe ] || fail "no kprobe.multi on this kernel (no fprobe), yet auto used $used"
        elif kver_ge 6.12; then
            # Debian's kernels from 6.12 attach kprobe.multi (6.1's fall back: seen 2026-11-24).
            [ "$used" = kprobe.multi ] || fail "auto used $used, want kprobe.multi"
        elif kver_ge 6.1; then
            [ "$used" = kprobe.multi ] || [ "$used" = kprobe ] || fail "auto used $used"
        else
            [ "$used" = kprobe ] || fail "5.10 has no kprobe.multi, yet auto used $used"
        fi
        hooks="$hooks $used"
    done
    # Text: a header and one aligned row per function, busiest first.
    run /tmp/kc.txt /tmp/kc.err "$BTRACE" kprobe "$(sys_fn 'getp?id')" --count -c "$WORKLOAD getids 30 20" ||
        fail "text: btrace exited $?: $(head -n1 /tmp/kc.err)"
    grep -A2 '^FUNCTION  *CALLS$' /tmp/kc.txt | tr '\n' '|' |
        grep -q "^FUNCTION  *CALLS|$(sys_fn getppid)  *30|$(sys_fn getpgid)  *20|\$" ||
        fail "text: not the header and two rows: $(tr '\n' '|' </tmp/kc.txt)"
    detail "getppid=300 getpgid=200 via$hooks; text rows"
}
register kprobe_count_exact 120

# A glob beyond --max-probes: one line saying how many functions matched and how to narrow;
# a glob without --count: one line.
kprobe_count_max_probes() {
    if run /tmp/kcm.out /tmp/kcm.err "$BTRACE" kprobe 'tcp_*' --count --max-probes 3 -d 1; then
        fail "exit 0 beyond --max-probes"
    fi
    [ "$(grep -c . /tmp/kcm.err)" = 1 ] || fail "want one stderr line"
    grep -q "'tcp_\*' matches [0-9]* functions of the kernel: at most 3 are probed at once (--max-probes 3); narrow the pattern" /tmp/kcm.err ||
        fail "unclear: $(head -n1 /tmp/kcm.err)"
    m=$(sed -n 's/.* matches \([0-9]*\) functions.*/\1/p' /tmp/kcm.err)
    [ "$m" -gt 3 ] || fail "matched $m, want more than 3"
    if run /tmp/kcm.out /tmp/kcm.err "$BTRACE" kprobe 'tcp_*' -d 1; then
        fail "exit 0 for a glob without --count"
    fi
    grep -q "a glob needs --count" /tmp/kcm.err || fail "unclear: $(head -n1 /tmp/kcm.err)"
    detail "$(head -c 120 /tmp/kcm.err 2>/dev/null); tcp_* = $m functions"
}
register kprobe_count_max_probes 60

# A glob with every tcp_ function, system-wide: attaches (hundreds of functions, through
# kprobe.multi or one kprobe each), counts the TCP functions of one connection, detaches.
kprobe_count_tcp() {
    run /tmp/kct.txt /tmp/kct.err "$BTRACE" kprobe 'tcp_*' --count -c "$WORKLOAD tcp-pair 127.0.0.1 9137 0 1000 2000" ||
        fail "btrace kprobe 'tcp_*' --count exited $?: $(head -n1 /tmp/kct.err)"
    grep -q '^tcp_sendmsg  *[1-9]' /tmp/kct.txt || fail "no tcp_sendmsg row"
    grep -q '^tcp_v4_connect  *1$' /tmp/kct.txt || fail "tcp_v4_connect not called exactly once"
    grep -q '^\[unknown' /tmp/kct.txt && fail "an address was not resolved to its function"
    detail "$(grep -o '^Traced.*' /tmp/kct.txt | head -c 100)"
}
register kprobe_count_tcp 120
