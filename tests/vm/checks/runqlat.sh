# SPDX-License-Identifier: Apache-2.0
# btrace runqlat on every kernel: a child named "wakee" sleeps 1 ms 60 times: 60 wake-ups
# (less the rare sleep that never blocked), through the default hook and raw_tp.

runqlat_wakeups() {
    ways=""
    for hook in "" "--hook raw_tp"; do
        run /tmp/rq.json /tmp/rq.err "$BTRACE" runqlat --json --per-process --comm wakee $hook \
            -c "$WORKLOAD wakeups 60" ||
            fail "[${hook:-auto}] btrace runqlat exited $?: $(head -n1 /tmp/rq.err)"
        w=$(json_get /tmp/rq.json '"key":"process"' wakeups)
        p=$(json_get /tmp/rq.json '"key":"process"' preemptions)
        n=$(json_get /tmp/rq.json '"key":"process"' count)
        c=$(json_get /tmp/rq.json '"key":"process"' comm)
        # A sleep whose timer fired before the task was off the run queue never waited (1 of
        # 60 seen in these guests): at most 60 wake-ups, at least 57; every wait is a
        # wake-up or a preemption (as in tests/runqlat.rs).
        [ "$c" = wakee ] && [ "${w:-0}" -le 60 ] && [ "${w:-0}" -ge 57 ] &&
            [ "$n" = $((${w:-0} + ${p:-0})) ] ||
            fail "[${hook:-auto}] wakee wakeups=${w:-none} preemptions=${p:-none} count=${n:-none} comm=${c:-none}, want 57..60 wake-ups and count = wake-ups + preemptions"
        WAYS_DETAIL="$WAYS_DETAIL $w+$p"
        ways="$ways $(json_get /tmp/rq.json '"type":"summary"' hook)+$(json_get /tmp/rq.json '"type":"summary"' store)"
    done
    detail "60 sleeps: wake-ups+preemptions$WAYS_DETAIL via$ways"
}
register runqlat_wakeups 90
