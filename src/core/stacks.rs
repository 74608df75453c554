// SPDX-License-Identifier: Apache-2.0
//! What the stack-recording kernel programs leave for user space (src/bpf/include/
//! stacks.h and stack_procs.h), read and symbolized: stack ids and their addresses, the
//! stack losses, the processes seen (their maps read while they live), and the stacks of
//! streamed events (`--stack`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use libbpf_rs::{MapCore, MapFlags};
use serde_json::{json, Value};

use crate::core::abi::types::{stack_key, stack_loss, stack_proc_event, stack_slot};
use crate::core::abi::COMM_LEN;
use crate::core::percpu;
use crate::core::stack_tables::StackTables;
use crate::model::stacks::{user_truncated, Side, Stack};
use crate::model::task::comm_text;
use crate::resolve::symbols::{Frame, MmId, Symbolizer, UserFrames};

/// Frames kept of one stack.
pub const STACK_MAX_DEPTH: usize =
    crate::core::abi::types::stack_limits::STACK_MAX_DEPTH.0 as usize;
/// A stack id that says "no stack" (not asked for, or none).
pub const STACK_NONE: i32 = crate::core::abi::types::stack_limits::STACK_NONE.0 as i32;

const _: () = assert!(COMM_LEN == 16);

/// What the stack walks could not deliver, since load (and, found in user space, user
/// stacks that end early).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackLosses {
    /// -EEXIST: the stack's bucket in a BPF_MAP_TYPE_STACK_TRACE map held another stack
    /// (the profilers' own stack tables chain and never collide).
    pub collision: u64,
    /// -ENOMEM: the stack table had no free entry (profilers: more distinct stacks than
    /// --max-stacks between two drains).
    pub map_full: u64,
    /// -EFAULT: a user stack could not be walked at all.
    pub user_fault: u64,
    /// Any other error of a walk.
    pub other: u64,
    /// Samples (or blocks, or events) whose user stack ends before a thread's entry
    /// point: cut short by code without frame pointers.
    pub user_truncated: u64,
    /// User frames left unknown because their file could not be opened (out of
    /// descriptors, or gone with its process).
    pub unreadable: u64,
}

impl StackLosses {
    /// Reads a program's `stack_losses` map.
    pub fn read(map: &dyn MapCore) -> Result<StackLosses> {
        let sum = |k: stack_loss| percpu::values::<u64>(map, k.0).map(|v| v.iter().sum::<u64>());
        Ok(StackLosses {
            collision: sum(stack_loss::STACK_LOSS_COLLISION)?,
            map_full: sum(stack_loss::STACK_LOSS_FULL)?,
            user_fault: sum(stack_loss::STACK_LOSS_USER_FAULT)?,
            other: sum(stack_loss::STACK_LOSS_OTHER)?,
            user_truncated: 0,
            unreadable: 0,
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "collision": self.collision,
            "map_full": self.map_full,
            "user_fault": self.user_fault,
            "other": self.other,
            "user_truncated": self.user_truncated,
            "unreadable_file_frames": self.unreadable,
        })
    }

    pub fn text(&self) -> String {
        let unreadable = match self.unreadable {
            0 => String::new(),
            n => format!(" {n} user frames unknown: their file could not be opened."),
        };
        format!(
            "Stacks lost: {} (stack map collision), {} (stack table full), {} user stacks not walkable, {} other; {} user stacks cut short (no frame pointers).{unreadable}",
            self.collision, self.map_full, self.user_fault, self.other, self.user_truncated
        )
    }
}

/// Why a walk failed, from the -errno the kernel kept in place of a stack id.
pub fn lost_reason(err: i32) -> &'static str {
    match -err {
        libc::EEXIST => "stack map collision",
        libc::ENOMEM => "stack table full",
        libc::EFAULT => "not walkable",
        _ => "walk failed",
    }
}

/// The pid to read /proc with for host pid `pid`: in a pid namespace of btrace's own,
/// the id there (None for a task outside it).
pub fn proc_pid(pid: u32, ns_pid: u32) -> Option<u32> {
    if crate::core::pidns::in_child_ns() {
        (ns_pid != 0).then_some(ns_pid)
    } else {
        Some(pid)
    }
}

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

