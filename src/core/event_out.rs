//! Printing streamed events (kprobe, tracepoint): one aligned text line per event, or
//! one NDJSON record; both start with who and when.

use serde_json::{Map, Value};

use crate::model::task::Head;
use crate::model::value::{text_args, Field};

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
    let mut line = format!(
        "{:<12.6} {:>7} {:>7} {:<16} {:<24}",
        secs, head.pid, head.tid, head.comm, what
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
    m.insert("pid".into(), head.pid.into());
    m.insert("tid".into(), head.tid.into());
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
