// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* btrace tcp: TCP connection lifecycle from the sock:inet_sock_set_state tracepoint.
 *
 * Every TCP state transition updates a small per-socket record (keyed by the socket's
 * address): when the current state began, when ESTABLISHED began, and the socket's
 * owner. Transitions that pass the run-time filters go to user space through a ring
 * buffer; the one into CLOSE also carries the byte counters of struct tcp_sock.
 *
 * Two hooks share all of this: tp_btf (typed arguments, no tracefs, cheapest) and the
 * classic tracepoint (its stable record format, read through CO-RE), which every kernel
 * with BTF accepts. User space loads the first that works. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "abi.h"
#include "losses.h"
#include "ringbuf.h"
#include "scope.h"
#include "task_event.h"
#include "log2_hist.h"
#include "compat.h"
#include "tcp.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time choices (not filters): only report connection ends (`--life`); send events
 * at all (the exporter reads the counters only); keep the counters. */
const volatile bool life_only = false;
const volatile bool events_on = true;
const volatile bool stats_on = false;
/* Keep the counters per cgroup too (`serve --by cgroup`). */
const volatile bool stats_by_cgroup = false;

/* Types user space reads (keeps them in the skeleton's BTF). */
const volatile struct tcp_event _tcp_event_type = {};
const volatile struct tcp_addr_key _tcp_addr_key_type = {};
const volatile struct tcp_filter_cfg _tcp_filter_cfg_type = {};
const volatile enum tcp_event_flag _tcp_event_flag_type = 0;
const volatile enum tcp_limits _tcp_limits_type = 0;
const volatile enum tcp_count _tcp_count_type = 0;
const volatile enum tcp_stat _tcp_stat_type = 0;
/* A cgroup's first figures: all zero, read from here because the struct does not fit
 * on the BPF stack beside the event. Also keeps the type in the skeleton's BTF. */
const volatile struct tcp_cgroup_figures tcp_cgroup_zero = {};

/* ---- run-time filters, written by user space while the program runs ---- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcp_filter_cfg);
} tcp_filter_cfg SEC(".maps");

/* Ports to trace (value unused). A hash: "is this port in the set" is one lookup for
 * any number of ports. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TCP_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} tcp_filter_ports SEC(".maps");

/* Address ranges to trace (value unused). An LPM trie rather than an array of
 * (prefix, mask) pairs: one lookup per endpoint answers "is this address inside any of
 * the ranges" whatever their number, with no loop for the verifier to bound, and user
 * space adds or removes one range atomically. IPv4 ranges are stored as IPv4-mapped
 * IPv6 (::ffff:a.b.c.d/96+n), so one trie holds both families (and an AF_INET6 socket
 * talking to a mapped IPv4 address matches the IPv4 range, as it should). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TCP_MAX_ADDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tcp_addr_key);
	__type(value, __u8);
} tcp_filter_addrs SEC(".maps");

/* ---- per-socket state and output ---- */

/* What the kernel keeps per socket, in one of two stores (user space creates only the
 * one of the way it loads):
 *  - socket-local storage (tp_btf, 5.11+): unbounded, freed with the socket, made at the
 *    first transition seen;
 *  - a bounded hash keyed by the socket's address (every kernel; --max-conns sets its
 *    size). Preallocated: tracing programs on older kernels may only use preallocated
 *    hashes. An entry is made only at a socket's birth (its first transition), so a full
 *    store is met once per socket and counted exactly (TCP_UNTRACKED); such a socket is
 *    still reported, without owner or times. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tcp_conn);
} tcp_sk_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tcp_conn);
} tcp_conns SEC(".maps");

DECLARE_COUNTERS(tcp_counts, TCP_COUNTS, count_tcp)
DECLARE_PERCPU_COUNTERS(tcp_stats, TCP_STATS);

/* Durations of the connections that ended, ESTABLISHED to CLOSE. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} tcp_durations SEC(".maps");

/* Per cgroup (with stats_by_cgroup; user space sets the bound, 1 when off). A cgroup
 * that finds no room is not lost: its figures are in the totals, and user space serves
 * the totals minus the listed cgroups as cgroup="other". */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct tcp_cgroup_figures);
} tcp_cgroup_figures SEC(".maps");

