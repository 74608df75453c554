// SPDX-License-Identifier: Apache-2.0
//! The leaf module of the tcp tracer: its generated skeleton and the kernel ABI it shares
//! with tcp.bpf.c (tcp.h).

crate::skel_leaf!("tcp", Tcp = TcpKind(TcpSkelBuilder, OpenTcpSkel, TcpSkel));

/// Bounds of the run-time filter's maps.
pub const MAX_PORTS: usize = types::tcp_limits::TCP_MAX_PORTS.0 as usize;
pub const MAX_ADDRS: usize = types::tcp_limits::TCP_MAX_ADDRS.0 as usize;

// SAFETY: plain C structs of integers, as generated from the object's BTF: every bit
// pattern is a valid value.
unsafe impl plain::Plain for types::tcp_event {}
// SAFETY: as above.
unsafe impl plain::Plain for types::tcp_filter_cfg {}
// SAFETY: as above.
unsafe impl plain::Plain for types::tcp_addr_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::bss {}
// SAFETY: as above.
unsafe impl plain::Plain for types::tcp_cgroup_figures {}
