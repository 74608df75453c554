# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# Basic checks: the static binary starts on this kernel, needing no library at all.

btrace_runs() {
    run /tmp/help.out /tmp/help.err "$BTRACE" --help || fail "btrace --help exited $?"
    run /tmp/version.out /tmp/version.err "$BTRACE" --version || fail "btrace --version exited $?"
    grep -q 'static)$' /tmp/version.out || fail "not the static build: $(cat /tmp/version.out)"
    detail "$(cat /tmp/version.out)"
}
register btrace_runs 30

# The initramfs's /lib holds target/ufuncs's libc and loader (files.list: it is dynamic on
# purpose, for the libc uprobe checks), so passing checks alone would not show that btrace
# needs none of them. Here btrace runs from a root holding only itself and the static
# workload, with /proc, /sys and /dev bound in (no /lib, no loader, no ld.so.cache), and
# counts the workload's syscalls exactly.
btrace_no_libs() {
    r=/tmp/emptyroot
    mkdir -p $r/proc $r/sys $r/dev $r/tmp || fail "cannot make $r"
    cp /bin/btrace /bin/workload $r/ || fail "cannot copy btrace and workload into $r"
    mount -o rbind /proc $r/proc && mount -o rbind /sys $r/sys && mount -o rbind /dev $r/dev ||
        fail "cannot bind /proc, /sys, /dev into $r"
    # Names btrace_no_libs made itself, listed as they are.
    # shellcheck disable=SC2010,SC2143
    [ -z "$(ls $r | grep -v -x -E 'btrace|workload|proc|sys|dev|tmp')" ] || fail "more in $r than wanted: $(ls $r)"
    run /tmp/nolibs.json /tmp/nolibs.err chroot $r /btrace hist --json --syscalls getppid,read \
        -c "/workload syscalls 1000 300"
    rc=$?
    umount -l $r/proc
    umount -l $r/sys
    umount -l $r/dev
    [ "$rc" = 0 ] || fail "btrace hist in an empty root exited $rc: $(head -n1 /tmp/nolibs.err)"
    g=$(json_get /tmp/nolibs.json '"syscall":"getppid"' count)
    rd=$(json_get /tmp/nolibs.json '"syscall":"read"' count)
    [ "$g" = 1000 ] || fail "getppid count=${g:-none}, want 1000"
    [ "$rd" = 300 ] || fail "read count=${rd:-none}, want 300"
    detail "empty root: getppid=1000 read=300"
}
register btrace_no_libs 60
