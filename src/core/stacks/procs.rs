// SPDX-License-Identifier: Apache-2.0
//! The processes a profiler (`profile`, `offcpu`) saw: their maps read while they live,
//! their user stacks symbolized once they ended and their stacks were drained.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags};

use super::{kernel_frames, lost_reason, proc_pid, STACK_MAX_DEPTH, STACK_NONE};
use crate::core::stack_tables::StackTables;
use crate::model::abi::types::{stack_key, stack_proc_event};
use crate::model::stacks::{user_truncated, Side, Stack};
use crate::model::task::comm_text;
use crate::resolve::symbols::{MmId, Symbolizer, UserFrames};

/// A process seen by a profiler (struct stack_proc_event).
#[derive(Clone, Copy, Debug)]
pub struct ProcSeen {
    pub pid: u32,
    pub ns_pid: u32,
    pub gen: u64,
    pub mm: MmId,
}

pub fn decode_proc_event(data: &[u8]) -> Option<ProcSeen> {
    let e: stack_proc_event =
        crate::core::skel::plain_prefix(data.get(..std::mem::size_of::<stack_proc_event>())?);
    Some(ProcSeen {
        pid: e.pid,
        ns_pid: e.ns_pid,
        gen: e.gen,
        mm: MmId {
            start_stack: e.mm.start_stack,
            exe_ino: e.mm.exe_ino,
        },
    })
}

/// Reads the maps of a process the kernel just saw (at its first stack), while it lives.
pub fn capture(sym: &mut Symbolizer, p: &ProcSeen) {
    match proc_pid(p.pid, p.ns_pid) {
        Some(pp) => sym.capture(p.pid, pp, p.gen, Some(p.mm)),
        None => sym.capture(p.pid, 0, p.gen, Some(p.mm)),
    }
}

/// How often a profiler looks for processes that ended.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A profiler's (`profile`, `offcpu`) processes and their user stacks. Each process's
/// maps are read at its first recorded stack, while it lives; about once a second, the
/// generations that ended since (exit or exec: gone from the kernel's process store) are
/// noted, and once the stack tables have been drained after that (so every stack they
/// recorded is in user space), their user stacks are symbolized and their maps let go.
/// What btrace holds stays bounded however many processes come and go: the maps of live
/// processes, a bounded number of open files, and the drained stacks.
pub struct ProcStacks {
    pub sym: Symbolizer,
    /// The user stacks of ended generations: (pid, generation, user stack id).
    done: HashMap<(u32, u64, i64), UserFrames>,
    /// Generations seen ended, and the tables' drain count then: they are symbolized
    /// after a later drain.
    ended: Option<(HashSet<(u32, u64)>, u64)>,
    next_sweep: Instant,
}

impl Default for ProcStacks {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcStacks {
    pub fn new() -> ProcStacks {
        ProcStacks {
            sym: Symbolizer::new(),
            done: HashMap::new(),
            ended: None,
            next_sweep: Instant::now() + SWEEP_EVERY,
        }
    }

    /// A process the kernel just saw.
    pub fn seen(&mut self, p: &ProcSeen) {
        capture(&mut self.sym, p);
    }

