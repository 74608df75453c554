# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# A kernel without BTF must give one clear error: hide /sys/kernel/btf behind an empty tmpfs.

no_btf_error() {
    [ -e /sys/kernel/btf/vmlinux ] || fail "this kernel has no /sys/kernel/btf/vmlinux to hide"
    mount -t tmpfs nobtf /sys/kernel/btf || fail "cannot mount a tmpfs over /sys/kernel/btf"
    run /tmp/nobtf.out /tmp/nobtf.err "$BTRACE" hist -d 1
    rc=$?
    umount /sys/kernel/btf
    [ -e /sys/kernel/btf/vmlinux ] || fail "BTF still hidden after umount"
    [ "$rc" != 0 ] || fail "btrace exited 0 without BTF"
    grep -q BTF /tmp/nobtf.err || fail "stderr does not mention BTF: $(head -n1 /tmp/nobtf.err)"
    n=$(grep -c . /tmp/nobtf.err)
    [ "$n" = 1 ] || fail "want one error line on stderr, got $n"
    detail "exit $rc: $(head -n1 /tmp/nobtf.err)"
}
register no_btf_error 30
