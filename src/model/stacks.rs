// SPDX-License-Identifier: Apache-2.0
//! Symbolized stacks (each frame a function, or an address nothing names) and their
//! forms: folded lines (`comm;frame;frame count`, what flamegraph.pl, inferno, speedscope
//! and Pyroscope read), SVG flame graphs (inferno), the top stacks as text, and JSON
//! records.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::model::bytes::escape_text;

/// One frame of a stack: a function, or an address nothing names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The function; None when unknown.
    pub name: Option<String>,
    /// Inlined into the frame before it (the caller) at this address.
    pub inlined: bool,
    /// The file mapped at the address (a path, `[vdso]`, `[anon]`), or `[kernel]`.
    pub module: Option<String>,
    /// The offset in `module` (a file offset for files), for unknown frames.
    pub offset: u64,
    /// Source location, where debug information has it.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The address as recorded.
    pub addr: u64,
}

impl Frame {
    /// A frame nothing names: `addr` as recorded, in `module` at `offset` when known.
    pub fn unknown(addr: u64, module: Option<String>, offset: u64) -> Frame {
        Frame {
            name: None,
            inlined: false,
            module,
            offset,
            file: None,
            line: None,
            addr,
        }
    }

    /// The frame as shown: the function, or `[unknown] module+0xoff` (`[unknown] 0xaddr`
    /// when not even the module is known).
    pub fn text(&self) -> String {
        match (&self.name, &self.module) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => {
                let base = Path::new(m)
                    .file_name()
                    .map(|b| b.to_string_lossy().into_owned())
                    .unwrap_or_else(|| m.clone());
                format!("[unknown] {base}+0x{:x}", self.offset)
            }
            (None, None) => format!("[unknown] 0x{:x}", self.addr),
        }
    }

    pub fn known(&self) -> bool {
        self.name.is_some()
    }

    /// The frame as a JSON object.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), self.text().into());
        m.insert("addr".into(), format!("0x{:x}", self.addr).into());
        if self.inlined {
            m.insert("inlined".into(), true.into());
        }
        if let Some(md) = &self.module {
            m.insert("module".into(), md.clone().into());
        }
        if self.name.is_none() && self.module.is_some() {
            m.insert("offset".into(), format!("0x{:x}", self.offset).into());
        }
        if let Some(f) = &self.file {
            m.insert("file".into(), f.clone().into());
        }
        if let Some(l) = self.line {
            m.insert("line".into(), l.into());
        }
        serde_json::Value::Object(m)
    }
}

/// One side of a recorded stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// The frames, innermost first (inlined functions before the function holding them).
    Frames(Vec<Frame>),
    /// Not asked for, or there was none (a kernel thread's user stack, the kernel stack
    /// of a task interrupted in user mode).
    None,
    /// The walk failed; why, in words (counted in the stack losses).
    Lost(&'static str),
}

impl Side {
    pub fn frames(&self) -> &[Frame] {
        match self {
            Side::Frames(f) => f,
            _ => &[],
        }
    }

    /// The frames' names, innermost first (a lost stack is one marker frame).
    fn names(&self, kernel: bool) -> Vec<String> {
        match self {
            Side::Frames(f) => f
                .iter()
                .map(|f| {
                    let n = escape_text(&f.text()).replace(';', ":");
                    if kernel {
                        format!("{n}_[k]")
                    } else {
                        n
                    }
                })
                .collect(),
            Side::None => Vec::new(),
            Side::Lost(why) => vec![if kernel {
                format!("[lost kernel stack: {why}]_[k]")
            } else {
                format!("[lost user stack: {why}]")
            }],
        }
    }

    pub fn json(&self) -> Value {
        match self {
            Side::Frames(f) => Value::Array(f.iter().map(Frame::json).collect()),
            Side::None => Value::Null,
            Side::Lost(why) => json!({ "lost": why }),
        }
    }
}

/// One counted stack: who, both sides, and how much (samples, or nanoseconds blocked
/// with the number of blocks).
#[derive(Clone, Debug)]
pub struct Stack {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub kernel: Side,
    pub user: Side,
    /// Samples (profile) or nanoseconds (offcpu).
    pub value: u64,
    /// Samples (profile) or blocks (offcpu).
    pub count: u64,
}

impl Stack {
    /// The frames of a folded line, root first: the process name, the user stack from
    /// its outermost frame, then the kernel stack (kernel frames end in `_[k]`).
    pub fn folded_frames(&self) -> Vec<String> {
        let mut v = vec![escape_text(&self.comm).replace(';', ":")];
        v.extend(self.user.names(false).into_iter().rev());
        v.extend(self.kernel.names(true).into_iter().rev());
        v
    }