    /// Called after each drain attempt. Generations noted as ended two drains ago have all
    /// their stacks in `tables` (a stack is recorded before its process's exit or exec
    /// removes it from the store, and both buffers have been drained since): their user
    /// stacks are symbolized now and their maps let go. At most once a second (less often when it takes long), the generations held
    /// that ended (`gens`: the program's process store) are noted for the next drain.
    pub fn sweep(&mut self, gens: &dyn MapCore, tables: &StackTables) {
        if let Some((ended, at)) = &self.ended {
            // Two drains after: the first reads the buffer that was idle when the end
            // was noted and then flips, so the buffer active at the end (which may hold
            // the process's last stacks) is read by the second.
            if tables.drains <= *at + 1 {
                return;
            }
            let began = Instant::now();
            for (key, _, _) in tables.entries() {
                let done_key = (key.pid, key.gen, key.user_id);
                if key.user_id < 0
                    || !ended.contains(&(key.pid, key.gen))
                    || self.done.contains_key(&done_key)
                {
                    continue;
                }
                if let Some(a) = tables.stacks().get(&key.user_id) {
                    let frames = self.sym.user_frames(key.pid, key.gen, a);
                    self.done.insert(done_key, frames);
                }
            }
            for &(pid, gen) in ended {
                self.sym.release(pid, gen);
            }
            self.ended = None;
            // Walking a big table takes a while: at most 1/20 of the time.
            self.next_sweep = self.next_sweep.max(Instant::now() + began.elapsed() * 20);
        }
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let ended: HashSet<(u32, u64)> = self
            .sym
            .held()
            .into_iter()
            .filter(|&(pid, gen)| {
                let current = gens
                    .lookup(&pid.to_ne_bytes(), MapFlags::ANY)
                    .ok()
                    .flatten()
                    .and_then(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)));
                current != Some(gen)
            })
            .collect();
        if !ended.is_empty() {
            self.ended = Some((ended, tables.drains));
        }
    }

    /// Symbolizes counted stacks: `entries` are (key, value, count), `stacks` the stacks
    /// their ids name (drained from the kernel's stack tables). A process seen before (its
    /// maps read while it lived) is symbolized with them; one whose first stack's event
    /// was lost is read now if it still has that generation (`gens`: its current one,
    /// from the kernel's store). Returns the stacks, how many (by count) have a user stack
    /// cut short, and how many user frames are unknown for want of their file.
    pub fn symbolize_counts(
        &mut self,
        stacks: &HashMap<i64, Vec<u64>>,
        gens: &HashMap<u32, u64>,
        entries: &[(stack_key, u64, u64)],
        from_tracing: bool,
    ) -> (Vec<Stack>, u64, u64) {
        let sym = &mut self.sym;
        let get = |id: i64| stacks.get(&id);
        let mut truncated = 0;
        let mut out = Vec::with_capacity(entries.len());
        for (k, value, count) in entries {
            let done = self.done.get(&(k.pid, k.gen, k.user_id));
            if k.user_id >= 0
                && done.is_none()
                && !sym.captured(k.pid, k.gen)
                && gens.get(&k.pid) == Some(&k.gen)
            {
                // Alive with the same address space: safe to read now.
                if let Some(pp) = proc_pid(k.pid, 0) {
                    sym.capture(k.pid, pp, k.gen, None);
                }
            }
            let kernel = match k.kernel_id {
                id if id >= 0 => match get(id) {
                    Some(a) => Side::Frames(kernel_frames(sym, a, from_tracing)),
                    None => Side::Lost("stack table entry missing"),
                },
                id if id == i64::from(STACK_NONE) => Side::None,
                e => Side::Lost(lost_reason(e as i32)),
            };
            let user = match (k.user_id, done) {
                (_, Some(d)) => Side::Frames(d.frames()),
                (id, None) if id >= 0 => match get(id) {
                    Some(a) => Side::Frames(sym.user(k.pid, k.gen, a)),
                    None => Side::Lost("stack table entry missing"),
                },
                (id, None) if id == i64::from(STACK_NONE) => Side::None,
                (e, None) => Side::Lost(lost_reason(e as i32)),
            };
            if user_truncated(&user, STACK_MAX_DEPTH) {
                truncated += count;
            }
            out.push(Stack {
                pid: k.pid,
                tid: k.tid,
                comm: comm_text(&k.comm),
                kernel,
                user,
                value: *value,
                count: *count,
            });
        }
        (out, truncated, sym.unreadable())
    }
}

/// Every (pid, generation) pair of a profiler's process store.
pub fn read_gens(map: &dyn MapCore) -> HashMap<u32, u64> {
    map.keys()
        .filter_map(|k| {
            let v = map.lookup(&k, MapFlags::ANY).ok().flatten()?;
            Some((
                u32::from_ne_bytes(k.get(..4)?.try_into().ok()?),
                u64::from_ne_bytes(v.get(..8)?.try_into().ok()?),
            ))
        })
        .collect()
}
