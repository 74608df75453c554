# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# A kernel whose BTF is not in /sys/kernel/btf (hidden here under a tmpfs): btrace refuses
# in one line naming --btf; given the kernel's BTF as a file, hist and tracepoint count
# exactly again and kprobe types its arguments from the file.

btf_from_file() {
    cp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf || fail "cannot copy the kernel's BTF"
    mount -t tmpfs none /sys/kernel/btf || fail "cannot hide /sys/kernel/btf"
    "$BTRACE" hist -d 1 2>/tmp/bf.err >/dev/null && { umount /sys/kernel/btf; fail "ran without BTF"; }
    grep -q -- "--btf FILE" /tmp/bf.err || { umount /sys/kernel/btf; fail "no --btf advice: $(cat /tmp/bf.err)"; }
    run /tmp/bf.json /tmp/bf.err "$BTRACE" --btf /tmp/vmlinux.btf hist --json --syscalls getppid -c "$WORKLOAD syscalls 77 0"
    rc=$?
    run /tmp/bf2.json /tmp/bf2.err env BTRACE_BTF=/tmp/vmlinux.btf "$BTRACE" tracepoint --json syscalls:sys_enter_getppid -c "$WORKLOAD syscalls 5 0"
    rc2=$?
    run /tmp/bf3.json /tmp/bf3.err "$BTRACE" --btf /tmp/vmlinux.btf kprobe do_sys_openat2 --json -c "$WORKLOAD open /tmp 2"
    rc3=$?
    umount /sys/kernel/btf
    [ $rc = 0 ] && [ $rc2 = 0 ] && [ $rc3 = 0 ] || fail "exit statuses $rc $rc2 $rc3"
    [ "$(json_get /tmp/bf.json '"syscall":"getppid"' count)" = 77 ] || fail "hist with --btf: $(head -n1 /tmp/bf.json)"
    [ "$(grep -c '"type":"event"' /tmp/bf2.json)" = 5 ] || fail "tracepoint with BTRACE_BTF: $(grep -c '"type":"event"' /tmp/bf2.json) events"
    n=$(grep '"type":"event"' /tmp/bf3.json | grep -c '"dfd":-100,"filename":"/tmp/btrace-2-')
    if ! openat2_typed; then
        n=$(grep '"type":"event"' /tmp/bf3.json | grep -c '"func":"do_sys_openat2"')
        [ "$n" = 2 ] || fail "kprobe with --btf: $n events, want 2"
        skip "$(openat2_untyped); hist via $(json_get /tmp/bf.json '"type":"summary"' hook) and tracepoint 5/5 from the file"
    fi
    [ "$n" = 2 ] || fail "kprobe with --btf: $n typed events, want 2"
    detail "hist via $(json_get /tmp/bf.json '"type":"summary"' hook), tracepoint 5/5, kprobe args typed"
}
register btf_from_file 90
