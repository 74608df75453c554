// SPDX-License-Identifier: Apache-2.0
//! The open tracer: the syscall tracepoints of open, openat, openat2 and creat (or raw_tp
//! on every syscall where those tracepoints do not exist), one record per finished call.

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::Skel;

use crate::core::attach::{syscall_tp_exists, Links};
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration};
use crate::core::losses::Losses;
use crate::core::rodata;
use crate::core::scope::Scope;
use crate::core::slots;
use crate::core::stream::EventStream;

use super::event::{self, OpenEvent};
use super::skel::{types, OpenObj, OpenOpensSkel, OpensKind, PREFIX_MAX};

/// How the calls are caught, cheapest first (the shared syscall-tracer hooks).
pub use crate::core::attach::{SyscallHook as Hook, SYSCALL_HOOKS as HOOKS};

/// What is fixed at load time.
#[derive(Debug, Default)]
pub struct Config {
    pub scope: Scope,
    /// Bytes kept of a path.
    pub str_size: usize,
    /// Only failed calls.
    pub fails_only: bool,
    /// Only paths starting with these bytes (as the program passed them).
    pub prefix: Option<Vec<u8>>,
    /// Bound of the per-thread store (default: twice the threads alive, at least 32768).
    pub max_threads: Option<u32>,
    /// The ring buffer's size (--buffer-size; default RINGBUF_DEFAULT).
    pub ring_bytes: Option<u32>,
}

/// Bytes of one record for a string size.
pub fn rec_size(str_size: usize) -> usize {
    std::mem::size_of::<types::open_event>() + slots::slot_bytes(str_size)
}

/// `--path-prefix P`, checked.
pub fn parse_prefix(p: &str) -> Result<Vec<u8>> {
    let b = p.as_bytes();
    if b.is_empty() {
        bail!("--path-prefix needs a non-empty path");
    }
    if b.len() > PREFIX_MAX {
        bail!("--path-prefix is at most {PREFIX_MAX} bytes");
    }
    Ok(b.to_vec())
}

/// The open tracer as core::lifecycle drives it: the config is the declaration.
impl Declaration for Config {
    type Kind = OpensKind;
    type Way = Hook;
    const DRIVERS: &'static [Driver] = &[
        crate::core::kmem::RING,
        Driver::new("ostarts_hash", "--max-threads"),
    ];

    fn scope(&self) -> &Scope {
        &self.scope
    }

    fn prepare(&self, hook: Hook) -> Result<()> {
        hook.prepare("sys_enter_openat")
    }

    // The helpers (process tree, the reap of ended threads) stay on raw_tp with either
    // hook (the default tree_on_raw_tp, and ostarts_reap_raw below):
    // a raw_tp link detaches at once, a classic tracepoint's waits for grace periods one
    // at a time under the kernel's event_mutex (about 40-70 ms each at exit here).
    fn configure(&self, hook: Hook, open: &mut OpenOpensSkel<'_>) -> Result<()> {
        let ring_bytes = self
            .ring_bytes
            .unwrap_or(crate::core::stream::RINGBUF_DEFAULT);
        {
            let ro = rodata::typed(&mut open.maps.rodata_data);
            ro.str_size = self.str_size as u32;
            ro.rec_size = rec_size(self.str_size) as u32;
            ro.fails_only = self.fails_only;
            crate::syscall_nrs!(&mut *ro, nr_open, nr_creat, nr_openat, nr_openat2);
            ro.rb_wake_bytes = crate::core::stream::wake_bytes(ring_bytes);
            ro.rb_wake_gap_ns = crate::core::stream::WAKE_GAP_NS;
            if let Some(p) = &self.prefix {
                ro.prefix_len = p.len() as u32;
                for (d, s) in ro.path_prefix.iter_mut().zip(p) {
                    *d = *s as _;
                }
            }
        }
        let tp = hook == Hook::Tracepoint;
        open.maps.events.set_max_entries(ring_bytes)?;
        open.maps.ostarts_task.set_autocreate(false)?;
        open.maps.ostarts_hash.set_max_entries(
            self.max_threads
                .unwrap_or_else(crate::core::system::default_thread_entries),
        )?;
        let p = &mut open.progs;
        for (prog, name) in [
            (&mut p.open_enter_open, "sys_enter_open"),
            (&mut p.open_exit_open, "sys_exit_open"),
            (&mut p.open_enter_openat, "sys_enter_openat"),
            (&mut p.open_exit_openat, "sys_exit_openat"),
            (&mut p.open_enter_openat2, "sys_enter_openat2"),
            (&mut p.open_exit_openat2, "sys_exit_openat2"),
            (&mut p.open_enter_creat, "sys_enter_creat"),
            (&mut p.open_exit_creat, "sys_exit_creat"),
        ] {
            prog.set_autoload(tp && syscall_tp_exists(name));
        }
        p.open_enter_raw.set_autoload(!tp);
        p.open_exit_raw.set_autoload(!tp);
        p.ostarts_reap_raw.set_autoload(true);
        p.ostarts_reap_tp.set_autoload(false);
        Ok(())
    }
}

/// Opens, configures, loads and attaches one way.
pub fn load(hook: Hook, cfg: &Config) -> Result<(OpenObj, Links)> {
    lifecycle::load_way(cfg, hook)
}

/// Loads and attaches the first of `hooks` this kernel accepts.
pub fn load_first(hooks: &[Hook], cfg: &Config) -> Result<(Hook, OpenObj, Links)> {
    lifecycle::load_first(cfg, hooks)
}

/// The tracer's records, decoded.
pub fn events(obj: &OpenObj, str_size: usize) -> Result<EventStream<OpenEvent>> {
    EventStream::new(&obj.maps.events, move |d| event::decode(d, str_size))
        .context("reading open events")
}

pub fn losses(obj: &OpenObj) -> Result<Losses> {
    Losses::read(&obj.maps.losses)?.with_missed(obj.object())
}

/// Whether the tracer works here, by loading and attaching it for real (btrace doctor).
pub fn check() -> Result<String> {
    let cfg = Config {
        str_size: crate::model::abi::STR_SIZE_DEFAULT,
        max_threads: Some(64),
        ..Default::default()
    };
    let (hook, ..) = load_first(&HOOKS, &cfg)?;
    Ok(format!("via {hook}"))
}
