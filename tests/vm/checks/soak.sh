# Kprobe soak: dozens of attach/detach cycles of `btrace kprobe` (kernel live patching:
# shellcheck shell=sh
# kprobe int3s, fentry trampolines) over hot and tricky kernel functions, kprobe and
# fentry, with and without --ret, while a background workload keeps those functions busy
# on both vCPUs; then the kernel log must be clean.

# "COMBOS NAME[|ALTERNATIVE...] [LETTERS>=VERSION]": the first name in /proc/kallsyms is
# traced, an entry with none is skipped (__kmalloc and kmem_cache_alloc became *_noprof in
# 6.10; __rcu_read_lock exists only with CONFIG_PREEMPT_RCU, which Debian's 5.10 lacks).
# COMBOS: k = kprobe, K = kprobe --ret, f = fentry, F = fentry --ret (fexit); h = hot:
# must see events within 0.3 s. LETTERS>=VERSION: those combos only from that kernel on:
#  - fF>=5.12 on _raw_spin_lock: before 5.12 trampolines have no per-program recursion
#    check, and the fentry program's entry-store update takes _raw_spin_lock again: btrace
#    refuses fentry on the spin-lock family there (see kprobe_fentry_reentry);
#  - fF>=5.17 on vfs_read/vfs_write: their `loff_t *` argument cannot be read from an
#    fentry program before 5.17 (verifier: "arg3 type INT is not a struct"), btrace's
#    load fails with EACCES;
#  - fF>=6.16 on kfree: the same for its `const void *` argument before 6.16.
# Never fentry on functions the BPF trampoline itself calls (__rcu_read_lock/unlock,
# migrate_disable/enable, ...): that hangs 6.1 for good, so btrace refuses it on every
# kernel (kprobe_trampoline_deny_list).
SOAK_FUNCS="
kKfFh __kmalloc_noprof|__kmalloc
kFh   kmem_cache_alloc_noprof|kmem_cache_alloc
kKfFh kfree fF>=6.16
kKh   __rcu_read_lock
kKfFh _raw_spin_lock fF>=5.12
kF    mutex_lock
Kf    try_to_wake_up
kKfF  tcp_sendmsg
kFh   vfs_read fF>=5.17
Kfh   vfs_write fF>=5.17
"

