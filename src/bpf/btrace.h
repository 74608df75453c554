/* SPDX-License-Identifier: GPL-2.0 */
/* Structs and constants shared by the kernel programs and user space.
 * User space takes the Rust versions of these from the generated skeletons. */
#ifndef BTRACE_H
#define BTRACE_H

/* Log2 latency histogram: bucket 0 = [0,1) us, bucket i = [2^(i-1), 2^i) us.
 * The last bucket also holds everything above it (>= 2^30 us, about 18 minutes). */
#define HIST_BUCKETS 32

/* Syscall numbers index per-syscall arrays; x86_64 numbers stay well below this. */
#define MAX_SYSCALLS 512

/* Loss counters, one slot each in a tracer's per-CPU `losses` array.
 * Nothing is dropped without being counted in one of these. */
enum loss_kind {
	LOSS_MAP_FULL = 0,  /* a bounded map had no room: the record was dropped */
	LOSS_NO_ENTRY = 1,  /* an exit came without its entry (began before tracing, or dropped) */
	LOSS_RINGBUF = 2,   /* ring buffer reserve failed: the event was dropped */
	LOSS_KINDS = 4,
};

struct hist {
	__u64 count;   /* exact number of samples */
	__u64 sum_ns;  /* exact sum of the samples, nanoseconds */
	__u64 buckets[HIST_BUCKETS];
};

/* Per-thread state between a syscall's entry and its exit. */
struct syscall_start {
	__u64 ts_ns;   /* 0 = no syscall in flight */
	__u32 nr;
	__u32 _pad;
};

/* ---- btrace tcp ---- */

/* TCP states as the kernel numbers them (include/net/tcp_states.h, stable ABI). */
enum tcp_state_nr {
	TCPS_ESTABLISHED = 1,
	TCPS_SYN_SENT = 2,
	TCPS_SYN_RECV = 3,
	TCPS_FIN_WAIT1 = 4,
	TCPS_FIN_WAIT2 = 5,
	TCPS_TIME_WAIT = 6,
	TCPS_CLOSE = 7,
	TCPS_CLOSE_WAIT = 8,
	TCPS_LAST_ACK = 9,
	TCPS_LISTEN = 10,
	TCPS_CLOSING = 11,
	TCPS_NEW_SYN_RECV = 12,
};

/* tcp_event.flags: which of the optional fields were measured. */
enum tcp_event_flag {
	TCP_EV_OWNER = 1,       /* pid/comm hold the socket's owner */
	TCP_EV_COUNTERS = 2,    /* bytes_acked/bytes_received were read (closing event) */
	TCP_EV_SYN_ACKED = 4,   /* this end sent the SYN (seen in SYN_SENT): 1 of bytes_acked is the SYN */
	TCP_EV_FIN_ACKED = 8,   /* this end's FIN was acknowledged: 1 of bytes_acked is the FIN */
	TCP_EV_FIN_RECV = 16,   /* the peer's FIN was received: 1 of bytes_received is the FIN */
};

/* The run-time filter, one entry in the `tcp_filter_cfg` array; changed by user space
 * while the program runs. Zero means "no filter" for each part. */
struct tcp_filter_cfg {
	__u32 pid;       /* owner process id (tgid) */
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
	char comm[16];         /* owner's command name, valid with TCP_EV_OWNER */
};

/* What the kernel keeps per socket between transitions. */
struct tcp_conn {
	__u64 last_ns;         /* when the current state began */
	__u64 established_ns;  /* 0 = ESTABLISHED not seen */
	__u32 pid;
	__u8 owner_known;
	__u8 syn_sent;         /* went through SYN_SENT: this end sent the SYN */
	__u8 _pad[2];
	char comm[16];
};

/* ---- event streams (kprobe, tracepoint) ---- */

#define COMM_LEN 16
/* Bytes kept of one string argument, NUL included; longer strings are cut. */
#define STR_LEN 256

/* Who and when, at the head of every streamed event. */
struct task_hdr {
	__u64 ts_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;     /* thread group id */
	__u32 tid;
	char comm[COMM_LEN];
};

/* btrace kprobe: one call of a kernel function. */
#define FUNC_MAX_ARGS 6
#define FUNC_MAX_STRS 3    /* char * arguments read as strings */
#define FUNC_NO_STR 0xff   /* str_slot[] value of an argument that is not a string */

struct func_event {
	struct task_hdr h;
	__u64 args[FUNC_MAX_ARGS];  /* raw register values; user space types them from BTF */
	__u64 ret;                  /* with --ret: the raw return value */
	__u64 latency_ns;           /* with --ret: entry to return */
	char strs[FUNC_MAX_STRS * STR_LEN];  /* slot i at i * STR_LEN (flat: the Rust
	                                     * skeleton cannot derive nested arrays) */
};

/* btrace tracepoint: a task_hdr, then the record's fixed part (tp_raw_size bytes, as in
 * the tracepoint's format file), then tp_n_strs strings of STR_LEN bytes each. */
#define TP_RAW_MAX 1024
#define TP_MAX_STRS 4
enum tp_str_kind {
	TP_STR_PTR = 0,       /* a char * field: the string is read from user or kernel memory */
	TP_STR_DATA_LOC = 1,  /* __data_loc char[]: u32 (len << 16 | offset from record start) */
	TP_STR_REL_LOC = 2,   /* __rel_loc char[]: offset from the end of the field */
};
/* The name of a process counted in btrace top's process list (a hash keyed by tgid,
 * beside the per-CPU hash of counts): taken when it is first counted on a CPU and again
 * when it calls exec, so it is the current name even after the process has exited. */
struct proc_comm {
	char comm[16];
};

/* Bound of those maps: distinct processes seen at once (user space prunes dead ones). */
#define MAX_PROCS 8192

#endif
