# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace biolatency on every kernel: a loop device over a file in /tmp (tmpfs), 100 O_DIRECT
# writes and 100 reads of 4 KiB: exactly 100 requests of each, on that disk, through
# tp_btf and raw_tp. The loop module comes from the kernel's package (run.sh appends it
# to the initramfs as lib/modules/RELEASE/loop.ko).

# loop_dev: sets LOOP to a loop device over /tmp/bio.img, or skips when the kernel has no
# loop support.
loop_dev() {
    if [ ! -e /sys/module/loop ]; then
        ko=/lib/modules/$(uname -r)/loop.ko
        [ -e "$ko" ] || skip "no loop support: no loop.ko for $(uname -r) in the initramfs"
        insmod "$ko" || fail "insmod $ko failed"
    fi
    i=0
    while [ ! -e /dev/loop-control ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
    truncate -s 8M /tmp/bio.img || fail "cannot make the backing file"
    LOOP=$(losetup -f) || fail "no free loop device"
    [ -e "$LOOP" ] || mknod "$LOOP" b 7 "${LOOP#/dev/loop}"
    losetup "$LOOP" /tmp/bio.img || fail "losetup $LOOP /tmp/bio.img failed"
}

biolatency_loop() {
    loop_dev
    name=${LOOP#/dev/}
    ways=""
    for hook in tp_btf raw_tp; do
        run /tmp/bio.json /tmp/bio.err "$BTRACE" biolatency --json --per-disk --hook $hook \
            -c "$WORKLOAD direct $LOOP 100 4096" ||
            { losetup -d "$LOOP"; fail "[$hook] btrace biolatency exited $?: $(head -n1 /tmp/bio.err)"; }
        for op in write read; do
            c=$(json_get /tmp/bio.json "\"disk\":\"$name\",\"dev\":\"7:${name#loop}\",\"op\":\"$op\"" count)
            b=$(json_get /tmp/bio.json "\"disk\":\"$name\",\"dev\":\"7:${name#loop}\",\"op\":\"$op\"" bytes)
            [ "$c" = 100 ] && [ "$b" = 409600 ] ||
                { losetup -d "$LOOP"; fail "[$hook] $name $op: count=${c:-none} bytes=${b:-none}, want 100 and 409600"; }
        done
        ways="$ways $hook"
    done
    losetup -d "$LOOP"
    detail "$name: 100 writes + 100 reads of 4 KiB via$ways"
}
register biolatency_loop 120