    /// Whether a frame of either side has this function name.
    pub fn has_function(&self, name: &str) -> bool {
        self.kernel
            .frames()
            .iter()
            .chain(self.user.frames())
            .any(|f| f.name.as_deref() == Some(name))
    }
}

/// Names that start a thread or a process: a user stack whose outermost frame is not one
/// of them was cut short (code without frame pointers on the way).
const ENTRY_POINTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__GI___clone",
    "__GI___clone3",
    "thread_start",
    "__start",
    "runtime.goexit",
    "runtime.goexit.abi0",
    "runtime.rt0_go",
    "runtime.rt0_go.abi0",
    "runtime.mstart",
];

/// Whether a user stack looks cut short: it does not reach a known entry point and did
/// not fill every frame the kernel keeps.
pub fn user_truncated(side: &Side, max_depth: usize) -> bool {
    let Side::Frames(f) = side else {
        return false;
    };
    let Some(outer) = f.last() else {
        return false;
    };
    let addrs = {
        let mut a: Vec<u64> = f.iter().map(|f| f.addr).collect();
        a.dedup();
        a.len()
    };
    addrs < max_depth
        && !outer
            .name
            .as_deref()
            .is_some_and(|n| ENTRY_POINTS.contains(&n))
}

/// Folded lines, one per distinct frame list, values summed, sorted (so the output is
/// the same from run to run for the same counts).
pub fn folded(stacks: &[Stack]) -> Vec<(String, u64)> {
    let mut sums: HashMap<String, u64> = HashMap::new();
    for s in stacks {
        *sums.entry(s.folded_frames().join(";")).or_default() += s.value;
    }
    let mut v: Vec<(String, u64)> = sums.into_iter().collect();
    v.sort();
    v
}

/// Writes folded lines (`frames value`).
pub fn write_folded(out: &mut dyn Write, lines: &[(String, u64)]) -> std::io::Result<()> {
    for (frames, v) in lines {
        writeln!(out, "{frames} {v}")?;
    }
    Ok(())
}

