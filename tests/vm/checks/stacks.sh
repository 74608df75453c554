# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# Stacks on real kernels: `profile` (cpu-clock samples by stack), `offcpu` (sched_switch
# blocked time by stack) with the stack workload (/bin/stackload, frame pointers, debug
# info), `kprobe --stack` (kernel stack holding the caller, user stack the workload's
# calling function), and `uprobe --stack` (/bin/ufuncs: f on top and main in the user
# stack, no kernel stack).

STACKLOAD=/bin/stackload

# profile: 1.5 s of CPU, 70 % in burn_hot and 30 % in burn_cold, at 99 Hz: both
# functions named in folded stacks, burn_hot the bigger. The sample count is checked
# loosely: under TCG the guest's CPU clock and its timer samples drift apart (the host
# test holds the exact bounds).
stacks_profile() {
    out=/tmp/prof.folded
    run "$out" /tmp/prof.err "$BTRACE" profile -F 99 --folded -c "$STACKLOAD burn 1500" ||
        fail "btrace profile exited $?: $(head -n1 /tmp/prof.err)"
    total=$(grep '^stackload;' "$out" | awk '{ n += $NF } END { print n + 0 }')
    hot=$(grep '^stackload;' "$out" | grep ';burn_hot' | awk '{ n += $NF } END { print n + 0 }')
    cold=$(grep '^stackload;' "$out" | grep ';burn_cold' | awk '{ n += $NF } END { print n + 0 }')
    [ "$total" -ge 75 ] && [ "$total" -le 450 ] || fail "$total samples of stackload, want about 148"
    [ "$hot" -gt "$cold" ] && [ "$cold" -gt 0 ] || fail "burn_hot $hot, burn_cold $cold samples"
    [ $((hot * 100)) -ge $((total * 50)) ] && [ $((hot * 100)) -le $((total * 85)) ] ||
        fail "burn_hot $hot of $total samples, want about 70 %"
    grep -q 'Traced CPU samples' /tmp/prof.err || fail "no summary on stderr"
    detail "$total samples: burn_hot $hot, burn_cold $cold"
}
register stacks_profile 120

# offcpu: 10 sleeps of 50 ms in block_here: about 0.5 s on that stack, and at most what
# the workload measured around its sleeps (which also holds the wait for a CPU after each
# wakeup; under TCG sleeps overrun). A sleep's timer cannot fire early, but it is armed
# inside nanosleep before the task leaves the CPU, so a block can be shorter than the
# sleep by that on-CPU stretch: under TCG up to 0.4 ms was seen (5.10, 496.0 ms for 10),
# so 1 ms per block is allowed; a lost or split block is 50 ms and fails.
stacks_offcpu() {
    out=/tmp/offcpu.json
    rm -f /tmp/offcpu.wall
    run "$out" /tmp/offcpu.err env STACKLOAD_BLOCK_FILE=/tmp/offcpu.wall "$BTRACE" offcpu --json -c "$STACKLOAD block 10 50" ||
        fail "btrace offcpu exited $?: $(head -n1 /tmp/offcpu.err)"
    line=$(grep '"type":"stack"' "$out" | grep '"comm":"stackload"' | grep '"name":"block_here"' | head -n1)
    [ -n "$line" ] || fail "no stackload stack with block_here"
    ns=$(echo "$line" | awk '{ i = index($0, "\"total_ns\":"); s = substr($0, i + 11); match(s, /^[0-9]+/); print substr(s, 1, RLENGTH) }')
    blocks=$(echo "$line" | awk '{ i = index($0, "\"blocks\":"); s = substr($0, i + 9); match(s, /^[0-9]+/); print substr(s, 1, RLENGTH) }')
    wall=$(cat /tmp/offcpu.wall)
    [ "$blocks" = 10 ] || fail "$blocks blocks on block_here's stack, want 10"
    [ "$ns" -ge 490000000 ] && [ "$ns" -le "$wall" ] || fail "$ns ns blocked, want 490000000 (10 x 50 ms, less 1 ms per block armed on the CPU) to $wall (the workload's own measure)"
    hook=$(json_get "$out" '"type":"summary"' hook)
    detail "10 blocks, $ns ns on block_here (workload measured $wall) via $hook"
}
register stacks_offcpu 90

# The syscall entry in the kernel stack of a do_sys_openat2 call: __x64_sys_openat
# (__arm64_sys_openat with fentry, whose arm64 trampoline records its caller's frame). A
# kprobe on arm64 fires before the function saves its link register: the caller
# (__arm64_sys_openat) is only in that register, which the kernel's frame-record unwinder
# does not report, so the entry seen is arm64's syscall dispatcher, invoke_syscall.
syscall_entry_frame() {
    if [ "$(uname -m)" = aarch64 ] && [ "$1" = kprobe ]; then echo invoke_syscall; else sys_fn openat; fi
}

