# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace tracepoint: exact openat events with filenames read from user memory.

tracepoint_exact() {
    dir=/tmp/tp && rm -rf $dir && mkdir -p $dir
    run /tmp/tp.json /tmp/tp.err "$BTRACE" tracepoint --json syscalls:sys_enter_openat -c "$WORKLOAD open $dir 4" ||
        fail "btrace tracepoint exited $?: $(head -n1 /tmp/tp.err)"
    n=$(grep -c '"type":"event"' /tmp/tp.json)
    [ "$n" = 4 ] || fail "$n events, want 4"
    [ "$(grep -c "\"filename\":\"$dir/btrace-4-" /tmp/tp.json)" = 4 ] || fail "filenames missing"
    detail "4/4 openat events with filenames"
}
register tracepoint_exact 60

# Decoding on every kernel: write's exact bytes (a bounded buffer read on 5.10's verifier
# too), lseek's signed offset, execve's argv, a cut string.
tracepoint_decoding() {
    run /tmp/tpd.json /tmp/tpd.err "$BTRACE" tracepoint --json syscalls:sys_enter_write -c "$WORKLOAD bytes" ||
        fail "write: btrace exited $?: $(head -n1 /tmp/tpd.err)"
    grep '"comm":"workload"' /tmp/tpd.json | grep -qF '"buf":"ab\u0000c\\xff\n\\\\\"d","count":9' ||
        fail "write: not exactly the 9 bytes: $(grep '"comm":"workload"' /tmp/tpd.json)"
    run /tmp/tpd.json /tmp/tpd.err "$BTRACE" tracepoint --json syscalls:sys_enter_lseek -c "$WORKLOAD signed" ||
        fail "lseek: btrace exited $?"
    grep '"comm":"workload"' /tmp/tpd.json | grep -qF '"offset":-5,' || fail "lseek: offset is not -5"
    # The largest string size: argv and envp slots of 20 items of 4096 bytes each.
    run /tmp/tpd.json /tmp/tpd.err "$BTRACE" tracepoint --json --string-size 4096 syscalls:sys_enter_execve -c "$WORKLOAD exec-args 7" ||
        fail "execve: btrace exited $?"
    grep '"comm":"workload"' /tmp/tpd.json |
        grep -qF '"argv":["workload","noop","sp ace","tab\tq\"uote\\","\\xff\u0001","","arg-6"],"envp":["BTRACE_ENV=1"]' ||
        fail "execve: argv not exact: $(grep '"comm":"workload"' /tmp/tpd.json | head -c 400)"
    run /tmp/tpd.json /tmp/tpd.err "$BTRACE" tracepoint --json --string-size 4096 syscalls:sys_enter_openat -c "$WORKLOAD long-path 300" ||
        fail "openat: btrace exited $?"
    grep '"comm":"workload"' /tmp/tpd.json | grep -q '"truncated"' && fail "openat: cut at --string-size 4096"
    run /tmp/tpd.json /tmp/tpd.err "$BTRACE" tracepoint --json --string-size 16 syscalls:sys_enter_openat -c "$WORKLOAD long-path 300" ||
        fail "openat: btrace exited $?"
    grep '"comm":"workload"' /tmp/tpd.json | grep -qF '"filename":"/nonexistent-btr",' || fail "openat: not cut at 16"
    grep '"comm":"workload"' /tmp/tpd.json | grep -qF '"truncated":["filename"]' || fail "openat: cut not marked"
    detail "write bytes, lseek -5, execve argv, cut at 16 / whole at 4096"
}
register tracepoint_decoding 120