/* The cgroup v2 id of the socket: the cgroup of the task that created it, for an
 * accepted connection the listener's. It is known in any context, softirq included,
 * where a passive open completes before any process owns the socket. As the kernel's
 * sock_cgroup_ptr does, a socket whose word holds net_prio/net_cls data instead (or
 * nothing) belongs to the root cgroup, id 1. */
static __always_inline __u64 sock_cgroup_id(const struct sock *sk)
{
	struct cgroup *cg = sock_cgroup(sk);

	return cg ? BPF_CORE_READ(cg, kn, id) : 1;
}

/* The figures of the socket's cgroup, made on first use (NULL when off or full). */
static __always_inline struct tcp_cgroup_figures *cgroup_figures(const struct sock *sk)
{
	struct tcp_cgroup_figures *f;
	__u64 id;

	if (!stats_by_cgroup)
		return NULL;
	id = sock_cgroup_id(sk);
	f = bpf_map_lookup_elem(&tcp_cgroup_figures, &id);
	if (f)
		return f;
	/* Fails when full (or when another CPU made it: then the lookup finds it). */
	bpf_map_update_elem(&tcp_cgroup_figures, &id, (const void *)&tcp_cgroup_zero,
			    BPF_NOEXIST);
	return bpf_map_lookup_elem(&tcp_cgroup_figures, &id);
}

static __always_inline void add_stat(struct tcp_cgroup_figures *cg, __u32 what, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&tcp_stats, &what);

	if (v)
		*v += n;
	if (cg && what < TCP_STATS)
		cg->stats[what] += n;
}

DECLARE_RINGBUF(events, 1 << 20);

/* The transition is seen in the context of the task that owns the socket exactly when
 * that task holds the socket lock: system calls (connect, listen, shutdown, close) take
 * it, and the softirq and timer paths only change the state of a socket nobody owns
 * (otherwise they defer the work to the owner's release_sock, which runs in the owner's
 * context with the lock still held). The current task in softirq is unrelated. */
static __always_inline bool in_owner_context(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_lock.owned) != 0;
}

/* Mapped into ::ffff:0:0/96 for IPv4, as the trie holds it. */
static __always_inline bool addr_wanted(const struct tcp_event *ev, const __u8 *addr)
{
	struct tcp_addr_key key = { .prefixlen = 128 };

	if (ev->family == TCP_AF_INET) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	} else {
		__builtin_memcpy(key.addr, addr, 16);
	}
	return bpf_map_lookup_elem(&tcp_filter_addrs, &key) != NULL;
}

/* Whether any scope filter is on (the load-time part is constant: dead code when off). */
static __always_inline bool scoped(void)
{
	return scope_tgid || scope_tree || scope_tid || scope_ncgroups || scope_by_comm ||
	       scope_live_tgid || scope_live_tree;
}

/* The scope's load-time part for the current task, which owns the socket right now. */
static __always_inline bool owner_in_scope_now(void)
{
	char comm[COMM_LEN];

	if (!scope_fixed_current(bpf_get_current_pid_tgid()))
		return false;
	if (scope_by_comm) {
		bpf_get_current_comm(comm, sizeof(comm));
		return scope_comm_ok(comm);
	}
	return true;
}

/* `owner`: the socket's owner tgid (0 when not known) and whether it passed the scope's
 * load-time part (`in_scope`, meaningful only with an owner). */
static __always_inline bool wanted(const struct tcp_event *ev, __u32 owner, bool in_scope)
{
	__u32 zero = 0;
	struct tcp_filter_cfg *f;

	if (scoped()) {
		if (!owner) {
			count_tcp(TCP_UNATTRIBUTED);
			return false;
		}
		if (!in_scope || !scope_live_ids(owner))
			return false;
	}
	f = bpf_map_lookup_elem(&tcp_filter_cfg, &zero);
	if (!f)
		return true;
	if (f->family && f->family != ev->family)
		return false;
	if (f->ports_on && !bpf_map_lookup_elem(&tcp_filter_ports, &ev->sport) &&
	    !bpf_map_lookup_elem(&tcp_filter_ports, &ev->dport))
		return false;
	if (f->addrs_on && !addr_wanted(ev, ev->saddr) && !addr_wanted(ev, ev->daddr))
		return false;
	return true;
}