/// Kernel frames the tracing machinery adds on top of a stack taken from a BPF program
/// run by a tracepoint or a trampoline (the program, the helper, the tracepoint's
/// dispatch): not what the traced task was doing.
fn machinery(f: &Frame) -> bool {
    const PREFIXES: &[&str] = &[
        "bpf_",
        "__bpf_",
        "___bpf_",
        "__traceiter_",
        "trace_call_bpf",
        "perf_trace_",
        "__perf_",
        "perf_syscall_",
        "perf_callchain",
        "get_perf_callchain",
        "trace_event_",
    ];
    match &f.name {
        Some(n) => PREFIXES.iter().any(|p| n.starts_with(p)),
        // Unnamed code at the top of such a stack is JIT'd BPF code (programs and
        // trampolines are named only where bpf_jit_kallsyms is on).
        None => true,
    }
}

/// A kernel stack's frames, with the tracing machinery on top removed when the stack was
/// taken from a tracepoint or trampoline program (`from_tracing`).
pub fn kernel_frames(sym: &mut Symbolizer, addrs: &[u64], from_tracing: bool) -> Vec<Frame> {
    let mut frames = sym.kernel(addrs);
    if from_tracing {
        let skip = frames.iter().take_while(|f| machinery(f)).count();
        if skip < frames.len() {
            frames.drain(..skip);
        }
    }
    frames
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

/// The stacks of streamed events (`--stack`): symbolized as each event is printed, with
/// the process's maps read at its first event (and again, at most once a second, when an
/// address falls outside them: a library loaded since). Maps are used only while the
/// process still has the address space the stack was taken in.
pub struct EventStacks {
    sym: Symbolizer,
    reread: HashMap<(u32, u64), Instant>,
    /// When to let go of the maps of processes that ended (their stacks are symbolized
    /// as they come: nothing is left to do with them).
    next_release: Instant,
    pub losses: StackLosses,
}

/// How often a stream lets go of the maps of processes that ended.
const EVENT_RELEASE_EVERY: Duration = Duration::from_secs(5);

impl Default for EventStacks {
    fn default() -> Self {
        Self::new()
    }
}

impl EventStacks {
    pub fn new() -> EventStacks {
        EventStacks {
            sym: Symbolizer::new(),
            reread: HashMap::new(),
            next_release: Instant::now() + EVENT_RELEASE_EVERY,
            losses: StackLosses::default(),
        }
    }

    /// Both sides of one event's stack slot (`slot`: its bytes), for a task with host pid
    /// `pid` (`ns_pid` in btrace's namespace).
    pub fn sides(&mut self, slot: &[u8], pid: u32, ns_pid: u32) -> (Side, Side) {
        let s: stack_slot = crate::core::skel::plain_prefix(
            &slot[..slot.len().min(std::mem::size_of::<stack_slot>())],
        );
        let addrs = |words: &[u64], len: i32| -> Vec<u64> {
            let n = (len.max(0) as usize / 8).min(words.len());
            words[..n].iter().copied().take_while(|&a| a != 0).collect()
        };
        if Instant::now() >= self.next_release {
            self.next_release = Instant::now() + EVENT_RELEASE_EVERY;
            self.sym.release_ended();
            self.reread
                .retain(|_, t| t.elapsed() < Duration::from_secs(1));
        }
        // The process's maps first, while it lives: symbolizing the kernel side may take
        // a while the first time (kallsyms).
        if s.user_len >= 0 {
            let mm = MmId {
                start_stack: s.mm.start_stack,
                exe_ino: s.mm.exe_ino,
            };
            let gen = mm.start_stack ^ mm.exe_ino.rotate_left(32);
            let pp = proc_pid(pid, ns_pid).unwrap_or(0);
            self.sym.capture(pid, pp, gen, Some(mm));
        }
        let kernel = match s.kernel_len {
            n if n >= 0 => Side::Frames(kernel_frames(&mut self.sym, &addrs(&s.kernel, n), true)),
            STACK_NONE => Side::None,
            e => Side::Lost(lost_reason(e)),
        };
        let user = match s.user_len {
            n if n >= 0 => {
                let mm = MmId {
                    start_stack: s.mm.start_stack,
                    exe_ino: s.mm.exe_ino,
                };
                // One generation per address space.
                let gen = mm.start_stack ^ mm.exe_ino.rotate_left(32);
                let a = addrs(&s.user, n);
                let pp = proc_pid(pid, ns_pid).unwrap_or(0);
                self.sym.capture(pid, pp, gen, Some(mm));
                let mut frames = self.sym.user(pid, gen, &a);
                let outside = frames
                    .iter()
                    .any(|f| f.name.is_none() && f.module.is_none());
                let due = self
                    .reread
                    .get(&(pid, gen))
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if outside && due {
                    self.reread.insert((pid, gen), Instant::now());
                    self.sym.release(pid, gen);
                    self.sym.capture(pid, pp, gen, Some(mm));
                    frames = self.sym.user(pid, gen, &a);
                }
                let side = Side::Frames(frames);
                if user_truncated(&side, STACK_MAX_DEPTH) {
                    self.losses.user_truncated += 1;
                }
                side
            }
            STACK_NONE => Side::None,
            e => Side::Lost(lost_reason(e)),
        };
        (kernel, user)
    }
}

/// `--stack` on event commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EventStackArgs {
    /// Record the kernel and user stack of each event, symbolized (user stacks need frame
    /// pointers: see README, Stacks)
    #[arg(long)]
    pub stack: bool,
}