/// Parses folded lines back: (frames, value) per line.
pub fn parse_folded(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (frames, v) = l.rsplit_once(' ')?;
            Some((frames.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// An SVG flame graph of the folded lines (inferno), written to `file` (`path` names it
/// in errors).
pub fn write_svg(
    file: impl Write,
    path: &std::path::Path,
    lines: &[(String, u64)],
    title: &str,
    count_name: &str,
) -> Result<()> {
    let text: Vec<String> = lines.iter().map(|(f, v)| format!("{f} {v}")).collect();
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = count_name.to_string();
    opts.deterministic = true;
    let mut w = std::io::BufWriter::new(file);
    if lines.is_empty() {
        // inferno refuses an empty graph; an empty SVG says what happened.
        writeln!(
            w,
            r#"<?xml version="1.0" standalone="no"?><svg version="1.1" width="600" height="60" xmlns="http://www.w3.org/2000/svg"><text x="10" y="30">{title}: no stacks recorded</text></svg>"#
        )?;
    } else {
        inferno::flamegraph::from_lines(&mut opts, text.iter().map(String::as_str), &mut w)
            .with_context(|| format!("writing the flame graph {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("writing the flame graph {}", path.display()))
}

/// The stacks merged by process and frames (threads summed), biggest first.
pub fn by_process(stacks: &[Stack]) -> Vec<Stack> {
    let mut merged: HashMap<(u32, String, Vec<String>), Stack> = HashMap::new();
    for s in stacks {
        let key = (s.pid, s.comm.clone(), s.folded_frames());
        merged
            .entry(key)
            .and_modify(|m| {
                m.value += s.value;
                m.count += s.count;
                if m.tid != s.tid {
                    m.tid = 0;
                }
            })
            .or_insert_with(|| s.clone());
    }
    let mut v: Vec<Stack> = merged.into_values().collect();
    v.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then_with(|| a.folded_frames().cmp(&b.folded_frames()))
    });
    v
}

/// One stack as text: a head line, then its frames innermost first (kernel, then user),
/// with source locations and inlined functions marked.
pub fn text_stack(s: &Stack, head: &str) -> Vec<String> {
    let mut lines = vec![head.to_string()];
    let side = |lines: &mut Vec<String>, side: &Side, kernel: bool| match side {
        Side::Frames(f) => {
            for f in f {
                let mut l = format!("    {}", escape_text(&f.text()));
                if f.inlined {
                    l.push_str(" (inlined)");
                }
                if let (Some(file), Some(line)) = (&f.file, f.line) {
                    let base = std::path::Path::new(file)
                        .file_name()
                        .map(|b| b.to_string_lossy().into_owned())
                        .unwrap_or_else(|| file.clone());
                    l.push_str(&format!("  {}:{line}", escape_text(&base)));
                }
                lines.push(l);
            }
        }
        Side::None => {}
        Side::Lost(why) => lines.push(format!(
            "    [lost {} stack: {why}]",
            if kernel { "kernel" } else { "user" }
        )),
    };
    side(&mut lines, &s.kernel, true);
    if s.kernel != Side::None && s.user != Side::None {
        lines.push("    --".into());
    }
    side(&mut lines, &s.user, false);
    lines
}

/// A stack's JSON fields (after `type`): who, then both sides (innermost frame first;
/// `null` for none, `{"lost": why}` for a failed walk).
pub fn json_stack(s: &Stack) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("pid".into(), s.pid.into());
    m.insert("tid".into(), s.tid.into());
    m.insert("comm".into(), s.comm.clone().into());
    m.insert("kernel_stack".into(), s.kernel.json());
    m.insert("user_stack".into(), s.user.json());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, addr: u64) -> Frame {
        Frame {
            name: Some(name.into()),
            inlined: false,
            module: Some("/bin/x".into()),
            offset: 0,
            file: None,
            line: None,
            addr,
        }
    }

    #[test]
    fn unknown_frames_name_the_module() {
        let f = Frame::unknown(
            0x7f00_0000_1234,
            Some("/usr/lib/libfoo.so.1".into()),
            0x1234,
        );
        assert_eq!(f.text(), "[unknown] libfoo.so.1+0x1234");
        assert_eq!(Frame::unknown(0x42, None, 0).text(), "[unknown] 0x42");
        assert!(!f.known());
    }

    fn stack(user: &[&str], kernel: &[&str], value: u64) -> Stack {
        Stack {
            pid: 1,
            tid: 1,
            comm: "x;y".into(),
            kernel: Side::Frames(kernel.iter().map(|n| f(n, 1)).collect()),
            user: Side::Frames(
                user.iter()
                    .enumerate()
                    .map(|(i, n)| f(n, i as u64 + 10))
                    .collect(),
            ),
            value,
            count: value,
        }
    }

    #[test]
    fn folded_root_first_and_summed() {
        let a = stack(&["leaf", "main", "_start"], &["schedule", "do_x"], 3);
        assert_eq!(
            a.folded_frames().join(";"),
            "x:y;_start;main;leaf;do_x_[k];schedule_[k]"
        );
        let lines = folded(&[a.clone(), a.clone(), stack(&["other"], &[], 1)]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines.iter().map(|l| l.1).sum::<u64>(), 7);
        let mut buf = Vec::new();
        write_folded(&mut buf, &lines).unwrap();
        assert_eq!(parse_folded(&String::from_utf8(buf).unwrap()), lines);
    }

    #[test]
    fn lost_sides_are_marked() {
        let mut s = stack(&["main"], &[], 1);
        s.kernel = Side::Lost("collision");
        assert_eq!(
            s.folded_frames().join(";"),
            "x:y;main;[lost kernel stack: collision]_[k]"
        );
        assert_eq!(s.kernel.json(), json!({"lost": "collision"}));
    }

    #[test]
    fn truncation_heuristic() {
        let whole = stack(&["leaf", "main", "__libc_start_call_main"], &[], 1);
        assert!(!user_truncated(&whole.user, 127));
        let cut = stack(&["leaf", "caller"], &[], 1);
        assert!(user_truncated(&cut.user, 127));
        assert!(
            !user_truncated(&cut.user, 2),
            "full depth: cut by the limit, not FP"
        );
        assert!(!user_truncated(&Side::None, 127));
    }

    #[test]
    fn merged_by_process() {
        let mut a = stack(&["m"], &[], 2);
        let mut b = a.clone();
        b.tid = 2;
        b.value = 5;
        a.value = 2;
        let m = by_process(&[a, b, stack(&["n"], &[], 9)]);
        assert_eq!(m[0].value, 9);
        assert_eq!(m[1].value, 7);
        assert_eq!(m[1].tid, 0, "threads merged");
    }
}
