// SPDX-License-Identifier: Apache-2.0
//! Printing streamed events (kprobe, tracepoint): one aligned text line per event, or
//! one NDJSON record; both start with who and when.

use serde_json::{Map, Value};

use clap::Args;

use crate::model::task::Head;
use crate::model::value::{text_args, Field};
use crate::resolve::cgroups::CgroupNames;

/// How each event's head is shown, beyond who and when.
#[derive(Args, Debug, Clone, Default)]
pub struct HeadArgs {
    /// Show each event's cgroup (its path under the cgroup v2 mount) in text mode too;
    /// JSON records always carry it
    #[arg(long)]
    pub cgroup_column: bool,
}

/// Prints event heads: text columns and JSON fields, with the cgroup named by path.
pub struct Heads {
    cgroups: CgroupNames,
    column: bool,
}

impl Heads {
    pub fn new(args: &HeadArgs) -> Heads {
        Heads {
            cgroups: CgroupNames::new(),
            column: args.cgroup_column,
        }
    }

    /// The column header of text output; `what` names the event column.
    pub fn text_header(&self, what: &str) -> String {
        let h = text_header(what);
        if self.column {
            return h.replacen(" COMM", " CGROUP                         COMM", 1);
        }
        h
    }

    /// One text line (see [`text_line`]), with the cgroup column when asked for.
    pub fn text_line(
        &mut self,
        head: &Head,
        start_ns: u64,
        what: &str,
        args: &[Field<'_>],
        tail: &str,
    ) -> String {
        let line = text_line(head, start_ns, what, args, tail);
        if !self.column {
            return line;
        }
        // The columns before COMM: time (12), pid (7), tid (7), with their spaces.
        let at = 12 + 1 + 7 + 1 + 7 + 1;
        let cg = self.cgroups.path(head.cgroup_id).unwrap_or("-").to_string();
        format!("{}{cg:<30} {}", &line[..at], &line[at..])
    }

    /// The JSON fields every event record starts with, the cgroup's path among them
    /// (null when the task's cgroup is not known).
    pub fn json(&mut self, head: &Head) -> Map<String, Value> {
        let mut m = json_head(head);
        let cg = self.cgroups.path(head.cgroup_id).map(str::to_string);
        m.insert("cgroup".into(), cg.into());
        m
    }
}

/// The column header of text output; `what` names the event column.
pub fn text_header(what: &str) -> String {
    format!(
        "{:<12} {:>7} {:>7} {:<16} {:<24} ARGS",
        "TIME(s)", "PID", "TID", "COMM", what
    )
}

/// One text line: time since `start_ns` in seconds, pid, tid, comm, event name, then
/// `name=value` pairs (strings quoted and C-escaped, `...` after a cut one; numbers,
/// addresses and names bare) and `tail` (e.g. `ret=3 lat=12.3us`).
pub fn text_line(head: &Head, start_ns: u64, what: &str, args: &[Field<'_>], tail: &str) -> String {
    let secs = head.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
    // In a pid namespace: the namespace's ids; a task outside it shows its host id in
    // brackets.
    let id = |ns: Option<u32>, host: u32| match (head.ns, ns) {
        (None, _) => host.to_string(),
        (Some(_), Some(n)) => n.to_string(),
        (Some(_), None) => format!("[{host}]"),
    };
    let (pid, tid) = (
        id(head.ns.and_then(|n| n.pid), head.pid),
        id(head.ns.and_then(|n| n.tid), head.tid),
    );
    let mut line = format!(
        "{:<12.6} {:>7} {:>7} {:<16} {:<24}",
        secs, pid, tid, head.comm, what
    );
    text_args(args, &mut line);
    if !tail.is_empty() {
        line.push(' ');
        line.push_str(tail);
    }
    line
}

/// The JSON fields every event record starts with.
pub fn json_head(head: &Head) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), "event".into());
    m.insert("ts_ns".into(), head.ts_ns.into());
    match head.ns {
        None => {
            m.insert("pid".into(), head.pid.into());
            m.insert("tid".into(), head.tid.into());
        }
        // In a pid namespace: the namespace's ids (null for a task outside it), and the
        // host's beside them.
        Some(ns) => {
            m.insert("pid".into(), ns.pid.into());
            m.insert("tid".into(), ns.tid.into());
            m.insert("host_pid".into(), head.pid.into());
            m.insert("host_tid".into(), head.tid.into());
        }
    }
    m.insert("comm".into(), head.comm.clone().into());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::Val;

    #[test]
    fn a_text_line() {
        let head = Head {
            ts_ns: 1_500_000_000,
            pid: 42,
            tid: 43,
            comm: "cat".into(),
            ns: None,
            cgroup_id: 0,
        };
        let args = [
            Field::plain("dfd", Val::Int(-100)),
            Field::plain(
                "filename",
                Val::Bytes {
                    data: b"/etc/hostname".to_vec(),
                    truncated: false,
                },
            ),
            Field::plain("how", Val::Hex(0xffff8880)),
        ];
        let line = text_line(&head, 500_000_000, "do_sys_openat2", &args, "ret=3");
        assert!(line.starts_with("1.000000 "), "{line}");
        assert!(
            line.ends_with(r#"dfd=-100 filename="/etc/hostname" how=0xffff8880 ret=3"#),
            "{line}"
        );
    }
}
