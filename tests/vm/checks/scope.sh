# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# Scope on every kernel of the matrix: a command's whole process tree (-c), one process
# (--no-children), a cgroup v2 and its child cgroup (--cgroup), and -c inside a pid
# namespace of its own. The same expectations as tests/scope.rs on the host.

# getppid count of a hist --json file.
getppid_count() {
    json_get "$1" '"syscall":"getppid"' count
}

scope_tree() {
    run /tmp/sc.json /tmp/sc.err "$BTRACE" hist --json --syscalls getppid -c "$WORKLOAD tree 100" ||
        fail "hist -c tree exited $?: $(head -n1 /tmp/sc.err)"
    [ "$(getppid_count /tmp/sc.json)" = 1500 ] || fail "-c tree: getppid=$(getppid_count /tmp/sc.json), want 1500"
    run /tmp/sc1.json /tmp/sc1.err "$BTRACE" hist --json --syscalls getppid --no-children -c "$WORKLOAD tree 100" ||
        fail "--no-children exited $?: $(head -n1 /tmp/sc1.err)"
    [ "$(getppid_count /tmp/sc1.json)" = 100 ] || fail "--no-children: getppid=$(getppid_count /tmp/sc1.json), want 100"
    detail "tree 1500, --no-children 100"
}
register scope_tree 90

scope_cgroup() {
    cg=/sys/fs/cgroup
    grep -q " $cg cgroup2 " /proc/mounts || mount -t cgroup2 none $cg || fail "cannot mount cgroup2"
    mkdir -p $cg/bt/inner || fail "cannot make test cgroups"
    rm -f /tmp/f1 /tmp/f2 /tmp/f3
    mkfifo /tmp/f1 /tmp/f2 /tmp/f3
    # Each subshell blocks opening its fifo, then becomes the workload (same pid).
    "$WORKLOAD" syscalls 111 0 </tmp/f1 & p1=$!
    "$WORKLOAD" syscalls 222 0 </tmp/f2 & p2=$!
    "$WORKLOAD" syscalls 444 0 </tmp/f3 & p3=$!
    echo $p1 >$cg/bt/cgroup.procs && echo $p2 >$cg/bt/inner/cgroup.procs || fail "cannot move into cgroups"
    "$BTRACE" hist --json --syscalls getppid --cgroup $cg/bt >/tmp/cg.json 2>/tmp/cg.err &
    bt=$!
    i=0
    while ! grep -q Tracing /tmp/cg.err; do
        i=$((i + 1))
        [ $i -lt 500 ] || fail "btrace never attached: $(cat /tmp/cg.err)"
        sleep 0.02
    done
    : >/tmp/f1; : >/tmp/f2; : >/tmp/f3
    wait $p1 $p2 $p3
    kill -TERM $bt
    wait $bt
    n=$(getppid_count /tmp/cg.json)
    rmdir $cg/bt/inner $cg/bt
    [ "$n" = 333 ] || fail "--cgroup: getppid=$n, want 333 (111 in the cgroup + 222 in its child, not the 444 outside)"
    detail "cgroup + child cgroup: 333"
}
register scope_cgroup 90

scope_pid_namespace() {
    run /tmp/ns.json /tmp/ns.err unshare --pid --fork --mount-proc "$BTRACE" hist --json --syscalls getppid -c "$WORKLOAD tree 10" ||
        fail "in a pid namespace: exited $?: $(head -n1 /tmp/ns.err)"
    [ "$(getppid_count /tmp/ns.json)" = 150 ] || fail "in a pid namespace: getppid=$(getppid_count /tmp/ns.json), want 150"
    detail "-c in a pid namespace: 150"
}
register scope_pid_namespace 60