impl EventStacks {
    /// The stacks of one event from its record (`rec`; the stack slot at `off`): JSON
    /// fields to add, and text lines to print under the event.
    pub fn event(
        &mut self,
        rec: &[u8],
        off: usize,
        head: &crate::model::task::HeadRef<'_>,
    ) -> Option<(Side, Side)> {
        let slot = rec.get(off..)?;
        if slot.len() < std::mem::size_of::<stack_slot>() {
            return None;
        }
        let ns_pid = head.ns.and_then(|n| n.pid).unwrap_or(0);
        Some(self.sides(slot, head.pid, ns_pid))
    }

    /// Appends `kernel_stack` (unless `with_kernel` is false: a probe in user mode has
    /// none) and `user_stack` to the JSON record being written into `out`.
    pub fn write_json(out: &mut Vec<u8>, sides: &(Side, Side), with_kernel: bool) -> Result<()> {
        use crate::model::json_write as jw;
        if with_kernel {
            jw::next_key(out, "kernel_stack");
            serde_json::to_writer(&mut *out, &sides.0.json())?;
        }
        jw::next_key(out, "user_stack");
        serde_json::to_writer(&mut *out, &sides.1.json())?;
        Ok(())
    }

    /// An event's stacks as indented text lines (kernel, `--`, user).
    pub fn text_lines(sides: &(Side, Side)) -> Vec<String> {
        let s = Stack {
            pid: 0,
            tid: 0,
            comm: String::new(),
            kernel: sides.0.clone(),
            user: sides.1.clone(),
            value: 0,
            count: 0,
        };
        crate::model::stacks::text_stack(&s, "")
            .into_iter()
            .skip(1)
            .collect()
    }

    /// The stack losses: the kernel's counts (`map`: the program's `stack_losses`) and
    /// the user stacks found cut short here.
    pub fn losses(&self, map: &dyn MapCore) -> Result<StackLosses> {
        let mut l = StackLosses::read(map)?;
        l.user_truncated = self.losses.user_truncated;
        l.unreadable = self.sym.unreadable();
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(lost_reason(-libc::EEXIST), "stack map collision");
        assert_eq!(lost_reason(-libc::EFAULT), "not walkable");
        assert_eq!(lost_reason(-1), "walk failed");
        const { assert!(STACK_NONE < 0) };
        assert_eq!(STACK_MAX_DEPTH, 127);
    }

