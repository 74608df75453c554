// SPDX-License-Identifier: Apache-2.0
//! USDT probes (SystemTap SDT notes, `.note.stapsdt`) of an ELF file: provider, name,
//! address and argument specs (`-4@%edi 8@-16(%rbp)` on x86-64, `-4@x0 -8@[sp, 40]` on
//! arm64: size, signedness, location), for `btrace usdt --list` and for typing the
//! arguments libbpf decodes.

use object::{Object, ObjectSection};

use super::elf::ElfFile;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtProbe {
    pub provider: String,
    pub name: String,
    pub addr: u64,
    /// The semaphore's address (0: none).
    pub semaphore: u64,
    /// Argument specs as written in the note.
    pub args: Vec<String>,
}

impl UsdtProbe {
    /// Each argument's (signed, size in bytes), from its spec (`-4@...`: signed, 4 bytes).
    pub fn arg_types(&self) -> Vec<(bool, usize)> {
        self.args
            .iter()
            .map(|a| {
                let size = a.split('@').next().unwrap_or("8");
                let signed = size.starts_with('-');
                (signed, size.trim_start_matches('-').parse().unwrap_or(8))
            })
            .collect()
    }
}

/// NT_STAPSDT.
const NT_STAPSDT: u32 = 3;

/// Every USDT probe of the file, in note order.
pub fn probes(file: &ElfFile) -> Vec<UsdtProbe> {
    let obj = file.object();
    let little = obj.is_little_endian();
    let Some(data) = obj
        .section_by_name(".note.stapsdt")
        .and_then(|s| s.data().ok())
    else {
        return Vec::new();
    };
    parse_notes(data, little)
}

/// The `size`-byte unsigned word at `at` in `b`, in the file's byte order (`little`).
fn word_at(b: &[u8], at: usize, size: usize, little: bool) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(size)?)?;
    let big_end_first = |v: u64, byte: &u8| v << 8 | u64::from(*byte);
    Some(if little {
        bytes.iter().rev().fold(0, big_end_first)
    } else {
        bytes.iter().fold(0, big_end_first)
    })
}

fn parse_notes(mut data: &[u8], little: bool) -> Vec<UsdtProbe> {
    let u32_at = |b: &[u8], at: usize| word_at(b, at, 4, little).map(|v| v as u32);
    let u64_at = |b: &[u8], at: usize| word_at(b, at, 8, little);
    let mut out = Vec::new();
    while data.len() >= 12 {
        let (Some(namesz), Some(descsz), Some(ty)) =
            (u32_at(data, 0), u32_at(data, 4), u32_at(data, 8))
        else {
            break;
        };
        let name_end = 12 + (namesz as usize).next_multiple_of(4);
        let desc_end = name_end + (descsz as usize).next_multiple_of(4);
        let (Some(name), Some(desc)) = (
            data.get(12..12 + namesz as usize),
            data.get(name_end..name_end + descsz as usize),
        ) else {
            break;
        };
        if ty == NT_STAPSDT && name.starts_with(b"stapsdt") && desc.len() > 24 {
            let mut strs = desc[24..]
                .split(|b| *b == 0)
                .map(|s| String::from_utf8_lossy(s).into_owned());
            let provider = strs.next().unwrap_or_default();
            let pname = strs.next().unwrap_or_default();
            let args = strs.next().unwrap_or_default();
            out.push(UsdtProbe {
                provider,
                name: pname,
                addr: u64_at(desc, 0).unwrap_or(0),
                semaphore: u64_at(desc, 16).unwrap_or(0),
                args: split_arg_specs(&args),
            });
        }
        if desc_end > data.len() {
            break;
        }
        data = &data[desc_end..];
    }
    out
}

/// The argument specs of a note, separated by blanks; arm64's memory operands hold one
/// (`-8@[sp, 40]`), so a blank inside brackets does not end a spec.
fn split_arg_specs(specs: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in specs.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_note() {
        let mut n = Vec::new();
        n.extend_from_slice(&8u32.to_le_bytes());
        let desc: Vec<u8> = [
            &0x1234u64.to_le_bytes()[..],
            &0u64.to_le_bytes(),
            &0u64.to_le_bytes(),
            b"prov\0tick\0-8@%rax 4@%edx\0",
        ]
        .concat();
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(b"stapsdt\0");
        n.extend_from_slice(&desc);
        n.resize(n.len().next_multiple_of(4), 0);
        let p = parse_notes(&n, true);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].provider.as_str(), p[0].name.as_str()),
            ("prov", "tick")
        );
        assert_eq!(p[0].addr, 0x1234);
        assert_eq!(p[0].arg_types(), [(true, 8), (false, 4)]);
    }

    #[test]
    fn words_in_either_byte_order() {
        let b = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];
        assert_eq!(word_at(&b, 0, 4, true), Some(0x7856_3412));
        assert_eq!(word_at(&b, 0, 4, false), Some(0x1234_5678));
        assert_eq!(word_at(&b, 0, 8, true), Some(u64::from_le_bytes(b)));
        assert_eq!(word_at(&b, 0, 8, false), Some(u64::from_be_bytes(b)));
        assert_eq!(word_at(&b, 6, 4, true), None);
    }

    #[test]
    fn arm64_memory_operands_are_one_spec() {
        assert_eq!(
            split_arg_specs("-8@[sp, 40] 4@x1  -8@[x29, -16] 8@[sp]"),
            ["-8@[sp, 40]", "4@x1", "-8@[x29, -16]", "8@[sp]"]
        );
        assert_eq!(
            split_arg_specs("-4@%edi 8@-16(%rbp)"),
            ["-4@%edi", "8@-16(%rbp)"]
        );
        assert!(split_arg_specs("").is_empty());
    }
}
