/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* btrace tcp: types shared by tcp.bpf.c and user space (through the skeleton). */
#ifndef BTRACE_TCP_H
#define BTRACE_TCP_H

#include "abi.h"
#include "net.h"

/* tcp_event.flags: which of the optional fields were measured. */
enum tcp_event_flag {
	TCP_EV_OWNER = 1,       /* pid/comm hold the socket's owner */
	TCP_EV_COUNTERS = 2,    /* bytes_acked/bytes_received were read (closing event) */
	TCP_EV_SYN_ACKED = 4,   /* this end sent the SYN (seen in SYN_SENT): 1 of bytes_acked is the SYN */
	TCP_EV_FIN_ACKED = 8,   /* this end's FIN was acknowledged: 1 of bytes_acked is the FIN */
	TCP_EV_FIN_RECV = 16,   /* the peer's FIN was received: 1 of bytes_received is the FIN */
	TCP_EV_BIRTH = 32,      /* the socket's first transition was seen: whether this end sent
	                         * the SYN is known, so its payload byte count is exact */
};

/* Connection counters kept in the kernel for the exporter (per-CPU array `tcp_stats`),
 * for the transitions the scope lets through. */
enum tcp_stat {
	TCP_STAT_OPEN_ACTIVE = 0,     /* SYN_SENT -> ESTABLISHED: this end connected */
	TCP_STAT_OPEN_PASSIVE = 1,    /* SYN_RECV -> ESTABLISHED: this end accepted */
	TCP_STAT_CLOSED = 2,          /* an established connection ended (-> CLOSE) */
	TCP_STAT_RESET = 3,           /* ... straight from ESTABLISHED or CLOSE_WAIT: no FIN
	                               * handshake, a reset or an abort */
	TCP_STAT_CONNECT_FAILED = 4,  /* SYN_SENT -> CLOSE: refused, reset or timed out */
	TCP_STAT_TX_BYTES = 5,        /* payload bytes acknowledged by the peer, closed
	                               * connections whose first transition was seen */
	TCP_STAT_TX_UNKNOWN = 6,      /* closed connections whose sent bytes are not exact */
	TCP_STAT_RX_BYTES = 7,        /* payload bytes received, closed connections */
	TCP_STATS = 8,
};

/* The exporter's figures of one cgroup (`serve --by cgroup`, map `tcp_cgroup_figures`,
 * keyed by cgroup v2 id): the tcp_stat counters and the duration histogram of the
 * connections whose socket belongs to that cgroup. */
struct tcp_cgroup_figures {
	__u64 stats[TCP_STATS];
	struct hist durations;
};

/* What the tracer counts beside the loss slots (per-CPU array `tcp_counts`). */
enum tcp_count {
	TCP_UNTRACKED = 0,      /* sockets born while the per-socket store was full: reported
	                         * without owner or times (the hash store only) */
	TCP_UNATTRIBUTED = 1,   /* transitions a scope left out because the socket's owner was
	                         * not known (connected before tracing, or untracked) */
	TCP_COUNTS = 2,
};

enum tcp_limits {
	TCP_MAX_PORTS = 1024,   /* ports in the run-time filter */
	TCP_MAX_ADDRS = 256,    /* address ranges in the run-time filter */
};

/* The run-time filter, one entry in the `tcp_filter_cfg` array; changed by user space
 * while the program runs. Zero means "no filter" for each part. Which processes' sockets
 * are traced is the scope (scope.h), applied to the socket's owner. */
struct tcp_filter_cfg {
	__u16 family;    /* AF_INET (2) or AF_INET6 (10) */
	__u8 ports_on;   /* only sockets with a port in `tcp_filter_ports` at either end */
	__u8 addrs_on;   /* only sockets with an address in `tcp_filter_addrs` at either end */
};

/* Key of the address-range trie: IPv6 addresses as they are, IPv4 ones mapped into
 * ::ffff:0:0/96 (prefix lengths 96 + n), so one trie serves both families. */
struct tcp_addr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* One state transition of one TCP socket. */
struct tcp_event {
	__u64 ts_ns;           /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the transition */
	__u64 old_since_ns;    /* when the old state began; 0 = not seen */
	__u64 established_ns;  /* when ESTABLISHED began; 0 = not seen */
	__u64 bytes_acked;     /* tcp_sock counters, read at the closing transition */
	__u64 bytes_received;
	__u32 pid;             /* owner tgid, valid with TCP_EV_OWNER */
	__u16 family;          /* AF_INET or AF_INET6 */
	__u16 sport;           /* host order */
	__u16 dport;
	__u8 oldstate;
	__u8 newstate;
	__u8 flags;            /* enum tcp_event_flag */
	__u8 _pad[3];
	__u8 saddr[16];        /* IPv4: first 4 bytes */
	__u8 daddr[16];
	char comm[COMM_LEN];   /* owner's command name, valid with TCP_EV_OWNER */
	__u32 ns_pid;          /* owner's tgid in btrace's pid namespace (0: outside, or none) */
	__u32 _pad2;
	__u64 cgroup_id;       /* owner's cgroup v2 id when it was learned, valid with TCP_EV_OWNER */
};

/* What the kernel keeps per socket between transitions. */
struct tcp_conn {
	__u64 last_ns;         /* when the current state began */
	__u64 established_ns;  /* 0 = ESTABLISHED not seen */
	__u32 pid;
	__u8 owner_known;
	__u8 syn_sent;         /* went through SYN_SENT: this end sent the SYN */
	__u8 birth_seen;       /* the entry was made at the socket's first transition */
	__u8 in_scope;         /* the owner passed the scope's load-time part when it was learned */
	char comm[COMM_LEN];
	__u32 ns_pid;          /* the owner in btrace's pid namespace (see task_hdr) */
	__u32 _pad;
	__u64 cgroup_id;       /* the owner's cgroup v2 id */
};

#endif