/* A connection that was ESTABLISHED: its CLOSE ends a connection `--life` reports. */
static __always_inline bool was_connected(int oldstate)
{
	return oldstate == TCPS_ESTABLISHED || oldstate == TCPS_FIN_WAIT1 ||
	       oldstate == TCPS_FIN_WAIT2 || oldstate == TCPS_CLOSE_WAIT ||
	       oldstate == TCPS_LAST_ACK || oldstate == TCPS_CLOSING ||
	       oldstate == TCPS_TIME_WAIT;
}

/* bytes_acked and bytes_received count sequence space: the SYN and the FINs occupy one
 * number each. Say which of those are inside the counters so user space can report
 * payload bytes. Our FIN was sent in the closing states; it is acknowledged when
 * everything written is (snd_una == write_seq). The peer's FIN was received when
 * tcp_fin marked the socket SOCK_DONE. */
static __always_inline void read_counters(const struct sock *sk, int oldstate,
					  const struct tcp_conn *c, struct tcp_event *ev)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	unsigned long sk_flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
	int sock_done = bpf_core_enum_value(enum sock_flags, SOCK_DONE);

	ev->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	ev->bytes_received = BPF_CORE_READ(tp, bytes_received);
	ev->flags |= TCP_EV_COUNTERS;
	if (c && c->birth_seen)
		ev->flags |= TCP_EV_BIRTH;
	if (c && c->syn_sent && c->established_ns)
		ev->flags |= TCP_EV_SYN_ACKED;
	if ((oldstate == TCPS_FIN_WAIT1 || oldstate == TCPS_FIN_WAIT2 ||
	     oldstate == TCPS_CLOSING || oldstate == TCPS_LAST_ACK ||
	     oldstate == TCPS_TIME_WAIT) &&
	    BPF_CORE_READ(tp, snd_una) == BPF_CORE_READ(tp, write_seq))
		ev->flags |= TCP_EV_FIN_ACKED;
	if (sk_flags & (1UL << (sock_done & 63)))
		ev->flags |= TCP_EV_FIN_RECV;
}

/* A socket's first transition: connect and listen start from CLOSE; an accepted socket is
 * born as the listener's clone, in SYN_RECV. (NEW_SYN_RECV request sockets never get here.) */
static __always_inline bool is_birth(int oldstate, int newstate)
{
	return oldstate == TCPS_CLOSE || (oldstate == TCPS_LISTEN && newstate == TCPS_SYN_RECV);
}

/* This socket's entry in the bounded hash; made at its birth only (NULL otherwise, and
 * when the store is full: counted once per socket). */
static __always_inline struct tcp_conn *conn_hash(const struct sock *sk, int oldstate,
						  int newstate)
{
	__u64 key = (__u64)sk;
	struct tcp_conn *c, fresh = { .birth_seen = 1 };

	c = bpf_map_lookup_elem(&tcp_conns, &key);
	if (c || newstate == TCPS_CLOSE || !is_birth(oldstate, newstate))
		return c;
	if (bpf_map_update_elem(&tcp_conns, &key, &fresh, BPF_NOEXIST)) {
		count_tcp(TCP_UNTRACKED);
		return NULL;
	}
	return bpf_map_lookup_elem(&tcp_conns, &key);
}

/* The exporter's counters for one transition (`ev` holds the closing counters). Payload
 * bytes as user space computes them (payload_bytes in event.rs): the SYN this end sent
 * and the FINs occupy one sequence number each. */