    #[test]
    fn machinery_on_top_only() {
        let f = |n: &str| Frame {
            name: Some(n.into()),
            inlined: false,
            module: None,
            offset: 0,
            file: None,
            line: None,
            addr: 1,
        };
        assert!(machinery(&f("bpf_trace_run4")));
        assert!(machinery(&f("__traceiter_sched_switch")));
        assert!(!machinery(&f("__schedule")));
        assert!(!machinery(&f("do_sys_openat2")));
    }
}

/// How a profiler (`profile`, `offcpu`) shows its stacks.
#[derive(clap::Args, Debug, Clone)]
pub struct StackOutArgs {
    /// Walk only kernel stacks, not user stacks (all threads are still counted; named
    /// apart from offcputime's -k, which keeps kernel threads only)
    #[arg(long, conflicts_with = "user_stacks")]
    pub kernel_stacks: bool,
    /// Walk only user stacks, not kernel stacks (all threads are still counted; named
    /// apart from offcputime's -u, which keeps user threads only)
    #[arg(long)]
    pub user_stacks: bool,
    /// Print folded stacks (`comm;frame;frame value`, root first: what flamegraph.pl,
    /// inferno, speedscope and Pyroscope read) instead of the top stacks
    #[arg(long, conflicts_with = "json")]
    pub folded: bool,
    /// Also write an SVG flame graph to FILE
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Text: show the N biggest stacks (per process, threads summed)
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Distinct stacks the kernel keeps between two drains of its tables (each up to 127
    /// frames, about 1 KB, in each of two buffers); more are counted as lost (stack
    /// table full)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_STACKS, value_parser = parse_max_stacks)]
    pub max_stacks: u32,
    /// Entries of each counts buffer (testing builds: a small table shows the draining)
    #[cfg(feature = "testing")]
    #[arg(long, hide = true, value_name = "N")]
    pub max_counts: Option<u32>,
    /// Never drain the tables while running (testing builds: what a test must fail with)
    #[cfg(feature = "testing")]
    #[arg(long, hide = true)]
    pub no_drain: bool,
}

impl StackOutArgs {
    /// The bound of each counts buffer: `default`, or the testing flag's.
    pub fn max_counts(&self, default: u32) -> u32 {
        #[cfg(feature = "testing")]
        return self.max_counts.unwrap_or(default);
        #[cfg(not(feature = "testing"))]
        default
    }

    /// Whether the tables are drained while running (always, but in a test's control run).
    pub fn drain(&self) -> bool {
        #[cfg(feature = "testing")]
        return !self.no_drain;
        #[cfg(not(feature = "testing"))]
        true
    }
}

/// Distinct stacks per buffer between two drains: at 999 Hz on 2 CPUs a buffer takes at
/// most 4,000 stacks a second (kernel and user), and it is drained once a second, or
/// within 100 ms of passing half full.
pub const DEFAULT_MAX_STACKS: u32 = 8192;
/// At most this many stacks: each takes about 1 KB of kernel memory, preallocated.
pub const MAX_STACKS_LIMIT: u32 = 1 << 20;

fn parse_max_stacks(s: &str) -> std::result::Result<u32, String> {
    crate::core::system::parse_store_size(
        s,
        MAX_STACKS_LIMIT,
        "each stack takes about 1 KB of kernel memory in each of two buffers",
        16,
        (2 * STACK_MAX_DEPTH * 8 + 16) as u64,
    )
}

/// What a profiler's values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// Samples (profile): value = count.
    Samples,
    /// Nanoseconds blocked (offcpu): value = ns, count = blocks.
    BlockedNs,
}

/// `--svg`'s file, opened before anything is attached (see
/// [`OutputFile`](crate::core::output::OutputFile)).
pub fn open_svg(args: &StackOutArgs) -> Result<Option<crate::core::output::OutputFile>> {
    args.svg
        .as_deref()
        .map(|p| crate::core::output::OutputFile::create(p, "--svg"))
        .transpose()
}

