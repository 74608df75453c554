# SPDX-License-Identifier: Apache-2.0
# btrace runqlat on every kernel: a child named "wakee" sleeps 1 ms 60 times: exactly 60
# wake-ups, through the default hook and raw_tp.

runqlat_wakeups() {
    ways=""
    for hook in "" "--hook raw_tp"; do
        run /tmp/rq.json /tmp/rq.err "$BTRACE" runqlat --json --per-process --comm wakee $hook \
            -c "$WORKLOAD wakeups 60" ||
            fail "[${hook:-auto}] btrace runqlat exited $?: $(head -n1 /tmp/rq.err)"
        w=$(json_get /tmp/rq.json '"key":"process"' wakeups)
        c=$(json_get /tmp/rq.json '"key":"process"' comm)
        [ "$w" = 60 ] && [ "$c" = wakee ] || fail "[${hook:-auto}] wakee wakeups=${w:-none} comm=${c:-none}, want 60 wakee"
        ways="$ways $(json_get /tmp/rq.json '"type":"summary"' hook)+$(json_get /tmp/rq.json '"type":"summary"' store)"
    done
    detail "60 wake-ups via$ways"
}
register runqlat_wakeups 90
