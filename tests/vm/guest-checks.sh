#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest-side runner: load every tests/vm/checks/*.sh (which register checks), run them one
# by one and report on the console:
#   VMTEST-INFO kernel <uname -r>
#   VMTEST-PLAN <check> <check> ...
#   VMTEST-START <check>
#   VMTEST-LOG <check>| <line>          (output of a failing check; of all with vmtest.verbose=1)
#   VMTEST-RESULT <check> PASS|FAIL|SKIP <detail>
#   VMTEST-DONE
# Kernel command line: vmtest.checks=a,b runs only those; vmtest.verbose=1 logs every check.
# After the checks of checks/*.sh comes dmesg_clean (lib.sh): no oops, BUG, stall, lockup,
# GPF or WARNING in the kernel log since boot.
VMTEST_DIR=/vmtest
# The guest's copy (tests/vm/lib.sh, checked on its own).
# shellcheck source=/dev/null
. $VMTEST_DIR/lib.sh
mkdir -p "$VMTEST_STATE"

VMTEST_REGISTERED=""
for f in "$VMTEST_DIR"/checks/*.sh; do
    # shellcheck source=/dev/null
    . "$f"
done
# Last of all: the kernel log since boot must be clean (lib.sh), so a check that oopses or
# warns the kernel without failing itself is still caught.
register dmesg_clean 60

only="" verbose=""
# The kernel command line: words on one line.
# shellcheck disable=SC2013
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        vmtest.checks=*) only=$(echo "${arg#vmtest.checks=}" | tr ',' ' ') ;;
        vmtest.verbose=*) verbose=${arg#vmtest.verbose=} ;;
    esac
done

echo "VMTEST-INFO kernel $(uname -r)"

plan=""
for entry in $VMTEST_REGISTERED; do
    name=${entry%:*}
    if [ -n "$only" ]; then
        case " $only " in *" $name "*) ;; *) continue ;; esac
    fi
    plan="$plan $entry"
done
for want in $only; do
    case " $VMTEST_REGISTERED " in
        *" $want:"*) ;;
        *) echo "VMTEST-RESULT $want FAIL no such check" ;;
    esac
done
echo "VMTEST-PLAN$(for e in $plan; do printf ' %s' "${e%:*}"; done)"

for entry in $plan; do
    name=${entry%:*}
    limit=${entry##*:}
    out=$VMTEST_STATE/$name.out
    rm -f "$VMTEST_STATE/$name.detail" "$VMTEST_STATE/$name.skip" "$VMTEST_STATE/$name.timeout"
    echo "VMTEST-START $name"
    t0=$(date +%s)
    # Each check runs in its own session (setsid, no fork: we are not a group leader here),
    # so a timeout can kill the check and everything it started.
    # The child shell expands the single-quoted script.
    # shellcheck disable=SC2016
    VMTEST_CHECK=$name setsid sh -c '. /vmtest/lib.sh; for f in /vmtest/checks/*.sh; do . "$f"; done; cd /tmp; "$VMTEST_CHECK"' \
        </dev/null >"$out" 2>&1 &
    pid=$!
    (
        sleep "$limit"
        : >"$VMTEST_STATE/$name.timeout"
        kill -9 -"$pid" 2>/dev/null
    ) &
    watchdog=$!
    wait $pid
    rc=$?
    kill $watchdog 2>/dev/null
    wait $watchdog 2>/dev/null
    secs=$(($(date +%s) - t0))

    d=""
    [ -f "$VMTEST_STATE/$name.detail" ] && d=$(head -n1 "$VMTEST_STATE/$name.detail")
    if [ -f "$VMTEST_STATE/$name.timeout" ]; then
        status=FAIL
        d="timed out after ${limit}s${d:+ ($d)}"
    elif [ -f "$VMTEST_STATE/$name.skip" ]; then
        status=SKIP
    elif [ "$rc" = 0 ]; then
        status=PASS
    else
        status=FAIL
        [ -n "$d" ] || d="exit status $rc"
    fi
    if [ "$status" = FAIL ] || [ -n "$verbose" ]; then
        sed "s/^/VMTEST-LOG $name| /" "$out" | head -n 300
    fi
    echo "VMTEST-RESULT $name $status ${d:-ok} [${secs}s]"
done
echo "VMTEST-DONE"
