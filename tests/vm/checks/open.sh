# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace open on every kernel: K files made through open, openat, openat2 and creat, J
# failed opens (ENOENT); --fails; --path-prefix; both hooks. arm64 has no open(2) and no
# creat(2): there the workload makes those files with openat, as its libc would.

open_exact() {
    ways=""
    case "$(uname -m)" in
        aarch64) per_call="open:0 openat:6 openat2:2 creat:0" ;;
        *) per_call="open:2 openat:2 openat2:2 creat:2" ;;
    esac
    for hook in tracepoint raw_tp; do
        rm -rf /tmp/od && mkdir -p /tmp/od
        run /tmp/op.json /tmp/op.err "$BTRACE" open --json --hook $hook -c "$WORKLOAD opens /tmp/od 8 3" ||
            fail "[$hook] btrace open exited $?: $(head -n1 /tmp/op.err)"
        n=$(grep -F '"path":"/tmp/od/' /tmp/op.json | grep -c '"type":"open"')
        [ "$n" = 11 ] || fail "[$hook] records under /tmp/od=$n, want 11"
        for cw in $per_call; do
            c=${cw%:*}
            k=$(grep -F '"path":"/tmp/od/f' /tmp/op.json | grep -c "\"call\":\"$c\"")
            [ "$k" = "${cw#*:}" ] || fail "[$hook] $c records=$k, want ${cw#*:}"
        done
        grep -F '"path":"/tmp/od/f2"' /tmp/op.json | grep -F '"flags":"O_RDWR|O_CREAT|O_CLOEXEC"' |
            grep -q '"mode":"0644"' || fail "[$hook] openat2 of f2: flags or mode wrong"
        e=$(grep -F '"path":"/tmp/od/missing-' /tmp/op.json | grep -c '"errno":"ENOENT"')
        [ "$e" = 3 ] || fail "[$hook] ENOENT records=$e, want 3"
        ways="$ways $hook"
    done
    rm -rf /tmp/od && mkdir -p /tmp/od
    run /tmp/opf.json /tmp/opf.err "$BTRACE" open --json --fails -c "$WORKLOAD opens /tmp/od 8 3" ||
        fail "btrace open --fails exited $?: $(head -n1 /tmp/opf.err)"
    f=$(grep -c '"type":"open"' /tmp/opf.json)
    [ "$f" = 3 ] || fail "--fails records=$f, want 3"
    rm -rf /tmp/od && mkdir -p /tmp/od
    run /tmp/opp.json /tmp/opp.err "$BTRACE" open --json --path-prefix /tmp/od/missing- -c "$WORKLOAD opens /tmp/od 8 3" ||
        fail "btrace open --path-prefix exited $?: $(head -n1 /tmp/opp.err)"
    p=$(grep -c '"type":"open"' /tmp/opp.json)
    [ "$p" = 3 ] || fail "--path-prefix records=$p, want 3"
    detail "8 + 3 ENOENT via$ways; --fails 3; --path-prefix 3"
}
register open_exact 120
