// SPDX-License-Identifier: Apache-2.0
//! Program executions: `btrace exec`, every execve and execveat call.

pub mod command;
pub mod event;
pub mod skel;
pub mod tracer;
