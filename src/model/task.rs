//! Who did something: a task's ids and name as the kernel reported them.

use crate::core::abi::types;

/// Who and when, decoded from an event's task header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
}

impl Head {
    pub fn from_hdr(h: &types::task_hdr) -> Head {
        Head {
            ts_ns: h.ts_ns,
            pid: h.pid,
            tid: h.tid,
            comm: comm_text(&h.comm),
        }
    }
}

/// A comm from the kernel (C chars, NUL-terminated) as text.
pub fn comm_text(chars: &[std::ffi::c_char]) -> String {
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
