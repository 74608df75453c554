//! Printing streamed events (kprobe, tracepoint): one aligned text line per event, or
//! one NDJSON record; both start with who and when.

use serde_json::{Map, Value};

use crate::model::task::Head;

/// The column header of text output; `what` names the event column.
pub fn text_header(what: &str) -> String {
    format!(
        "{:<12} {:>7} {:>7} {:<16} {:<24} ARGS",
        "TIME(s)", "PID", "TID", "COMM", what
    )
}

/// A value as `name=value` text: strings quoted; numbers, hex addresses (`0x...`) and
/// markers (`<not read>`) as they are.
fn text_value(v: &Value) -> String {
    let bare = |s: &str| {
        s.strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || (s.starts_with('<') && s.ends_with('>'))
    };
    match v {
        Value::String(s) if bare(s) => s.clone(),
        Value::String(s) => format!("{s:?}"),
        Value::Null => "?".into(),
        other => other.to_string(),
    }
}

/// One text line: time since `start_ns` in seconds, pid, tid, comm, event name, then
/// `name=value` pairs and `tail` (e.g. `ret=3 lat=12.3us`).
pub fn text_line(
    head: &Head,
    start_ns: u64,
    what: &str,
    args: &Map<String, Value>,
    tail: &str,
) -> String {
    let secs = head.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
    let mut line = format!(
        "{:<12.6} {:>7} {:>7} {:<16} {:<24}",
        secs, head.pid, head.tid, head.comm, what
    );
    for (k, v) in args {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(&text_value(v));
    }
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
    use serde_json::json;

    #[test]
    fn a_text_line() {
        let head = Head {
            ts_ns: 1_500_000_000,
            pid: 42,
            tid: 43,
            comm: "cat".into(),
        };
        let args = json!({"dfd": -100, "filename": "/etc/hostname", "how": "0xffff8880"});
        let line = text_line(
            &head,
            500_000_000,
            "do_sys_openat2",
            args.as_object().unwrap(),
            "ret=3",
        );
        assert!(line.starts_with("1.000000 "), "{line}");
        assert!(
            line.ends_with(r#"dfd=-100 filename="/etc/hostname" how=0xffff8880 ret=3"#),
            "{line}"
        );
    }
}
