// SPDX-License-Identifier: Apache-2.0
//! One finished open call as user space sees it: decoded from the kernel's record, with
//! flags and errors by name, as JSON and as text.

use crate::core::event_out::Heads;
use crate::core::slots;
use crate::model::abi::types::task_hdr;
use crate::model::errno;
use crate::model::json_write as jw;
use crate::model::task::Head;
use crate::model::value::{Field, JsonMarks, Val};

use super::skel::types::{self, open_call};

#[derive(Clone, Debug, PartialEq)]
pub struct OpenEvent {
    pub head: Head,
    /// The file descriptor, or -errno.
    pub ret: i64,
    pub flags: u64,
    pub mode: u64,
    pub dfd: i32,
    /// open, openat, openat2 or creat.
    pub call: &'static str,
    /// The path's bytes (None when its memory could not be read).
    pub path: Option<Val>,
}

fn call_name(c: u32) -> &'static str {
    match open_call(c) {
        open_call::OPEN_CALL_OPEN => "open",
        open_call::OPEN_CALL_OPENAT => "openat",
        open_call::OPEN_CALL_OPENAT2 => "openat2",
        open_call::OPEN_CALL_CREAT => "creat",
        _ => "?",
    }
}

/// Decodes one ring-buffer record (None if it is too short).
pub fn decode(data: &[u8], str_size: usize) -> Option<OpenEvent> {
    let fixed = std::mem::size_of::<types::open_event>();
    let ev = plain::from_bytes::<types::open_event>(data.get(..fixed)?).ok()?;
    let hdr_len = std::mem::size_of::<task_hdr>();
    let head = Head::from_hdr(plain::from_bytes::<task_hdr>(data.get(..hdr_len)?).ok()?);
    Some(OpenEvent {
        head,
        ret: ev.ret,
        flags: ev.flags,
        mode: ev.mode,
        dfd: ev.dfd,
        call: call_name(ev.call),
        path: slots::read(data, fixed, str_size)?.val(),
    })
}

