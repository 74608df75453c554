# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace exec on every kernel: the exact execs of a command (one failing, one argument
# list longer than kept, one over-long argument, one exec from a second thread); --fails.

exec_exact() {
    run /tmp/ex.json /tmp/ex.err "$BTRACE" exec --json -c "$WORKLOAD exec-set" ||
        fail "btrace exec exited $?: $(head -n1 /tmp/ex.err)"
    n=$(grep -c '"type":"exec"' /tmp/ex.json)
    [ "$n" = 6 ] || fail "exec records=$n, want 6"
    grep -F '"argv":["workload","noop","one","two"]' /tmp/ex.json | grep -q '"ret":0' ||
        fail "no successful exec of 'workload noop one two'"
    grep -F '"filename":"/nonexistent-btrace/prog"' /tmp/ex.json | grep -q '"errno":"ENOENT"' ||
        fail "the failing exec is missing or has no ENOENT"
    grep -F '"a18"],' /tmp/ex.json | grep -q '"truncated":\["argv"\]' ||
        fail "the long argument list is not cut after 20 with truncated [argv]"
    grep -q '"truncated":\["argv\[2\]"\]' /tmp/ex.json || fail "the 300-byte argument is not marked truncated"
    grep -F '"argv":["workload","noop","from-thread"]' /tmp/ex.json | grep -q '"ret":0' ||
        fail "the exec from a second thread is missing"
    run /tmp/exf.json /tmp/exf.err "$BTRACE" exec --json --fails -c "$WORKLOAD exec-set" ||
        fail "btrace exec --fails exited $?: $(head -n1 /tmp/exf.err)"
    f=$(grep -c '"type":"exec"' /tmp/exf.json)
    [ "$f" = 1 ] || fail "--fails records=$f, want 1"
    detail "6 execs (1 ENOENT, truncation marked), --fails 1, via $(json_get /tmp/ex.json '"type":"summary"' hook)"
}
register exec_exact 90