# kprobe --stack HOOK: each do_sys_openat2 call's kernel stack holds the syscall entry
# (syscall_entry_frame), its user stack stackload's open_here (stacks taken at entry,
# fentry or kprobe; fentry refused in one line where the kernel has none). The workload's
# calls are told by their filenames: skipped where do_sys_openat2 is untyped.
stacks_kprobe_hook() {
    hook=$1
    entry=$(syscall_entry_frame "$hook")
    dir=/tmp/kps-$hook
    rm -rf "$dir" && mkdir -p "$dir"
    out=/tmp/kps-$hook.json
    if [ "$hook" = fentry ] && ! has_fentry; then
        run "$out" "/tmp/kps-$hook.err" "$BTRACE" kprobe do_sys_openat2 --hook "$hook" --stack --json -c "$STACKLOAD open $dir 3 300" &&
            fail "--hook fentry --stack worked on a kernel without direct-call ftrace"
        no_fentry_refusal "$out" "/tmp/kps-$hook.err"
        detail "no fentry on this kernel: refused in one line"
        return 0
    fi
    run "$out" "/tmp/kps-$hook.err" "$BTRACE" kprobe do_sys_openat2 --hook "$hook" --stack --json -c "$STACKLOAD open $dir 3 300" ||
        fail "btrace kprobe --hook $hook --stack exited $?: $(head -n1 "/tmp/kps-$hook.err")"
    openat2_typed || skip "$(openat2_untyped): the workload's calls cannot be told by filename"
    mine=$(grep '"type":"event"' "$out" | grep "\"filename\":\"$dir/stackload-")
    n=$(echo "$mine" | grep -c .)
    [ "$n" = 3 ] || fail "$n events for the workload's files, want 3"
    k=$(echo "$mine" | grep -c "\"kernel_stack\":\\[[^]]*\"name\":\"$entry\"")
    [ "$k" = 3 ] || fail "$k of 3 kernel stacks hold $entry"
    u=$(echo "$mine" | grep -c '"user_stack":\[[^]]*"name":"open_here"')
    [ "$u" = 3 ] || fail "$u of 3 user stacks hold open_here"
    used=$(json_get "$out" '"type":"summary"' hook)
    [ "$used" = "$hook" ] || fail "asked --hook $hook, summary says $used"
    detail "3/3 events via $hook: $entry in the kernel stack, open_here in the user stack"
}
stacks_kprobe_fentry() { stacks_kprobe_hook fentry; }
stacks_kprobe_kprobe() { stacks_kprobe_hook kprobe; }
register stacks_kprobe_fentry 90
register stacks_kprobe_kprobe 90

# uprobe --stack (the same code as kprobe's, func_probe.h): at f's entry the user stack
# holds main (/bin/ufuncs: -O0, frame pointers; do_f only where the kernel fixes up uprobe
# entry stacks); fstay keeps the process 1 s after
# its calls so its maps are read while it lives.
stacks_uprobe() {
    out=/tmp/ups.json
    run "$out" /tmp/ups.err "$BTRACE" uprobe /bin/ufuncs:f --stack --json -c "/bin/ufuncs fstay 3" ||
        fail "btrace uprobe --stack exited $?: $(head -n1 /tmp/ups.err)"
    n=$(grep -c '"type":"event"' "$out")
    [ "$n" = 3 ] || fail "$n events, want 3"
    m=$(grep '"type":"event"' "$out" | grep -c '"user_stack":\[[^]]*"name":"main"')
    [ "$m" = 3 ] || fail "user stacks holding main: $m, want 3"
    # The innermost frame is f, named as written (not demangled as a C++ type: float).
    t=$(grep '"type":"event"' "$out" | grep -c '"user_stack":\[{"name":"f",')
    [ "$t" = 3 ] || fail "user stacks starting at f: $t, want 3"
    # A uprobe fires in user mode: no kernel stack.
    k=$(grep '"type":"event"' "$out" | grep -c '"kernel_stack"')
    [ "$k" = 0 ] || fail "$k events with a kernel_stack, want none"
    detail "3/3 events: f on top, main in the user stack, no kernel stack"
}
register stacks_uprobe 60

# The profilers' double-buffered tables drained while running (BPF_MAP_LOOKUP_AND_DELETE_BATCH
# where the kernel has it, key by key elsewhere), under a fork storm (short processes, each
# its own stack): every sample and block the programs saw is kept, the tables were drained
# while the run went on, nothing was lost to a full table.
stacks_drain() {
    out=/tmp/drain-prof.json
    run "$out" /tmp/drain-prof.err "$BTRACE" profile -F 999 --json -c "$STACKLOAD storm 300 3 1" ||
        fail "btrace profile exited $?: $(head -n1 /tmp/drain-prof.err)"
    kept=$(json_get "$out" '"type":"summary"' samples)
    seen=$(json_get "$out" '"type":"summary"' samples_seen)
    drains=$(json_get "$out" '"type":"summary"' drains)
    [ -n "$kept" ] && [ "$kept" -gt 0 ] && [ "$kept" = "$seen" ] || fail "profile kept $kept of $seen samples"
    [ "$drains" -ge 2 ] || fail "profile drained its tables $drains times"
    grep '"type":"summary"' "$out" | grep -q '"lost":{"ringbuf":0,"map_full":0,' || fail "profile lost samples: $(grep '"type":"summary"' "$out")"
    out=/tmp/drain-offcpu.json
    run "$out" /tmp/drain-offcpu.err "$BTRACE" offcpu --json -c "$STACKLOAD storm 300 0 2" ||
        fail "btrace offcpu exited $?: $(head -n1 /tmp/drain-offcpu.err)"
    blocks=$(json_get "$out" '"type":"summary"' blocks)
    bseen=$(json_get "$out" '"type":"summary"' blocks_seen)
    bdrains=$(json_get "$out" '"type":"summary"' drains)
    [ -n "$blocks" ] && [ "$blocks" -ge 600 ] && [ "$blocks" = "$bseen" ] || fail "offcpu kept $blocks of $bseen blocks (want at least the 600 sleeps)"
    [ "$bdrains" -ge 2 ] || fail "offcpu drained its tables $bdrains times"
    grep '"type":"summary"' "$out" | grep -q '"lost":{"ringbuf":0,"map_full":0,' || fail "offcpu lost blocks: $(grep '"type":"summary"' "$out")"
    detail "profile: $kept of $seen samples, $drains drains; offcpu: $blocks of $bseen blocks, $bdrains drains"
}
register stacks_drain 180
