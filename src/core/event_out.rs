// SPDX-License-Identifier: Apache-2.0
//! Printing streamed events (kprobe, tracepoint): one aligned text line per event, or
//! one NDJSON record; both start with who and when.

use serde_json::{Map, Value};

use clap::Args;

use crate::model::bytes::escape_text;
use crate::model::json_write as jw;
use crate::model::task::{Head, HeadRef};
use crate::model::value::{write_text_args, Field};
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
        let mut line = Vec::new();
        self.write_text_line(&head.view(), start_ns, what, args, tail, &mut line);
        into_string(line)
    }

    /// [`text_line`](Self::text_line), appended to `out`.
    pub fn write_text_line(
        &mut self,
        head: &HeadRef<'_>,
        start_ns: u64,
        what: &str,
        args: &[Field<'_>],
        tail: &str,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        write_text_line(head, start_ns, what, args, tail, out);
        if !self.column {
            return;
        }
        // The columns before COMM: time (12), pid (7), tid (7), with their spaces.
        let at = 12 + 1 + 7 + 1 + 7 + 1;
        let rest = out.split_off(start + at);
        let cg = self.cgroups.path(head.cgroup_id).unwrap_or("-");
        pad_right(out, &escape_text(cg), 30);
        out.push(b' ');
        out.extend_from_slice(&rest);
    }

    /// The JSON fields every event record starts with, the cgroup's path among them
    /// (null when the task's cgroup is not known).
    pub fn json(&mut self, head: &Head) -> Map<String, Value> {
        let mut m = json_head(head);
        let cg = self.cgroups.path(head.cgroup_id).map(str::to_string);
        m.insert("cgroup".into(), cg.into());
        m
    }

    /// [`json`](Self::json) written into `out`: the record's opening brace and these
    /// fields; the caller adds its own and the closing brace.
    pub fn write_json(&mut self, head: &HeadRef<'_>, out: &mut Vec<u8>) {
        self.write_json_as(head, "event", out);
    }

    /// [`write_json`](Self::write_json) for a record of its own `type` (`open`, `exec`).
    pub fn write_json_as(&mut self, head: &HeadRef<'_>, record_type: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"type":"#);
        jw::str(out, record_type);
        out.extend_from_slice(br#","ts_ns":"#);
        jw::int(out, head.ts_ns);
        match head.ns {
            None => {
                jw::next_key(out, "pid");
                jw::int(out, head.pid);
                jw::next_key(out, "tid");
                jw::int(out, head.tid);
            }
            Some(ns) => {
                jw::next_key(out, "pid");
                jw::opt_int(out, ns.pid);
                jw::next_key(out, "tid");
                jw::opt_int(out, ns.tid);
                jw::next_key(out, "host_pid");
                jw::int(out, head.pid);
                jw::next_key(out, "host_tid");
                jw::int(out, head.tid);
            }
        }
        jw::next_key(out, "comm");
        jw::str(out, &head.comm);
        jw::next_key(out, "cgroup");
        jw::opt_str(out, self.cgroups.path(head.cgroup_id));
    }
}

/// Bytes made only of `&str` pieces as a String.
fn into_string(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `s` then spaces up to `width` characters (`{:<width}`).
fn pad_right(out: &mut Vec<u8>, s: &str, width: usize) {
    out.extend_from_slice(s.as_bytes());
    let n = s.chars().count();
    out.resize(out.len() + width.saturating_sub(n), b' ');
}

/// Spaces up to `width` characters, then `s` (`{:>width}`).
fn pad_left(out: &mut Vec<u8>, s: &str, width: usize) {
    let n = s.chars().count();
    out.resize(out.len() + width.saturating_sub(n), b' ');
    out.extend_from_slice(s.as_bytes());
}

/// Nanoseconds as seconds with 6 decimals, padded to 12 characters: the bytes of
/// `format!("{:<12.6}", ns as f64 / 1e9)`, computed in integers. The f64 quotient is
/// within 0.125 ns of the exact one below 2^50 ns, so it rounds the same way unless the
/// sub-microsecond part is exactly a half (a tie, left to the float formatter).
fn write_secs(out: &mut Vec<u8>, ns: u64) {
    let start = out.len();
    let (us, sub) = (ns / 1000, ns % 1000);
    if sub == 500 || ns >= 1 << 50 {
        use std::io::Write;
        let _ = write!(out, "{:<12.6}", ns as f64 / 1e9);
        return;
    }
    let us = us + u64::from(sub > 500);
    jw::int(out, us / 1_000_000);
    out.push(b'.');
    let frac = us % 1_000_000;
    let mut digits = [b'0'; 6];
    let mut fb = itoa::Buffer::new();
    let f = fb.format(frac).as_bytes();
    digits[6 - f.len()..].copy_from_slice(f);
    out.extend_from_slice(&digits);
    let n = out.len() - start;
    out.resize(out.len() + 12usize.saturating_sub(n), b' ');
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
    let mut line = Vec::new();
    write_text_line(&head.view(), start_ns, what, args, tail, &mut line);
    into_string(line)
}

/// [`text_line`], appended to `out`.
pub fn write_text_line(
    head: &HeadRef<'_>,
    start_ns: u64,
    what: &str,
    args: &[Field<'_>],
    tail: &str,
    out: &mut Vec<u8>,
) {
    write_secs(out, head.ts_ns.saturating_sub(start_ns));
    // In a pid namespace: the namespace's ids; a task outside it shows its host id in
    // brackets.
    let mut id = |ns: Option<u32>, host: u32| {
        out.push(b' ');
        match (head.ns, ns) {
            (None, _) => pad_left(out, itoa::Buffer::new().format(host), 7),
            (Some(_), Some(n)) => pad_left(out, itoa::Buffer::new().format(n), 7),
            (Some(_), None) => pad_left(out, &format!("[{host}]"), 7),
        }
    };
    id(head.ns.and_then(|n| n.pid), head.pid);
    id(head.ns.and_then(|n| n.tid), head.tid);
    out.push(b' ');
    pad_right(out, &escape_text(&head.comm), 16);
    out.push(b' ');
    pad_right(out, what, 24);
    write_text_args(args, out);
    if !tail.is_empty() {
        out.push(b' ');
        out.extend_from_slice(tail.as_bytes());
    }
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
    fn seconds_as_the_float_formatter_writes_them() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![
            0,
            1,
            499,
            500,
            501,
            999_999_500,
            999_999_499,
            1 << 49,
            (1 << 50) + 7,
        ];
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x % (1 << (x % 51)));
        }
        for ns in values {
            let mut out = Vec::new();
            write_secs(&mut out, ns);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("{:<12.6}", ns as f64 / 1e9),
                "{ns}"
            );
        }
    }

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
        assert_eq!(
            &line[..line.find(" dfd").unwrap()],
            format!(
                "{:<12.6} {:>7} {:>7} {:<16} {:<24}",
                1.0, 42, 43, "cat", "do_sys_openat2"
            )
        );
        assert!(
            line.ends_with(r#"dfd=-100 filename="/etc/hostname" how=0xffff8880 ret=3"#),
            "{line}"
        );
    }
}
