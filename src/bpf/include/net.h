/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Network constants of the kernel's ABI that user space names (through the skeletons):
 * kept as named enums because vmlinux.h's own are anonymous. */
#ifndef BTRACE_NET_H
#define BTRACE_NET_H

/* TCP states as the kernel numbers them (include/net/tcp_states.h, a stable ABI: the
 * tracepoint's oldstate/newstate carry these). Named here so user space gets them from
 * the skeleton; vmlinux.h's own enum is anonymous. */
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
	TCPS_BOUND_INACTIVE = 13, /* 6.6+: a bound socket that is not listening */
};

/* Address families of the sockets traced (include/linux/socket.h). */
enum tcp_family {
	TCP_AF_INET = 2,
	TCP_AF_INET6 = 10,
};

#endif
