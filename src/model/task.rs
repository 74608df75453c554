// SPDX-License-Identifier: Apache-2.0
//! Who did something: a task's ids and name as the kernel reported them. Decoded from a
//! kernel task header in core::pidns, which knows the ids btrace's pid namespace shows.

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
