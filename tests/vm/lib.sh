# SPDX-License-Identifier: Apache-2.0
# Helpers for guest checks (busybox ash). Sourced by guest-checks.sh and by the shell
# that runs each check. See tests/vm/README.md.
# shellcheck shell=sh

# For the checks that source this file.
# shellcheck disable=SC2034
BTRACE=/bin/btrace
# shellcheck disable=SC2034
WORKLOAD=/bin/workload
VMTEST_STATE=/tmp/vmtest

# register NAME [TIMEOUT-SECONDS]: run shell function NAME as a check (default timeout 60 s).
# Names: letters, digits, '_' and '-'; they are the row names of the host's table.
register() {
    VMTEST_REGISTERED="$VMTEST_REGISTERED $1:${2:-60}"
}

# detail TEXT: the short text shown next to PASS/FAIL (last call wins).
detail() {
    echo "$*" >"$VMTEST_STATE/$VMTEST_CHECK.detail"
}

# fail TEXT: end the check as FAIL with TEXT as detail.
fail() {
    detail "$*"
    echo "FAIL: $*"
    exit 1
}

# skip TEXT: end the check as SKIP (e.g. feature absent on this kernel). SKIP does not fail the run.
skip() {
    detail "$*"
    : >"$VMTEST_STATE/$VMTEST_CHECK.skip"
    exit 0
}

# kver_ge MAJOR.MINOR: true when the running kernel is at least that version.
kver_ge() {
    awk -v want="$1" -v have="$(uname -r)" 'BEGIN {
        split(want, w, "[.-]"); split(have, h, "[.-]");
        if (h[1] + 0 != w[1] + 0) exit !(h[1] + 0 > w[1] + 0);
        exit !(h[2] + 0 >= w[2] + 0) }'
}

# kallsyms_pick NAMES: the first of NAMES (a|b|c) that is a function in /proc/kallsyms.
kallsyms_pick() {
    for _n in $(echo "$1" | tr '|' ' '); do
        if grep -q -E " [tT] $_n\$" /proc/kallsyms; then
            echo "$_n"
            return 0
        fi
    done
    return 1
}

# json_get FILE PATTERN KEY: value of the first "KEY" in the first line of FILE that contains
# the fixed string PATTERN (strings are printed without quotes). Empty if absent.
#   json_get out.json '"syscall":"getppid"' total   -> 1000
json_get() {
    grep -F -m1 -- "$2" "$1" | awk -v k="\"$3\":" '{
        i = index($0, k); if (!i) exit;
        s = substr($0, i + length(k));
        if (substr(s, 1, 1) == "\"") { s = substr(s, 2); print substr(s, 1, index(s, "\"") - 1) }
        else { match(s, /^[^],}]*/); print substr(s, 1, RLENGTH) }
    }'
}

# progress TEXT: one line straight to the console (not part of the check's log), so that
# the serial log shows where a guest that hangs for good got to.
progress() {
    echo "vmtest-progress: $VMTEST_CHECK: $*" >/dev/console
}

# run OUT ERR CMD...: run CMD with stdout/stderr in files, echo both into the check's log
# (shown by the host when the check fails) and return CMD's exit status.
run() {
    _out=$1 _err=$2
    shift 2
    echo "+ $*"
    "$@" >"$_out" 2>"$_err"
    _rc=$?
    sed 's/^/  stdout: /' "$_out" | head -n 100
    sed 's/^/  stderr: /' "$_err" | head -n 100
    echo "  exit: $_rc"
    return $_rc
}

# Kernel log lines that mean the kernel is in trouble: oopses, BUG (also soft lockups and
# sleeping-in-atomic), RCU stalls, hard lockups, general protection faults, WARN_ON, hung
# tasks, panics.
DMESG_BAD='Oops|BUG:|RCU stall|detected stalls? on CPU|self-detected stall|soft lockup|hard LOCKUP|general protection|WARNING:|blocked for more than|Kernel panic'

