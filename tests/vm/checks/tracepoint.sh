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
