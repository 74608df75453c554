// SPDX-License-Identifier: Apache-2.0
//! Choosing the cheapest hook the kernel accepts: try each way in order of cost, keep the
//! first that loads and attaches. A failed attempt leaves nothing behind: its skeleton is
//! dropped, which closes its programs, maps and links.

use std::fmt::Display;
use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{anyhow, Context, Result};
use libbpf_rs::{Link, Object};

use crate::core::bpf_log;

/// Runs `attempt` for each choice in order and returns the first success with its choice.
/// When all fail, the error names every choice and why it failed (the first, cheapest
/// choice's reason first).
pub fn first_that_works<C, T>(
    choices: &[C],
    mut attempt: impl FnMut(C) -> Result<T>,
) -> Result<(C, T)>
where
    C: Copy + Display,
{
    let mut reasons = Vec::new();
    for &choice in choices {
        match attempt(choice) {
            Ok(v) => {
                bpf_log::take();
                return Ok((choice, v));
            }
            // The same sizes would be refused again: no other way is tried.
            Err(e) if crate::core::kmem::too_big(&e).is_some() => return Err(e),
            Err(e) => reasons.push(format!("{choice}: {}", describe(&e))),
        }
    }
    Err(anyhow!("could not load or attach ({})", reasons.join("; ")))
}

/// One line for a load/attach error, with the most telling line of libbpf's log.
pub fn describe(e: &anyhow::Error) -> String {
    let log = bpf_log::take();
    let hint = log
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with("processed"))
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    format!("{e:#}{hint}")
}

/// Attaches every loaded program of `obj` (those left to autoload), in order. The links
/// are the caller's: dropping them detaches the programs, which stay loaded and can be
/// attached again by calling this once more. (A skeleton's own `attach()` must not be
/// used for that: it keeps raw link pointers that would dangle after a detach.)
pub fn attach_loaded(obj: &Object) -> Result<Links> {
    obj.progs_mut()
        .filter(|p| p.autoload())
        .map(|p| {
            p.attach()
                .with_context(|| format!("attaching {}", p.name().to_string_lossy()))
        })
        .collect::<Result<Vec<Link>>>()
        .map(Links::new)
}

/// The programs of `obj` that were loaded (those left to autoload).
/// The names of [`loaded_programs`], in the same order (whole: the kernel keeps 15
/// characters).
pub fn loaded_program_names(obj: &Object) -> Vec<String> {
    obj.progs()
        .filter(|p| p.autoload())
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect()
}

pub fn loaded_programs(obj: &Object) -> Vec<BorrowedFd<'_>> {
    obj.progs()
        .filter(|p| p.autoload())
        .map(|p| {
            // SAFETY: the descriptor belongs to the program, which lives as long as `obj`;
            // the borrow handed out is bounded by `obj`'s.
            unsafe { BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(&p.as_fd())) }
        })
        .collect()
}

/// How a tracer of a few syscalls catches them (exec, open), cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SyscallHook {
    /// The syscalls' own tracepoints (syscalls:sys_enter_NAME / sys_exit_NAME): only
    /// these calls run a program.
    Tracepoint,
    /// raw_tp sys_enter/sys_exit: every syscall runs a program that checks the number.
    #[value(name = "raw_tp")]
    RawTp,
}

impl std::fmt::Display for SyscallHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SyscallHook::Tracepoint => "tracepoint",
            SyscallHook::RawTp => "raw_tp",
        })
    }
}

impl SyscallHook {
    /// Before a [`SyscallHook::Tracepoint`] load: tracefs (mounted if missing) and the
    /// syscall tracepoint `first` (e.g. `sys_enter_execve`) must be there.
    pub fn prepare(self, first: &str) -> Result<()> {
        if self == SyscallHook::Tracepoint {
            crate::core::system::ensure_tracefs()?;
            if !syscall_tp_exists(first) {
                anyhow::bail!(
                    "no syscalls:{first} tracepoint (kernel without CONFIG_FTRACE_SYSCALLS)"
                );
            }
        }
        Ok(())
    }
}

/// The hook and per-task store of a tracer that keeps a time per task between two
/// scheduler events (offcpu, runq: thread_store.h), cheapest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskWay {
    /// tp_btf with task storage (5.11+)
    #[value(name = "tp_btf")]
    TpBtfTask,
    /// raw_tp with a bounded hash keyed by thread id
    #[value(name = "raw_tp")]
    RawTpHash,
}

