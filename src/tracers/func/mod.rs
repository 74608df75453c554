// SPDX-License-Identifier: Apache-2.0
//! What the function tracers (kprobe, uprobe, usdt) share: the plan of what to read of a
//! call (src/bpf/include/func_probe.h does it in the kernel), decoding its events, the run
//! that streams them or prints the latency histogram of `--hist` (with the stacks of
//! `--stack`), and the calls per function of `--count`.

mod count;
mod decode;
mod plan;
mod run;
#[cfg(test)]
mod tests;

pub use count::*;
pub use decode::*;
pub use plan::*;
pub use run::*;