/// Open flags by name, as this architecture numbers them (the C library's constants):
/// the access mode first (`O_RDONLY`), then every flag set, then what no name covers in
/// hex: `O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC`.
pub fn flags_text(flags: u64) -> String {
    let mut parts = vec![match flags & libc::O_ACCMODE as u64 {
        0 => "O_RDONLY".to_string(),
        1 => "O_WRONLY".to_string(),
        2 => "O_RDWR".to_string(),
        m => format!("O_ACCMODE({m})"),
    }];
    let mut left = flags & !(libc::O_ACCMODE as u64);
    // Flags made of two bits come first, so their bits are not named twice.
    let named: [(libc::c_int, &str); 17] = [
        (libc::O_TMPFILE, "O_TMPFILE"),
        (libc::O_SYNC, "O_SYNC"),
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_ASYNC, "O_ASYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_LARGEFILE, "O_LARGEFILE"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ];
    for (bits, name) in named {
        let bits = bits as u64;
        if bits != 0 && left & bits == bits {
            parts.push(name.to_string());
            left &= !bits;
        }
    }
    if left != 0 {
        parts.push(format!("{left:#x}"));
    }
    parts.join("|")
}

/// The mode, in octal, when the call may create a file (O_CREAT, O_TMPFILE).
pub fn mode_text(flags: u64, mode: u64) -> Option<String> {
    let tmpfile = libc::O_TMPFILE as u64;
    let creates = flags & libc::O_CREAT as u64 != 0 || flags & tmpfile == tmpfile;
    creates.then(|| format!("{mode:04o}"))
}

impl OpenEvent {
    fn path_val(&self) -> Val {
        self.path.clone().unwrap_or(Val::Missing)
    }

    /// `{"type":"open", ...}`: the reference [`write_json`](Self::write_json) is held to.
    #[cfg(test)]
    pub fn to_json(&self, heads: &mut Heads) -> serde_json::Value {
        use crate::model::value::{json_args, Marks};
        use serde_json::{Map, Value};
        let mut rec = heads.json(&self.head);
        rec.insert("type".into(), "open".into());
        rec.insert("call".into(), self.call.into());
        let mut marks = Marks::default();
        let fields = [Field::plain("path", self.path_val())];
        let mut m: Map<String, Value> = json_args(&fields, &mut marks);
        rec.append(&mut m);
        rec.insert("dfd".into(), self.dfd.into());
        rec.insert("flags".into(), flags_text(self.flags).into());
        rec.insert("flags_raw".into(), self.flags.into());
        rec.insert("mode".into(), mode_text(self.flags, self.mode).into());
        rec.insert("ret".into(), self.ret.into());
        let err = errno::of_ret(self.ret);
        rec.insert(
            "fd".into(),
            if err.is_none() {
                self.ret.into()
            } else {
                Value::Null
            },
        );
        rec.insert("errno".into(), err.into());
        marks.insert_into(&mut rec);
        Value::Object(rec)
    }

    /// `to_json` (the tests' reference) written straight into `out` (same bytes), without
    /// building a JSON tree: opens come by the hundred thousand a second on a busy host.
    pub fn write_json(&self, heads: &mut Heads, out: &mut Vec<u8>, marks: &mut JsonMarks) {
        heads.write_json_as(&self.head.view(), "open", out);
        jw::next_key(out, "call");
        jw::str(out, self.call);
        jw::next_key(out, "path");
        match &self.path {
            Some(v) => v.write_json(out, "path", marks),
            None => out.extend_from_slice(b"null"),
        }
        jw::next_key(out, "dfd");
        jw::int(out, self.dfd);
        jw::next_key(out, "flags");
        jw::str(out, &flags_text(self.flags));
        jw::next_key(out, "flags_raw");
        jw::int(out, self.flags);
        jw::next_key(out, "mode");
        jw::opt_str(out, mode_text(self.flags, self.mode).as_deref());
        jw::next_key(out, "ret");
        jw::int(out, self.ret);
        let err = errno::of_ret(self.ret);
        jw::next_key(out, "fd");
        match err {
            None => jw::int(out, self.ret),
            Some(_) => out.extend_from_slice(b"null"),
        }
        jw::next_key(out, "errno");
        jw::opt_str(out, err.as_deref());
        marks.write_into(out);
        out.push(b'}');
    }

    /// One text line: path, flags, mode where relevant, then the fd or the error.
    pub fn text(&self, heads: &mut Heads, start_ns: u64) -> String {
        let mut fields = vec![Field::plain("path", self.path_val())];
        if self.dfd != libc::AT_FDCWD {
            fields.push(Field::plain("dfd", Val::Int(self.dfd.into())));
        }
        fields.push(Field::plain("flags", Val::Name(flags_text(self.flags))));
        if let Some(m) = mode_text(self.flags, self.mode) {
            fields.push(Field::plain("mode", Val::Name(m)));
        }
        let tail = match errno::of_ret(self.ret) {
            Some(e) => format!("ret={} {e}", self.ret),
            None => format!("fd={}", self.ret),
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
        let head = Head {
            ts_ns: 12,
            pid: 7,
            tid: 8,
            comm: "cat\"x".into(),
            ns: None,
            cgroup_id: 0,
        };
        let ok = OpenEvent {
            head: head.clone(),
            ret: 3,
            flags: (libc::O_WRONLY | libc::O_CREAT) as u64,
            mode: 0o600,
            dfd: libc::AT_FDCWD,
            call: "openat",
            path: Some(Val::Bytes {
                data: b"/tmp/a\nb".to_vec(),
                truncated: true,
            }),
        };
        let failed = OpenEvent {
            ret: -2,
            flags: 0,
            path: Some(Val::Bytes {
                data: vec![b'/', 0xff, b'x'],
                truncated: false,
            }),
            ..ok.clone()
        };
        let unread = OpenEvent {
            path: None,
            ..ok.clone()
        };
        let mut heads = Heads::new(&HeadArgs::default());
        for ev in [ok, failed, unread] {
            let tree = serde_json::to_vec(&ev.to_json(&mut heads)).unwrap();
            let mut written = Vec::new();
            ev.write_json(&mut heads, &mut written, &mut JsonMarks::default());
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&tree)
            );
        }
    }

    #[test]
    fn flags_by_name() {
        assert_eq!(flags_text(libc::O_CLOEXEC as u64), "O_RDONLY|O_CLOEXEC");
        assert_eq!(
            flags_text((libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64),
            "O_WRONLY|O_CREAT|O_TRUNC"
        );
        assert_eq!(
            flags_text(libc::O_RDWR as u64 | (1 << 40)),
            "O_RDWR|0x10000000000"
        );
        assert_eq!(
            flags_text((libc::O_RDWR | libc::O_TMPFILE) as u64),
            "O_RDWR|O_TMPFILE"
        );
        assert_eq!(
            flags_text((libc::O_RDONLY | libc::O_DIRECTORY) as u64),
            "O_RDONLY|O_DIRECTORY"
        );
        assert_eq!(flags_text(libc::O_SYNC as u64), "O_RDONLY|O_SYNC");
        assert_eq!(
            mode_text(libc::O_CREAT as u64, 0o644).as_deref(),
            Some("0644")
        );
        assert_eq!(mode_text(0, 0o644), None);
    }
}
