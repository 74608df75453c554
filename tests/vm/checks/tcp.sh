# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace tcp on the guest's loopback: one connection held 300 ms with known bytes each
# way (same expectations as the host tests), once with the hook btrace picks and once
# forced onto each hook, so tp_btf and the classic tracepoint are both tried on every
# kernel.

# tcp_pair_check ADDR FAMILY [btrace options...]: run one tcp-pair under btrace tcp -c and
# check the client's handshake, its end (duration, bytes) and the accepted socket's end.
tcp_pair_check() {
    addr=$1 family=$2
    shift 2
    port=21345
    run /tmp/tcp.json /tmp/tcp.err "$BTRACE" tcp --json --port $port "$@" \
        -c "$WORKLOAD tcp-pair $addr $port 300 1234 56789" ||
        fail "btrace tcp exited $?: $(head -n1 /tmp/tcp.err)"
    hook=$(json_get /tmp/tcp.json '"type":"summary"' hook)
    est='"oldstate":"SYN_SENT","newstate":"ESTABLISHED"'
    grep -F "$est" /tmp/tcp.json | grep -F "\"family\":$family" | grep -F "\"daddr\":\"$addr\"" |
        grep -qF "\"dport\":$port" || fail "[$hook] no SYN_SENT -> ESTABLISHED to $addr:$port"
    [ "$(json_get /tmp/tcp.json "$est" comm)" = workload ] || fail "[$hook] owner is not the workload"
    cend='"oldstate":"FIN_WAIT2","newstate":"CLOSE"'
    tx=$(json_get /tmp/tcp.json "$cend" tx_bytes)
    rx=$(json_get /tmp/tcp.json "$cend" rx_bytes)
    dur=$(json_get /tmp/tcp.json "$cend" duration_ms)
    [ "$tx" = 1234 ] && [ "$rx" = 56789 ] || fail "[$hook] client tx=${tx:-none} rx=${rx:-none}, want 1234 and 56789"
    # Emulated (TCG) guests, three booted at once on a busy 2-CPU host, overrun sleeps
    # badly: 481-1440 ms measured for this 300 ms hold. The tight bound (a few percent) is
    # the host test's job (tests/tcp.rs); here: never shorter than the hold, and not wild.
    awk -v d="${dur:-0}" 'BEGIN { exit !(d >= 300 && d <= 300 + 5000) }' ||
        fail "[$hook] client duration ${dur:-none} ms for a connection held 300 ms"
    send='"oldstate":"LAST_ACK","newstate":"CLOSE"'
    stx=$(json_get /tmp/tcp.json "$send" tx_bytes)
    srx=$(json_get /tmp/tcp.json "$send" rx_bytes)
    [ "$stx" = 56789 ] && [ "$srx" = 1234 ] || fail "[$hook] server tx=${stx:-none} rx=${srx:-none}, want 56789 and 1234"
    [ "$(json_get /tmp/tcp.json '"type":"summary"' ringbuf)" = 0 ] || fail "[$hook] events dropped"
    echo "$hook: duration ${dur} ms, tx 1234 rx 56789"
    TCP_DETAIL="$TCP_DETAIL $hook ${dur}ms"
}

tcp_ipv4() {
    TCP_DETAIL=""
    tcp_pair_check 127.0.0.1 4
    tcp_pair_check 127.0.0.1 4 --hook tp_btf
    tcp_pair_check 127.0.0.1 4 --hook tracepoint
    detail "bytes exact;$TCP_DETAIL"
}
register tcp_ipv4 120

tcp_ipv6() {
    ip -6 addr show dev lo 2>/dev/null | grep -q '::1' ||
        grep -q '^00000000000000000000000000000001' /proc/net/if_inet6 2>/dev/null ||
        skip "no ::1 on lo in this guest"
    TCP_DETAIL=""
    tcp_pair_check ::1 6
    detail "bytes exact;$TCP_DETAIL"
}
register tcp_ipv6 60