static __always_inline void account(const struct sock *sk, int oldstate, int newstate,
				    const struct tcp_event *ev)
{
	struct tcp_cgroup_figures *cg;
	__u32 zero = 0;
	struct hist *h;

	if (newstate == TCPS_ESTABLISHED) {
		if (oldstate != TCPS_SYN_SENT && oldstate != TCPS_SYN_RECV)
			return;
		cg = cgroup_figures(sk);
		if (oldstate == TCPS_SYN_SENT)
			add_stat(cg, TCP_STAT_OPEN_ACTIVE, 1);
		else
			add_stat(cg, TCP_STAT_OPEN_PASSIVE, 1);
		return;
	}
	if (newstate != TCPS_CLOSE)
		return;
	if (oldstate != TCPS_SYN_SENT && !was_connected(oldstate))
		return;
	cg = cgroup_figures(sk);
	if (oldstate == TCPS_SYN_SENT) {
		add_stat(cg, TCP_STAT_CONNECT_FAILED, 1);
		return;
	}
	add_stat(cg, TCP_STAT_CLOSED, 1);
	if (oldstate == TCPS_ESTABLISHED || oldstate == TCPS_CLOSE_WAIT)
		add_stat(cg, TCP_STAT_RESET, 1);
	if (ev->flags & TCP_EV_BIRTH) {
		__u64 control = !!(ev->flags & TCP_EV_SYN_ACKED) + !!(ev->flags & TCP_EV_FIN_ACKED);

		add_stat(cg, TCP_STAT_TX_BYTES,
			 ev->bytes_acked > control ? ev->bytes_acked - control : 0);
	} else {
		add_stat(cg, TCP_STAT_TX_UNKNOWN, 1);
	}
	{
		__u64 fin = !!(ev->flags & TCP_EV_FIN_RECV);

		add_stat(cg, TCP_STAT_RX_BYTES,
			 ev->bytes_received > fin ? ev->bytes_received - fin : 0);
	}
	if (ev->established_ns && ev->ts_ns > ev->established_ns) {
		__u64 ns = ev->ts_ns - ev->established_ns;

		h = bpf_map_lookup_elem(&tcp_durations, &zero);
		if (h)
			hist_add(h, ns);
		if (cg)
			hist_add(&cg->durations, ns);
	}
}

/* Everything after the endpoints are known and the socket's entry `c` (if any) is found.
 * `ev` holds family, ports and addresses. */
static __always_inline void on_transition(const struct sock *sk, int oldstate, int newstate,
					  struct tcp_conn *c, struct tcp_event *ev)
{
	__u64 now = bpf_ktime_get_ns();
	bool ending = newstate == TCPS_CLOSE;
	bool owner_here = in_owner_context(sk);
	bool in_scope = false;
	__u32 owner = 0;

	if (c) {
		if (!c->owner_known && owner_here) {
			c->pid = bpf_get_current_pid_tgid() >> 32;
			c->ns_pid = current_ns_tgid();
			bpf_get_current_comm(c->comm, sizeof(c->comm));
			c->owner_known = 1;
			c->in_scope = owner_in_scope_now();
			c->cgroup_id = bpf_get_current_cgroup_id();
		}
		if (newstate == TCPS_SYN_SENT)
			c->syn_sent = 1;
		ev->old_since_ns = c->last_ns;
		if (newstate == TCPS_ESTABLISHED)
			c->established_ns = now;
		ev->established_ns = c->established_ns;
		c->last_ns = now;
		if (c->owner_known) {
			owner = c->pid;
			in_scope = c->in_scope;
			ev->pid = c->pid;
			ev->ns_pid = c->ns_pid;
			ev->cgroup_id = c->cgroup_id;
			__builtin_memcpy(ev->comm, c->comm, sizeof(ev->comm));
			ev->flags |= TCP_EV_OWNER;
		}
	}
	/* No entry (connected before tracing, or untracked): the owner is still known while
	 * it holds the socket. */
	if (!owner && owner_here) {
		owner = bpf_get_current_pid_tgid() >> 32;
		in_scope = owner_in_scope_now();
		ev->pid = owner;
		ev->ns_pid = current_ns_tgid();
		ev->cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(ev->comm, sizeof(ev->comm));
		ev->flags |= TCP_EV_OWNER;
	}

