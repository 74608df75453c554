// SPDX-License-Identifier: Apache-2.0
//! String slots of streamed records (`struct str_hdr` in abi.h, filled by the readers of
//! src/bpf/include/strings.h): their sizes for a string size, reading them back, and the
//! `--string-size` option that sets it.

use clap::Args;

use crate::model::abi::{
    types::str_hdr, ARGV_MAX, STR_FAULT, STR_NOT_READ, STR_SIZE_DEFAULT, STR_SIZE_MAX,
    STR_SIZE_MIN, STR_TRUNCATED,
};
use crate::model::value::Val;

const HDR: usize = std::mem::size_of::<str_hdr>();

/// `--string-size N`, for the commands that read strings.
#[derive(Args, Debug, Clone)]
pub struct StringArgs {
    /// Bytes kept of each string or buffer (16-4096); longer ones are cut and marked
    #[arg(long = "string-size", value_name = "N", default_value_t = STR_SIZE_DEFAULT,
          value_parser = string_size)]
    pub string_size: usize,
}

fn string_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (STR_SIZE_MIN..=STR_SIZE_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "the string size is a number of bytes from {STR_SIZE_MIN} to {STR_SIZE_MAX}"
        )),
    }
}

/// Bytes of one string slot for string size `size`: the header, then room for the
/// string, one byte more (to see whether it went on) and its NUL, rounded up to 8.
pub fn slot_bytes(size: usize) -> usize {
    HDR + (size + 2).next_multiple_of(8)
}

/// Bytes of a list slot (argv): its header and ARGV_MAX string slots.
pub fn list_slot_bytes(size: usize) -> usize {
    HDR + ARGV_MAX * slot_bytes(size)
}

/// One string slot as the kernel filled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'a> {
    pub data: &'a [u8],
    pub flags: u32,
}

impl Slot<'_> {
    /// The bytes as a value, or None when there are none to show (unreadable memory,
    /// an output buffer not filled yet): the caller shows the pointer instead.
    pub fn val(&self) -> Option<Val> {
        if self.flags & (STR_FAULT | STR_NOT_READ) != 0 {
            return None;
        }
        Some(Val::Bytes {
            data: self.data.to_vec(),
            truncated: self.flags & STR_TRUNCATED != 0,
        })
    }
}

fn header(rec: &[u8], off: usize) -> Option<str_hdr> {
    plain::from_bytes::<str_hdr>(rec.get(off..off + HDR)?)
        .ok()
        .copied()
}

/// The string slot at `off` in record `rec`, for string size `size`.
pub fn read(rec: &[u8], off: usize, size: usize) -> Option<Slot<'_>> {
    let h = header(rec, off)?;
    let len = (h.len as usize).min(size);
    Some(Slot {
        data: rec.get(off + HDR..off + HDR + len)?,
        flags: h.flags,
    })
}

/// The list slot at `off`: its items and the list's own flags.
pub fn read_list(rec: &[u8], off: usize, size: usize) -> Option<(Vec<Slot<'_>>, u32)> {
    let h = header(rec, off)?;
    let n = (h.len as usize).min(ARGV_MAX);
    let items = (0..n)
        .map(|k| read(rec, off + HDR + k * slot_bytes(size), size))
        .collect::<Option<Vec<_>>>()?;
    Some((items, h.flags))
}

/// A list as a value (items that could not be read are shown empty and cut), or None
/// when the list itself could not be read.
pub fn list_val(items: &[Slot<'_>], flags: u32) -> Option<Val> {
    if items.is_empty() && flags & STR_FAULT != 0 {
        return None;
    }
    Some(Val::List {
        items: items
            .iter()
            .map(|s| match s.val() {
                Some(Val::Bytes { data, truncated }) => (data, truncated),
                _ => (Vec::new(), true),
            })
            .collect(),
        truncated: flags & (STR_TRUNCATED | STR_FAULT) != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(len: u32, flags: u32, data: &[u8], size: usize) -> Vec<u8> {
        let mut v = vec![0u8; slot_bytes(size)];
        v[..4].copy_from_slice(&len.to_ne_bytes());
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..8 + data.len()].copy_from_slice(data);
        v
    }

    #[test]
    fn sizes() {
        assert_eq!(slot_bytes(256), 8 + 264);
        assert_eq!(slot_bytes(16), 8 + 24);
        assert_eq!(list_slot_bytes(16), 8 + ARGV_MAX * 32);
        assert!(string_size("15").is_err());
        assert!(string_size("5000").is_err());
        assert_eq!(string_size("4096"), Ok(4096));
    }

    #[test]
    fn reading_back() {
        let rec = slot(3, 0, b"a\0b", 16);
        let s = read(&rec, 0, 16).unwrap();
        assert_eq!(s.data, b"a\0b", "NULs in a buffer are data");
        assert_eq!(
            s.val(),
            Some(Val::Bytes {
                data: b"a\0b".to_vec(),
                truncated: false
            })
        );
        let cut = slot(16, STR_TRUNCATED, &[b'x'; 16], 16);
        assert!(matches!(
            read(&cut, 0, 16).unwrap().val(),
            Some(Val::Bytes {
                truncated: true,
                ..
            })
        ));
        assert_eq!(
            read(&slot(0, STR_FAULT, b"", 16), 0, 16).unwrap().val(),
            None
        );
        assert_eq!(
            read(&slot(0, STR_NOT_READ, b"", 16), 0, 16).unwrap().val(),
            None
        );
        // A list of two, cut.
        let mut list = vec![0u8; 8];
        list[..4].copy_from_slice(&2u32.to_ne_bytes());
        list[4..8].copy_from_slice(&STR_TRUNCATED.to_ne_bytes());
        list.extend(slot(2, 0, b"ls", 16));
        list.extend(slot(2, 0, b"-l", 16));
        list.resize(list_slot_bytes(16), 0);
        let (items, flags) = read_list(&list, 0, 16).unwrap();
        assert_eq!(
            list_val(&items, flags),
            Some(Val::List {
                items: vec![(b"ls".to_vec(), false), (b"-l".to_vec(), false)],
                truncated: true
            })
        );
        assert!(read(&rec[..4], 0, 16).is_none());
    }
}
