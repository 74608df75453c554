# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace verifier: every wrong program rejected, every fixed variant loaded, on this kernel.

verifier_cases() {
    run /tmp/ver.json /tmp/ver.err "$BTRACE" verifier --json ||
        fail "btrace verifier exited $?: $(head -n1 /tmp/ver.err)"
    for c in loop bounds null stack uninit kptr; do
        r=$(json_get /tmp/ver.json "\"case\":\"$c\"" rejected)
        f=$(json_get /tmp/ver.json "\"case\":\"$c\"" fixed_loaded)
        [ "$r" = true ] || fail "case $c: rejected=$r"
        [ "$f" = true ] || fail "case $c: fixed_loaded=$f"
    done
    [ "$(json_get /tmp/ver.json '"type":"summary"' rejected)" = 6 ] || fail "summary: not 6 rejected"
    detail "6 rejected, 6 fixed variants loaded"
}
register verifier_cases 120
