// SPDX-License-Identifier: Apache-2.0
//! btrace as a library: the tracers and the shared pieces, used by the `btrace` binary
//! (src/main.rs, the only place that knows the commands) and by integration tests that
//! drive a tracer in-process.
//!
//! - `core`: the run session, attaching, output, streaming, per-CPU reads, losses, checks;
//! - `model`: histograms, tasks, TCP, address ranges, units;
//! - `resolve`: BTF prototypes, tracepoint formats, syscall names;
//! - `tracers`: one folder per tracer, and the registry the apps walk;
//! - `apps`: programs built from several tracers (the dashboard, doctor, verifier).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod apps;
pub mod core;
pub mod model;
pub mod resolve;
pub mod tracers;
