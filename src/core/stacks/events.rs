// SPDX-License-Identifier: Apache-2.0
//! The stacks of streamed events (`--stack` on `kprobe`, `uprobe`, `usdt`, `tracepoint`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use libbpf_rs::MapCore;

use super::{kernel_frames, lost_reason, proc_pid, StackLosses, STACK_MAX_DEPTH, STACK_NONE};
use crate::model::abi::types::stack_slot;
use crate::model::stacks::{user_truncated, Side, Stack};
use crate::resolve::symbols::{MmId, Symbolizer};

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
