// SPDX-License-Identifier: Apache-2.0
//! One finished exec call as user space sees it: decoded from the kernel's record, with
//! the parent's command line, as JSON and as text.

use std::collections::HashMap;
use std::mem::offset_of;

use crate::core::event_out::Heads;
use crate::core::pidns::PidView;
use crate::core::skel::plain_prefix;
use crate::core::slots;
use crate::model::abi::types::task_hdr;
use crate::model::errno;
use crate::model::json_write as jw;
use crate::model::task::Head;
use crate::model::value::{Field, JsonMarks, Val};

use super::skel::{types, ARG_SIZE, PATH_SIZE};

#[derive(Clone, Debug, PartialEq)]
pub struct ExecEvent {
    pub head: Head,
    /// 0, or -errno.
    pub ret: i64,
    /// The parent's host pid.
    pub ppid: u32,
    /// execve or execveat.
    pub call: &'static str,
    pub dfd: i32,
    pub at_flags: u32,
    /// The filename as passed (None when its memory could not be read).
    pub filename: Option<Val>,
    /// The argument list (a Val::List; None when it could not be read at all).
    pub argv: Option<Val>,
}

/// Decodes one ring-buffer record (None if it is too short): it ends after its last
/// argument.
pub fn decode(data: &[u8]) -> Option<ExecEvent> {
    let path_at = offset_of!(types::exec_event, path);
    let argv_at = offset_of!(types::exec_event, argv);
    if data.len() < argv_at + std::mem::size_of::<crate::model::abi::types::str_hdr>() {
        return None;
    }
    let ev: types::exec_event = plain_prefix(&data[..argv_at]);
    let hdr_len = std::mem::size_of::<task_hdr>();
    let head = Head::from_hdr(plain::from_bytes::<task_hdr>(data.get(..hdr_len)?).ok()?);
    let (items, flags) = slots::read_list(data, argv_at, ARG_SIZE)?;
    Some(ExecEvent {
        head,
        ret: ev.ret,
        ppid: ev.ppid,
        call: if ev.call == types::exec_call::EXEC_CALL_EXECVEAT.0 {
            "execveat"
        } else {
            "execve"
        },
        dfd: ev.dfd,
        at_flags: ev.at_flags,
        filename: slots::read(data, path_at, PATH_SIZE)?.val(),
        argv: slots::list_val(&items, flags),
    })
}

/// Processes beyond this many remembered command lines make the table drop those that ended.
const REMEMBER: usize = 16384;

/// Command lines of processes: the argument list of the last exec btrace saw each
/// process make, else what /proc says while the process lives.
pub struct CmdLines {
    seen: HashMap<u32, Val>,
    pids: PidView,
}

impl CmdLines {
    pub fn new() -> anyhow::Result<Self> {
        Ok(CmdLines {
            seen: HashMap::new(),
            pids: PidView::new()?,
        })
    }

    /// Remembers a process's new command line (a successful exec).
    pub fn learn(&mut self, host_pid: u32, argv: &Val) {
        if self.seen.len() >= REMEMBER {
            self.seen
                .retain(|p, _| std::path::Path::new(&format!("/proc/{p}")).exists());
        }
        self.seen.insert(host_pid, argv.clone());
    }

    /// The command line of a process by host pid: from its last exec seen, else from
    /// /proc (None when it has already ended or is outside btrace's pid namespace).
    pub fn of(&mut self, host_pid: u32) -> Option<Val> {
        if let Some(v) = self.seen.get(&host_pid) {
            return Some(v.clone());
        }
        let pid = self.pids.to_ns(host_pid)?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mut items: Vec<(Vec<u8>, bool)> = raw
            .split(|&b| b == 0)
            .map(|a| (a.to_vec(), false))
            .collect();
        // The buffer ends with a NUL: the last split is empty.
        if raw.last() == Some(&0) {
            items.pop();
        }
        Some(Val::List {
            items,
            truncated: false,
        })
    }

    /// The parent's pid as btrace's pid namespace sees it (None: outside it).
    pub fn ns_pid(&mut self, host_pid: u32) -> Option<u32> {
        self.pids.to_ns(host_pid)
    }
}