# dmesg_mark FILE: note how many lines the kernel log has now (for dmesg_bad FILE).
dmesg_mark() {
    dmesg | wc -l >"$1"
}

# dmesg_bad [MARK-FILE]: the kernel log lines matching DMESG_BAD (only those after the
# mark, if given), each with the 12 lines after it (the call trace); nothing if clean.
dmesg_bad() {
    _skip=0
    [ -n "$1" ] && _skip=$(cat "$1")
    dmesg | tail -n +$((_skip + 1)) >/tmp/vmtest-dmesg.new
    grep -q -E "$DMESG_BAD" /tmp/vmtest-dmesg.new && grep -E -A 12 "$DMESG_BAD" /tmp/vmtest-dmesg.new
}

# dmesg_clean: run by guest-checks.sh after every other check: the whole kernel log since
# boot must be free of DMESG_BAD lines, whichever check caused them.
dmesg_clean() {
    dmesg_bad "" >/tmp/dmesg-clean.bad || {
        detail "$(dmesg | wc -l) kernel log lines, none matching: $DMESG_BAD"
        exit 0
    }
    head -n 150 /tmp/dmesg-clean.bad
    fail "kernel log: $(grep -c -E "$DMESG_BAD" /tmp/dmesg-clean.bad) bad lines, first: $(grep -m1 -E "$DMESG_BAD" /tmp/dmesg-clean.bad)"
}

# ---- Architecture: arm64 guests run the same checks (tests/vm/README.md, "arm64").
# What a check expects of the kernel's hooks is asked of the kernel itself, not of its
# version: Debian's arm64 kernels before 6.12 have no fentry and none has kprobe.multi.

# sys_fn NAME: the kernel function of syscall NAME on this architecture (__x64_sys_NAME on
# x86-64, __arm64_sys_NAME on arm64).
sys_fn() {
    case "$(uname -m)" in
        aarch64) echo "__arm64_sys_$1" ;;
        *) echo "__x64_sys_$1" ;;
    esac
}

# has_fentry: BPF trampolines can attach to kernel functions (fentry/fexit): the kernel
# has direct-call ftrace (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS), which exports
# register_ftrace_direct. arm64 has it from 6.4 (2aa6ac03516d), x86-64 from 5.5.
has_fentry() {
    grep -q -E ' [tT] register_ftrace_direct$' /proc/kallsyms
}

# has_fprobe: kprobe.multi links can exist (CONFIG_FPROBE, which exports register_fprobe).
has_fprobe() {
    grep -q -E ' [tT] register_fprobe$' /proc/kallsyms
}

# no_fentry_refusal OUT ERR: btrace's one-line refusal of --hook fentry on a kernel without
# fentry (has_fentry false): non-zero exit already seen by the caller, one stderr line
# saying that fentry is what failed, no event. Fails the check otherwise.
no_fentry_refusal() {
    [ "$(grep -c . "$2")" = 1 ] || fail "no fentry here: want one stderr line, got: $(head -c 400 "$2")"
    grep -q "fentry" "$2" || fail "no fentry here: the refusal does not name fentry: $(head -n1 "$2")"
    grep -q '"type":"event"' "$1" && fail "no fentry here, yet events were printed"
    return 0
}

# btf_has NAME: the running kernel's BTF has the string NAME (a type's or function's name).
btf_has() {
    tr '\0' '\n' </sys/kernel/btf/vmlinux | grep -q -x -F "$1"
}

# openat2_typed: the kernel's BTF has do_sys_openat2 (the function of btrace kprobe's
# default and of the kprobe checks), whose arguments btrace types from it. Debian's arm64
# 5.10 BTF lacks it (its pahole encoded only part of the functions), and do_sys_open, which
# it has, is inlined into the openat syscall there: the checks count the calls and skip
# what needs the arguments (the filenames), saying why.
openat2_typed() {
    btf_has do_sys_openat2
}
openat2_untyped() {
    echo "do_sys_openat2 has no BTF prototype in this kernel's BTF: arguments untyped"
}