impl TaskWay {
    /// Every way, cheapest first.
    pub const ALL: [TaskWay; 2] = [TaskWay::TpBtfTask, TaskWay::RawTpHash];

    /// The kind of program: `tp_btf` or `raw_tp`.
    pub fn hook(self) -> &'static str {
        match self {
            TaskWay::TpBtfTask => "tp_btf",
            TaskWay::RawTpHash => "raw_tp",
        }
    }

    /// Where each task's time waits: `task_storage` or `hash`.
    pub fn store(self) -> &'static str {
        match self {
            TaskWay::TpBtfTask => "task_storage",
            TaskWay::RawTpHash => "hash",
        }
    }
}

/// `tp_btf+task_storage`, `raw_tp+hash`.
impl std::fmt::Display for TaskWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.hook(), self.store())
    }
}

/// Whether a syscall tracepoint exists (some calls have none on some architectures).
pub fn syscall_tp_exists(name: &str) -> bool {
    crate::core::system::tracefs_dir()
        .is_some_and(|t| t.join("events/syscalls").join(name).exists())
}

/// The ways of a [`SyscallHook`] tracer, in the order they are tried.
pub const SYSCALL_HOOKS: [SyscallHook; 2] = [SyscallHook::Tracepoint, SyscallHook::RawTp];

/// Links that detach together when dropped, many at once (see [`detach_all`]).
#[derive(Default)]
pub struct Links(Vec<Link>);

impl Links {
    pub fn new(links: Vec<Link>) -> Links {
        Links(links)
    }

    pub fn push(&mut self, link: Link) {
        self.0.push(link);
    }

    pub fn append(&mut self, mut other: Links) {
        self.0.append(&mut other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The links one by one, for an owner that keeps them as a list (they then detach
    /// one after the other when dropped, not through [`detach_all`]).
    pub fn into_vec(mut self) -> Vec<Link> {
        std::mem::take(&mut self.0)
    }

    /// Detaches every link now (as dropping does), leaving the set empty.
    pub fn clear(&mut self) {
        detach_all(std::mem::take(&mut self.0));
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        detach_all(std::mem::take(&mut self.0));
    }
}

/// Links detached one after the other at most; more are spread over threads.
const DETACH_ALONE: usize = 1;
/// Threads that detach at once at most.
const DETACH_THREADS: usize = 64;

/// Detaches every link, many at once. Releasing an uprobe_multi link removes its
/// breakpoints from every process and waits for an RCU grace period; from many threads
/// that overlaps: `uprobe 'libc:*' --count` (about 17 links) exited in 2.8 s against 6.6 s one
/// link after another (6.18 host, loaded). A classic tracepoint's link waits for a
/// tasks-trace grace period when its program is taken off (that overlaps too), then for
/// another pair when its perf event is destroyed, under the kernel's event_mutex (that
/// part stays serial): `open`'s 9 tracepoints took 650 ms to exit one after another,
/// 420 ms from threads. (Perf-event uprobes gain nothing: the kernel closes them one at a
/// time under its event_mutex, a grace period each: 123 took 11 s here either way.)
pub fn detach_all(links: Vec<Link>) {
    if links.len() <= DETACH_ALONE {
        drop(links);
        return;
    }
    let per_thread = links.len().div_ceil(DETACH_THREADS);
    let mut rest = links.into_iter();
    std::thread::scope(|s| loop {
        let share: Vec<Link> = rest.by_ref().take(per_thread).collect();
        if share.is_empty() {
            break;
        }
        // A thread that cannot start drops its closure, and with it the share, here.
        let _ = std::thread::Builder::new()
            .name("btrace-detach".into())
            .spawn_scoped(s, move || drop(share));
    });
}

/// The operating-system error code behind a load or attach failure, if any.
pub fn os_error(e: &anyhow::Error) -> Option<i32> {
    if let Some(code) = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>()?.raw_os_error())
    {
        return Some(code);
    }
    // libbpf-rs keeps the io::Error inside; its text ends with "(os error N)".
    let text = format!("{e:#}");
    let at = text.rfind("(os error ")?;
    text[at + 10..].split(')').next()?.trim().parse().ok()
}