/// Prints counted stacks: JSON records, folded lines, or the top stacks as text; writes
/// the SVG flame graph to `svg` (from [`open_svg`]) when asked. `title` heads the flame
/// graph. `seen` is what the programs saw, kept or lost: percentages are of it, and the
/// text says how much of it was kept when some was lost.
pub fn report(
    out: &mut crate::core::output::Output,
    stacks: &[Stack],
    args: &StackOutArgs,
    svg: Option<crate::core::output::OutputFile>,
    measure: Measure,
    title: &str,
    seen: crate::core::stack_tables::Seen,
) -> Result<()> {
    use crate::model::stacks::{by_process, folded, json_stack, text_stack, write_folded};
    let lines = folded(stacks);
    if let Some(file) = svg {
        let unit = match measure {
            Measure::Samples => "samples",
            Measure::BlockedNs => "ns",
        };
        let path = file.path().to_path_buf();
        crate::model::stacks::write_svg(file, &path, &lines, title, unit)?;
    }
    let kept_value: u64 = stacks.iter().map(|s| s.value).sum();
    let kept_count: u64 = stacks.iter().map(|s| s.count).sum();
    let total = kept_value.max(seen.value);
    if out.json {
        let mut sorted: Vec<&Stack> = stacks.iter().collect();
        sorted.sort_by(|a, b| {
            b.value
                .cmp(&a.value)
                .then(a.pid.cmp(&b.pid))
                .then(a.tid.cmp(&b.tid))
        });
        for s in sorted {
            let mut rec = serde_json::Map::new();
            rec.insert("type".into(), "stack".into());
            let fields = json_stack(s);
            // who first, then how much, then the stacks
            for k in ["pid", "tid", "comm"] {
                rec.insert(k.into(), fields[k].clone());
            }
            match measure {
                Measure::Samples => {
                    rec.insert("samples".into(), s.value.into());
                }
                Measure::BlockedNs => {
                    rec.insert("total_ns".into(), s.value.into());
                    rec.insert("blocks".into(), s.count.into());
                }
            }
            rec.insert("kernel_stack".into(), fields["kernel_stack"].clone());
            rec.insert("user_stack".into(), fields["user_stack"].clone());
            out.record(&Value::Object(rec))?;
        }
        return Ok(());
    }
    if args.folded {
        let mut buf = Vec::new();
        write_folded(&mut buf, &lines)?;
        for l in String::from_utf8_lossy(&buf).lines() {
            out.line(l)?;
        }
        return Ok(());
    }
    if seen.count > kept_count {
        let (what, of) = match measure {
            Measure::Samples => ("samples", format!("all {} samples", seen.count)),
            Measure::BlockedNs => (
                "blocks",
                format!(
                    "all {} blocked, lost blocks included",
                    crate::model::units::fmt_ns(total as f64)
                ),
            ),
        };
        out.line(&format!(
            "{kept_count} of {} {what} kept ({} lost: the kernel's table was full); percentages are of {of}",
            seen.count,
            seen.count - kept_count,
        ))?;
        out.line("")?;
    }
    let merged = by_process(stacks);
    for s in merged.iter().take(args.top) {
        let pct = if total > 0 {
            100.0 * s.value as f64 / total as f64
        } else {
            0.0
        };
        let how = match measure {
            Measure::Samples => format!(
                "{} sample{} ({pct:.1} %)",
                s.value,
                if s.value == 1 { "" } else { "s" }
            ),
            Measure::BlockedNs => format!(
                "{} blocked in {} block{} ({pct:.1} %)",
                crate::model::units::fmt_ns(s.value as f64),
                s.count,
                if s.count == 1 { "" } else { "s" }
            ),
        };
        let comm = crate::model::bytes::escape_text(&s.comm);
        for l in text_stack(s, &format!("@[{comm} {}] {how}", s.pid)) {
            out.line(&l)?;
        }
        out.line("")?;
    }
    if merged.len() > args.top {
        out.line(&format!(
            "({} more stacks not shown: --top N shows more, --folded or --json all)",
            merged.len() - args.top
        ))?;
    }
    if merged.is_empty() {
        out.line("(no stacks recorded)")?;
    }
    Ok(())
}
