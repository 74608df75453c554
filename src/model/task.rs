// SPDX-License-Identifier: Apache-2.0
//! Who did something: a task's ids and name as the kernel reported them.

use crate::model::abi::types;

/// Who and when, decoded from an event's task header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub ts_ns: u64,
    /// Host ids (what the kernel programs see).
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// When btrace runs in a pid namespace of its own: the ids that namespace gives the
    /// task (None for a task outside it). Printed instead of the host ids.
    pub ns: Option<NsIds>,
    /// The task's cgroup v2 id (0: none).
    pub cgroup_id: u64,
}

/// A task's ids in btrace's pid namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsIds {
    pub pid: Option<u32>,
    pub tid: Option<u32>,
}

impl Head {
    /// When btrace runs in a pid namespace of its own, the header's namespace ids (0:
    /// outside it) are the ones to print.
    pub fn from_hdr(h: &types::task_hdr) -> Head {
        let r = HeadRef::from_hdr(h);
        Head {
            ts_ns: r.ts_ns,
            pid: r.pid,
            tid: r.tid,
            comm: r.comm.into_owned(),
            ns: r.ns,
            cgroup_id: r.cgroup_id,
        }
    }
}

/// [`Head`] read in place from a task header, for records printed without an allocation:
/// the comm borrowed when it is valid UTF-8 (it nearly always is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadRef<'a> {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: std::borrow::Cow<'a, str>,
    pub ns: Option<NsIds>,
    pub cgroup_id: u64,
}

impl<'a> HeadRef<'a> {
    /// As [`Head::from_hdr`].
    pub fn from_hdr(h: &'a types::task_hdr) -> HeadRef<'a> {
        let in_ns = crate::core::pidns::in_child_ns();
        let nonzero = |v: u32| (v != 0).then_some(v);
        // SAFETY: c_char and u8 have the same size and alignment, and every bit pattern is
        // valid for both; the slice covers exactly the comm array, borrowed from `h`.
        let chars =
            unsafe { std::slice::from_raw_parts(h.comm.as_ptr() as *const u8, h.comm.len()) };
        let len = chars.iter().position(|&c| c == 0).unwrap_or(chars.len());
        HeadRef {
            ts_ns: h.ts_ns,
            pid: h.pid,
            tid: h.tid,
            comm: String::from_utf8_lossy(&chars[..len]),
            ns: in_ns.then(|| NsIds {
                pid: nonzero(h.ns_pid),
                tid: nonzero(h.ns_tid),
            }),
            cgroup_id: h.cgroup_id,
        }
    }
}

impl Head {
    /// The same, borrowed.
    pub fn view(&self) -> HeadRef<'_> {
        HeadRef {
            ts_ns: self.ts_ns,
            pid: self.pid,
            tid: self.tid,
            comm: std::borrow::Cow::Borrowed(&self.comm),
            ns: self.ns,
            cgroup_id: self.cgroup_id,
        }
    }
}

/// A comm from the kernel (C chars, NUL-terminated) as text. `i8`, not `c_char`: the
/// skeletons give the BPF target's char (signed) as `i8` on every host, while `c_char` is
/// `u8` on aarch64.
pub fn comm_text(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm_text(&[b'a' as _, b'b' as _, 0, b'c' as _]), "ab");
    }
}
