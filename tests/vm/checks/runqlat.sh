# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace runqlat on every kernel: a child named "wakee" sleeps 1 ms 60 times: exactly 60
# wake-ups counted as they happen (woken), and 60 waits after a wake-up less the rare sleep
# that never blocked, through the default hook and raw_tp.

runqlat_wakeups() {
    ways=""
    for hook in "" "--hook raw_tp"; do
        # shellcheck disable=SC2086 # $hook: flags, split into words on purpose (none when empty)
        run /tmp/rq.json /tmp/rq.err "$BTRACE" runqlat --json --per-process --comm wakee $hook \
            -c "$WORKLOAD wakeups 60" ||
            fail "[${hook:-auto}] btrace runqlat exited $?: $(head -n1 /tmp/rq.err)"
        w=$(json_get /tmp/rq.json '"key":"process"' wakeups)
        p=$(json_get /tmp/rq.json '"key":"process"' preemptions)
        n=$(json_get /tmp/rq.json '"key":"process"' count)
        c=$(json_get /tmp/rq.json '"key":"process"' comm)
        k=$(json_get /tmp/rq.json '"key":"process"' woken)
        [ "$k" = 60 ] || fail "[${hook:-auto}] wakee woken=${k:-none}, want exactly 60"
        # A sleep whose timer fired before the task was off the run queue never waited (up to
        # 2 of 60 seen in these TCG guests, whose vCPUs the loaded host preempts for
        # milliseconds): at most 60 wake-ups, at least 54; every wait is a wake-up or a
        # preemption (tests/runqlat.rs on the host: at least 57).
        [ "$c" = wakee ] && [ "${w:-0}" -le 60 ] && [ "${w:-0}" -ge 54 ] &&
            [ "$n" = $((${w:-0} + ${p:-0})) ] ||
            fail "[${hook:-auto}] wakee wakeups=${w:-none} preemptions=${p:-none} count=${n:-none} comm=${c:-none}, want 54..60 wake-ups and count = wake-ups + preemptions"
        WAYS_DETAIL="$WAYS_DETAIL $k:$w+$p"
        ways="$ways $(json_get /tmp/rq.json '"type":"summary"' hook)+$(json_get /tmp/rq.json '"type":"summary"' store)"
    done
    detail "60 sleeps: woken:wake-ups+preemptions$WAYS_DETAIL via$ways"
}
register runqlat_wakeups 90