	bool report = events_on && (!life_only || (ending && was_connected(oldstate)));

	if ((!report && !stats_on) || !wanted(ev, owner, in_scope))
		return;
	ev->ts_ns = now;
	ev->oldstate = oldstate;
	ev->newstate = newstate;
	if (ending)
		read_counters(sk, oldstate, c, ev);
	if (stats_on)
		account(sk, oldstate, newstate, ev);
	if (report)
		rb_output(&events, ev, sizeof(*ev), now);
}

/* Request sockets (NEW_SYN_RECV) are not full sockets: no lock, no counters. */
static __always_inline bool full_socket(int oldstate, int newstate)
{
	return oldstate != TCPS_NEW_SYN_RECV && newstate != TCPS_NEW_SYN_RECV;
}

/* The hash store's way: find or make the entry, handle the transition, and free the
 * entry at CLOSE. */
static __always_inline void on_transition_hash(const struct sock *sk, int oldstate,
					       int newstate, struct tcp_event *ev)
{
	__u64 key = (__u64)sk;

	if (!full_socket(oldstate, newstate))
		return;
	on_transition(sk, oldstate, newstate, conn_hash(sk, oldstate, newstate), ev);
	if (newstate == TCPS_CLOSE)
		bpf_map_delete_elem(&tcp_conns, &key);
}

/* ---- tp_btf: the socket itself; endpoints read as the tracepoint reads them ---- */

/* Reads the endpoints as the tracepoint does; false for a socket that is not TCP/IP. */
static __always_inline bool endpoints(const struct sock *sk, struct tcp_event *ev)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return false;
	ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	ev->sport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	ev->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (ev->family == TCP_AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)ev->saddr, inet, inet_saddr);
		BPF_CORE_READ_INTO((__u32 *)ev->daddr, sk, __sk_common.skc_daddr);
	} else if (ev->family == TCP_AF_INET6) {
		BPF_CORE_READ_INTO(&ev->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&ev->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return false;
	}
	return true;
}

/* tp_btf with socket-local storage (5.11+): the entry lives with the socket. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state_btf_sk, struct sock *sk, int oldstate, int newstate)
{
	struct tcp_event ev = {};
	struct tcp_conn *c;
	bool ending = newstate == TCPS_CLOSE;

	if (!full_socket(oldstate, newstate) || !endpoints(sk, &ev))
		return 0;
	c = bpf_sk_storage_get(&tcp_sk_conns, sk, 0, ending ? 0 : BPF_SK_STORAGE_GET_F_CREATE);
	if (c && !c->last_ns && is_birth(oldstate, newstate))
		c->birth_seen = 1;
	on_transition(sk, oldstate, newstate, c, &ev);
	/* A closed socket may connect again: its next life starts from nothing. */
	if (ending && c)
		bpf_sk_storage_delete(&tcp_sk_conns, sk);
	return 0;
}

/* tp_btf with the bounded hash (kernels without socket storage for tracing programs). */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state_btf, const struct sock *sk, int oldstate, int newstate)
{
	struct tcp_event ev = {};

	if (endpoints(sk, &ev))
		on_transition_hash(sk, oldstate, newstate, &ev);
	return 0;
}

/* ---- classic tracepoint: the stable record, fields relocated through CO-RE ---- */

SEC("tracepoint/sock/inet_sock_set_state")
int tcp_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct tcp_event ev = {};

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	ev.family = ctx->family;
	ev.sport = ctx->sport;
	ev.dport = ctx->dport;
	if (ev.family == TCP_AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)ev.saddr, ctx, saddr);
		BPF_CORE_READ_INTO((__u32 *)ev.daddr, ctx, daddr);
	} else if (ev.family == TCP_AF_INET6) {
		BPF_CORE_READ_INTO(&ev.saddr, ctx, saddr_v6);
		BPF_CORE_READ_INTO(&ev.daddr, ctx, daddr_v6);
	} else {
		return 0;
	}
	on_transition_hash((const struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate, &ev);
	return 0;
}
