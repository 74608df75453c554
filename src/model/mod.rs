// SPDX-License-Identifier: Apache-2.0
//! What the numbers mean, independent of how they were measured: the types and constants
//! shared with the kernel programs (abi), log2 histograms, interval figures from
//! cumulative counters (delta), tasks, TCP states and address families, address ranges,
//! units, bytes as text and JSON, and decoded event values, symbolized stacks (folded,
//! flame graphs, text, JSON).

pub mod abi;
pub mod bytes;
pub mod cidr;
pub mod delta;
pub mod errno;
pub mod histogram;
pub mod json_write;
pub mod metrics;
pub mod stacks;
pub mod task;
pub mod tcp;
pub mod units;
pub mod value;