# Background load until /tmp/soak.stop exists: TCP (connect, accept, send, close), file
# opens, reads and writes, thread starts, wake-ups, and getppid spread over both CPUs.
soak_load_net_fs() {
    i=0
    mkdir -p /tmp/soak-files
    while [ ! -e /tmp/soak.stop ]; do
        "$WORKLOAD" tcp-pair 127.0.0.1 $((22000 + i % 64)) 0 4096 65536 >/dev/null 2>&1
        "$WORKLOAD" tcp-many 127.0.0.1 $((23000 + i % 64)) 10 >/dev/null 2>&1
        "$WORKLOAD" open /tmp/soak-files 10 >/dev/null 2>&1
        rm -f /tmp/soak-files/*
        "$WORKLOAD" syscalls 200 200 >/dev/null 2>&1
        i=$((i + 1))
    done
}
soak_load_sched() {
    while [ ! -e /tmp/soak.stop ]; do
        "$WORKLOAD" spread 20000 >/dev/null 2>&1
        "$WORKLOAD" block 8 5 >/dev/null 2>&1
        "$WORKLOAD" threads 4 50 >/dev/null 2>&1
        echo soak >/tmp/soak-files.w
        cat /tmp/soak-files.w >/dev/null
    done
}

# soak_cycle FUNC MODE [--ret]: one attach, 0.3 s of events, detach; prints one line.
soak_cycle() {
    f=$1 mode=$2 ret=$3
    progress "$f --hook $mode $ret"
    c0=$(cut -d' ' -f1 /proc/uptime)
    # shellcheck disable=SC2086 # $ret: a flag or none (no word when empty)
    "$BTRACE" kprobe "$f" -d 0.3 --hook "$mode" $ret --json >/tmp/soak.json 2>/tmp/soak.err
    rc=$?
    c1=$(cut -d' ' -f1 /proc/uptime)
    sum=$(grep -F '"type":"summary"' /tmp/soak.json | tail -n1)
    ev=$(json_get /tmp/soak.json '"type":"summary"' events)
    echo "$f --hook $mode $ret: exit $rc in $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }') s, events ${ev:-none}; ${sum:-no summary}"
    if [ "$rc" != 0 ]; then
        sed 's/^/  stderr: /' /tmp/soak.err | head -n 5
        SOAK_BAD="$SOAK_BAD $f/$mode$ret:exit$rc"
    elif [ -z "$sum" ]; then
        SOAK_BAD="$SOAK_BAD $f/$mode$ret:nosummary"
    elif [ -n "$hot" ] && [ "${ev:-0}" = 0 ]; then
        SOAK_BAD="$SOAK_BAD $f/$mode$ret:noevents"
    fi
    SOAK_N=$((SOAK_N + 1))
    rm -f /tmp/soak.json /tmp/soak.err
}

kprobe_soak() {
    dmesg_mark /tmp/soak.mark
    rm -f /tmp/soak.stop /tmp/soak.result /tmp/soak.skipped
    soak_load_net_fs &
    l1=$!
    soak_load_sched &
    l2=$!
    SOAK_N=0 SOAK_BAD="" skipped="" t0=$(date +%s)
    echo "$SOAK_FUNCS" | while read -r combos names need; do
        [ -n "$combos" ] || continue
        if ! f=$(kallsyms_pick "$names"); then
            echo "skip $names: not in /proc/kallsyms"
            printf '%s (not in kallsyms); ' "$names" >>/tmp/soak.skipped
            continue
        fi
        hot=""
        case "$combos" in *h*) hot=1 ;; esac
        for c in $(echo "$combos" | sed 's/./& /g'); do
            case "$c" in [kKfF]) ;; *) continue ;; esac
            case "${need%%>=*}" in
                *"$c"*)
                    if ! kver_ge "${need#*>=}"; then
                        echo "skip $f $c: needs ${need#*>=}"
                        printf '%s %s (before %s); ' "$f" "$c" "${need#*>=}" >>/tmp/soak.skipped
                        continue
                    fi
                    ;;
            esac
            case "$c" in
                f | F)
                    if ! has_fentry; then
                        echo "skip $f $c: no fentry on this kernel"
                        printf '%s %s (no fentry); ' "$f" "$c" >>/tmp/soak.skipped
                        continue
                    fi
                    ;;
            esac
            case "$c" in
                k) soak_cycle "$f" kprobe ;;
                K) soak_cycle "$f" kprobe --ret ;;
                f) soak_cycle "$f" fentry ;;
                F) soak_cycle "$f" fentry --ret ;;
            esac
        done
        echo "$SOAK_N $SOAK_BAD" >/tmp/soak.result
    done
    : >/tmp/soak.stop
    wait $l1 $l2
    read -r SOAK_N SOAK_BAD </tmp/soak.result
    secs=$(($(date +%s) - t0))
    [ -f /tmp/soak.skipped ] && skipped="; skipped: $(sed 's/; $//' /tmp/soak.skipped)"
    if dmesg_bad /tmp/soak.mark >/tmp/soak.dmesg; then
        head -n 150 /tmp/soak.dmesg
        fail "kernel log after $SOAK_N cycles: $(grep -m1 -E "$DMESG_BAD" /tmp/soak.dmesg)"
    fi
    [ -z "$SOAK_BAD" ] || fail "$SOAK_N cycles, bad:$SOAK_BAD"
    detail "$SOAK_N attach/detach cycles (k kprobe, K kretprobe, f fentry, F fexit) in ${secs}s under load, kernel log clean$skipped"
}
register kprobe_soak 400

# fentry where the program would re-enter itself: _raw_spin_lock, which the fentry
# program's own store update takes (htab_map_update_elem -> pcpu_freelist_pop), on
# kernels whose trampolines have no per-program recursion check (before 5.12): there 5.10
# hangs silently, so btrace refuses --hook fentry in one line and auto takes kprobe; from
# 5.12 the recursion is caught and counted as missed, and fentry --ret must just work.
# (Functions the trampoline itself calls: kprobe_trampoline_deny_list.) arm64 inlines its
# spin locks (ARCH_INLINE_SPIN_*): no _raw_spin_lock function to trace there.
kprobe_fentry_reentry() {
    kallsyms_pick _raw_spin_lock >/dev/null ||
        skip "_raw_spin_lock is not a function of this kernel (inlined spin locks, as on arm64)"
    if kver_ge 5.12 && ! has_fentry; then
        # no fentry at all (arm64 before 6.4): refused in one line, auto --ret takes kprobe
        run /tmp/reent.out /tmp/reent.err "$BTRACE" kprobe _raw_spin_lock --hook fentry --ret -d 0.3 --json &&
            fail "--hook fentry --ret on _raw_spin_lock worked on a kernel without fentry"
        no_fentry_refusal /tmp/reent.out /tmp/reent.err
        run /tmp/reent.json /tmp/reent.err2 "$BTRACE" kprobe _raw_spin_lock --ret -d 0.3 --json ||
            fail "auto --ret on _raw_spin_lock exited $?: $(head -n1 /tmp/reent.err2)"
        [ "$(json_get /tmp/reent.json '"type":"summary"' hook)" = kprobe ] ||
            fail "auto --ret on _raw_spin_lock did not take kprobe: $(tail -n1 /tmp/reent.json)"
        detail "no fentry here: --hook fentry refused in one line; auto took kprobe ($(json_get /tmp/reent.json '"type":"summary"' events) events)"
        return
    fi
    if kver_ge 5.12; then
        run /tmp/reent.json /tmp/reent.err "$BTRACE" kprobe _raw_spin_lock --hook fentry --ret -d 0.3 --json ||
            fail "fentry --ret on _raw_spin_lock exited $?: $(head -n1 /tmp/reent.err)"
        detail "fentry --ret on _raw_spin_lock: $(json_get /tmp/reent.json '"type":"summary"' events) events"
        return
    fi
    run /tmp/reent.out /tmp/reent.err "$BTRACE" kprobe _raw_spin_lock --hook fentry --ret -d 0.3 --json &&
        fail "--hook fentry --ret on _raw_spin_lock was not refused on $(uname -r)"
    [ "$(grep -c . /tmp/reent.err)" = 1 ] || fail "not one line: $(cat /tmp/reent.err)"
    grep -q "re-entering itself" /tmp/reent.err || fail "no reason: $(cat /tmp/reent.err)"
    run /tmp/reent.json /tmp/reent.err2 "$BTRACE" kprobe _raw_spin_lock --ret -d 0.3 --json ||
        fail "auto --ret on _raw_spin_lock exited $?: $(head -n1 /tmp/reent.err2)"
    [ "$(json_get /tmp/reent.json '"type":"summary"' hook)" = kprobe ] ||
        fail "auto --ret on _raw_spin_lock did not take kprobe: $(tail -n1 /tmp/reent.json)"
    detail "--hook fentry refused in one line; auto took kprobe ($(json_get /tmp/reent.json '"type":"summary"' events) events)"
}
register kprobe_fentry_reentry 60
