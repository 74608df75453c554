// SPDX-License-Identifier: Apache-2.0
//! The shared user-space layer every tracer and app builds on: the run session and its
//! target, attaching with fallback, libbpf's log, output, the streaming loop, per-CPU reads,
//! losses, string slots of streamed records, BPF run-time statistics, system checks and
//! feature probes.

pub mod attach;
pub mod bpf_log;
pub mod cgroup_labels;
pub mod event_out;
pub mod features;
pub mod kmem;
pub mod lifecycle;
pub mod losses;
pub mod output;
pub mod percpu;
pub mod pidns;
pub mod rodata;
pub mod run;
pub mod runstats;
pub mod scope;
pub mod session;
pub mod skel;
pub mod slots;
pub mod stack_run;
pub mod stack_tables;
pub mod stacks;
pub mod stream;
pub mod system;
pub mod target;