impl ExecEvent {
    fn fields(&self, parent: &Option<Val>) -> Vec<Field<'static>> {
        let mut f = vec![
            Field::plain("filename", self.filename.clone().unwrap_or(Val::Missing)),
            Field::plain("argv", self.argv.clone().unwrap_or(Val::Missing)),
        ];
        if let Some(p) = parent {
            f.push(Field::plain("parent_cmdline", p.clone()));
        }
        f
    }

    /// `{"type":"exec", ...}`; `parent` is the parent's command line. The reference
    /// [`write_json`](Self::write_json) is held to.
    #[cfg(test)]
    pub fn to_json(
        &self,
        heads: &mut Heads,
        ppid: Option<u32>,
        parent: &Option<Val>,
    ) -> serde_json::Value {
        use crate::model::value::{json_args, Marks};
        use serde_json::Value;
        let mut rec = heads.json(&self.head);
        rec.insert("type".into(), "exec".into());
        rec.insert("call".into(), self.call.into());
        rec.insert("ppid".into(), ppid.into());
        if self.head.ns.is_some() {
            rec.insert("host_ppid".into(), self.ppid.into());
        }
        let mut marks = Marks::default();
        let mut args = json_args(&self.fields(parent), &mut marks);
        if parent.is_none() {
            args.insert("parent_cmdline".into(), Value::Null);
        }
        rec.append(&mut args);
        if self.call == "execveat" {
            rec.insert("dfd".into(), self.dfd.into());
            rec.insert("at_flags".into(), self.at_flags.into());
        }
        rec.insert("ret".into(), self.ret.into());
        rec.insert("errno".into(), errno::of_ret(self.ret).into());
        marks.insert_into(&mut rec);
        Value::Object(rec)
    }

    /// `to_json` (the tests' reference) written straight into `out` (same bytes), without
    /// building a JSON tree or copying the argument lists.
    pub fn write_json(
        &self,
        heads: &mut Heads,
        ppid: Option<u32>,
        parent: Option<&Val>,
        out: &mut Vec<u8>,
        marks: &mut JsonMarks,
    ) {
        heads.write_json_as(&self.head.view(), "exec", out);
        jw::next_key(out, "call");
        jw::str(out, self.call);
        jw::next_key(out, "ppid");
        jw::opt_int(out, ppid);
        if self.head.ns.is_some() {
            jw::next_key(out, "host_ppid");
            jw::int(out, self.ppid);
        }
        for (name, val) in [
            ("filename", self.filename.as_ref()),
            ("argv", self.argv.as_ref()),
            ("parent_cmdline", parent),
        ] {
            jw::next_key(out, name);
            match val {
                Some(v) => v.write_json(out, name, marks),
                None => out.extend_from_slice(b"null"),
            }
        }
        if self.call == "execveat" {
            jw::next_key(out, "dfd");
            jw::int(out, self.dfd);
            jw::next_key(out, "at_flags");
            jw::int(out, self.at_flags);
        }
        jw::next_key(out, "ret");
        jw::int(out, self.ret);
        jw::next_key(out, "errno");
        jw::opt_str(out, errno::of_ret(self.ret).as_deref());
        marks.write_into(out);
        out.push(b'}');
    }

    /// One text line: parent, filename, arguments, then the result.
    pub fn text(
        &self,
        heads: &mut Heads,
        start_ns: u64,
        ppid: Option<u32>,
        parent: &Option<Val>,
    ) -> String {
        let mut fields = vec![Field::plain(
            "ppid",
            match ppid {
                Some(p) => Val::UInt(p.into()),
                None => Val::Name(format!("[{}]", self.ppid)),
            },
        )];
        fields.extend(self.fields(parent));
        let tail = match errno::of_ret(self.ret) {
            Some(e) => format!("ret={} {e}", self.ret),
            None => format!("ret={}", self.ret),
        };
        heads.text_line(&self.head, start_ns, self.call, &fields, &tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event_out::HeadArgs;

    #[test]
    fn written_json_is_the_tree_s_bytes() {
        let ok = ExecEvent {
            head: Head {
                ts_ns: 12,
                pid: 7,
                tid: 7,
                comm: "sh\"x".into(),
                ns: None,
                cgroup_id: 0,
            },
            ret: 0,
            ppid: 6,
            call: "execve",
            dfd: libc::AT_FDCWD,
            at_flags: 0,
            filename: Some(Val::Bytes {
                data: b"/usr/bin/ls".to_vec(),
                truncated: false,
            }),
            argv: Some(Val::List {
                items: vec![(b"ls".to_vec(), false), (vec![b'a', 0xff, b'\n'], true)],
                truncated: true,
            }),
        };
        let failed_at = ExecEvent {
            ret: -2,
            call: "execveat",
            dfd: 3,
            at_flags: libc::AT_EMPTY_PATH as u32,
            filename: Some(Val::Bytes {
                data: vec![b'/', 0xfe],
                truncated: true,
            }),
            ..ok.clone()
        };
        let unread = ExecEvent {
            filename: None,
            argv: None,
            ..ok.clone()
        };
        let parent = Some(Val::List {
            items: vec![(b"sh".to_vec(), false), (b"-c".to_vec(), false)],
            truncated: false,
        });
        let mut heads = Heads::new(&HeadArgs::default());
        for ev in [ok, failed_at, unread] {
            for (ppid, parent) in [(Some(6), &parent), (None, &None)] {
                let tree = serde_json::to_vec(&ev.to_json(&mut heads, ppid, parent)).unwrap();
                let mut written = Vec::new();
                let mut marks = JsonMarks::default();
                ev.write_json(&mut heads, ppid, parent.as_ref(), &mut written, &mut marks);
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&tree)
                );
            }
        }
    }
}
