// SPDX-License-Identifier: Apache-2.0
//! File opens: `btrace open`, every open, openat, openat2 and creat call.

pub mod command;
pub mod event;
pub mod skel;
pub mod tracer;
