// SPDX-License-Identifier: Apache-2.0
//! The exec tracer: the syscall tracepoints of execve and execveat (or raw_tp on every
//! syscall where those tracepoints do not exist), one record per finished call.

use anyhow::{Context, Result};
use libbpf_rs::skel::Skel;

use crate::core::attach::{syscall_tp_exists, Links};
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration};
use crate::core::losses::Losses;
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::stream::EventStream;

use super::event::{self, ExecEvent};
use super::skel::{types, ExecKind, ExecObj, OpenExecSkel, MAX_INFLIGHT};

/// How the calls are caught, cheapest first (the shared syscall-tracer hooks).
pub use crate::core::attach::{SyscallHook as Hook, SYSCALL_HOOKS as HOOKS};

/// What is fixed at load time.
#[derive(Debug, Default)]
pub struct Config {
    pub scope: Scope,
    /// Only failed calls.
    pub fails_only: bool,
    /// Bound of the store of execs in flight (default MAX_INFLIGHT).
    pub max_inflight: Option<u32>,
    /// The ring buffer's size (--buffer-size; default: exec.bpf.c's, 8 MiB).
    pub ring_bytes: Option<u32>,
}

/// Bytes of one in-flight record (the kernel preallocates the store).
pub fn record_bytes() -> u64 {
    std::mem::size_of::<types::exec_event>() as u64
}

/// `--max-inflight N`, bounded.
pub fn parse_max_inflight(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        1 << 16,
        "more execs in flight than any machine runs at once",
        4,
        record_bytes(),
    )
}

/// The exec tracer as core::lifecycle drives it: the config is the declaration.
impl Declaration for Config {
    type Kind = ExecKind;
    type Way = Hook;
    const DRIVERS: &'static [Driver] = &[
        crate::core::kmem::RING,
        Driver::new("exec_inflight", "--max-inflight"),
    ];

    fn scope(&self) -> &Scope {
        &self.scope
    }

    fn prepare(&self, hook: Hook) -> Result<()> {
        hook.prepare("sys_enter_execve")
    }

    // The helpers (process tree, exec's new name) stay on raw_tp with either hook (the
    // default tree_on_raw_tp, and exec_moved_raw below): a raw_tp
    // link detaches at once, a classic tracepoint's waits for grace periods one at a
    // time under the kernel's event_mutex (about 40-70 ms each at exit here).
    fn configure(&self, hook: Hook, open: &mut OpenExecSkel<'_>) -> Result<()> {
        let tp = hook == Hook::Tracepoint;
        rodata::typed(&mut open.maps.rodata_data).fails_only = self.fails_only;
        crate::syscall_nrs!(
            rodata::typed(&mut open.maps.rodata_data),
            nr_execve,
            nr_execveat
        );
        if let Some(bytes) = self.ring_bytes {
            open.maps.events.set_max_entries(bytes)?;
        }
        open.maps
            .exec_inflight
            .set_max_entries(self.max_inflight.unwrap_or(MAX_INFLIGHT))?;
        // One bit per possible thread id: marks an exec dropped at entry.
        open.maps
            .exec_dropped
            .set_max_entries(crate::core::scope::pid_max().div_ceil(64).max(1))?;
        let p = &mut open.progs;
        for (prog, name) in [
            (&mut p.exec_enter_execve, "sys_enter_execve"),
            (&mut p.exec_exit_execve, "sys_exit_execve"),
            (&mut p.exec_enter_execveat, "sys_enter_execveat"),
            (&mut p.exec_exit_execveat, "sys_exit_execveat"),
        ] {
            prog.set_autoload(tp && syscall_tp_exists(name));
        }
        p.exec_enter_raw.set_autoload(!tp);
        p.exec_exit_raw.set_autoload(!tp);
        p.exec_moved_raw.set_autoload(true);
        Ok(())
    }
}

/// Opens, configures, loads and attaches one way.
pub fn load(hook: Hook, cfg: &Config) -> Result<(ExecObj, Links)> {
    lifecycle::load_way(cfg, hook)
}

/// Loads and attaches the first of `hooks` this kernel accepts.
pub fn load_first(hooks: &[Hook], cfg: &Config) -> Result<(Hook, ExecObj, Links)> {
    lifecycle::load_first(cfg, hooks)
}

/// The tracer's records, decoded.
pub fn events(obj: &ExecObj) -> Result<EventStream<ExecEvent>> {
    EventStream::new(&obj.maps.events, event::decode).context("reading exec events")
}

pub fn losses(obj: &ExecObj) -> Result<Losses> {
    Losses::read(&obj.maps.losses)?.with_missed(obj.object())
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let cfg = Config {
        max_inflight: Some(4),
        ..Default::default()
    };
    let (hook, ..) = load_first(&HOOKS, &cfg)?;
    Ok(format!("via {hook}"))
}
