// SPDX-License-Identifier: Apache-2.0
//! Where a uprobe may go in a user-space file: at the start of an instruction of
//! executable code. The kernel writes a breakpoint over the byte at the probed address of
//! the file's page, shared by every process mapping it: inside an instruction, that
//! instruction becomes another one (or garbage) in every process running the code, traced
//! or not, which then crashes or computes something else; outside code, the probe never
//! fires. So an offset or address is checked here before anything is attached:
//!
//! - it is in a section of executable code (`SHF_EXECINSTR`; without section headers, a
//!   segment with execute permission);
//! - `SYMBOL+OFF` is inside the symbol (below its size);
//! - it starts an instruction: the function holding it (its symbol, else its unwind entry
//!   in `.eh_frame`, which stripped files keep) is decoded from its first byte (x86-64 by
//!   the iced-x86 decoder; arm64 instructions are 4 bytes, 4-aligned).

use anyhow::{bail, Result};
use object::{
    Architecture, Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionFlags, SectionKind,
    SegmentFlags, SymbolKind,
};

/// How the probed address was named, for the messages.
#[derive(Clone, Copy, Debug)]
pub enum Spot<'s> {
    /// `SYMBOL+plus` (plus 0: the function's entry); `size` the symbol's (0: unknown).
    Symbol {
        name: &'s str,
        start: u64,
        size: u64,
        plus: u64,
    },
    /// An address as given (0x...).
    Address(u64),
}

impl Spot<'_> {
    fn addr(&self) -> u64 {
        match *self {
            Spot::Symbol { start, plus, .. } => start + plus,
            Spot::Address(a) => a,
        }
    }

    /// The spot as the user wrote it.
    fn text(&self) -> String {
        match *self {
            Spot::Symbol { name, plus: 0, .. } => name.to_string(),
            Spot::Symbol { name, plus, .. } => format!("{name}+{plus}"),
            Spot::Address(a) => format!("{a:#x}"),
        }
    }
}

/// A function's code: its name (None: known only from its unwind entry) and bounds.
struct Code {
    name: Option<String>,
    start: u64,
    end: u64,
}

/// What the decoder found at the probed address.
#[derive(Debug, PartialEq, Eq)]
enum Around {
    /// The address starts an instruction.
    Boundary,
    /// The address is inside the instruction starting at `start`, `len` bytes long.
    Inside { start: u64, len: u64 },
}

/// Checks that a uprobe at `spot` in `obj` (the file `path`) is at the start of an
/// instruction of executable code; with `check_boundary` false (--unsafe-offset), only
/// that it is in executable code and inside its symbol. One line saying why otherwise.
pub fn check_site(
    obj: &object::File<'_>,
    path: &str,
    spot: Spot<'_>,
    check_boundary: bool,
) -> Result<()> {
    let addr = spot.addr();
    let shown = spot.text();
    let named = match spot {
        Spot::Address(_) => String::new(),
        _ => format!(" ({addr:#x})"),
    };
    if let Spot::Symbol {
        name, size, plus, ..
    } = spot
    {
        if size > 0 && plus >= size {
            bail!("{shown} is past the end of {name} ({size} bytes): give an offset below {size}");
        }
    }
    if let Err(why) = in_code(obj, addr) {
        bail!(
            "{shown}{named} is not in executable code of {path} ({why}): a uprobe there would never fire; give a function (FUNC or FUNC+OFF) or an address inside one"
        );
    }
    if !check_boundary || plus_is_zero(&spot) || addr == obj.entry() {
        return Ok(());
    }
    let Some(code) = code_at(obj, spot) else {
        if function_symbols(obj).any(|s| s.address() == addr) {
            return Ok(()); // a function's entry, of a symbol without a size
        }
        bail!(
            "{shown}{named} is in no function btrace can decode (no symbol with a size nor unwind entry in {path} covers it), so it cannot check that an instruction starts there (a uprobe inside an instruction crashes every process running it); give a function's entry or FUNC+OFF, or --unsafe-offset if you know that an instruction starts there"
        );
    };
    if addr == code.start {
        return Ok(());
    }
    let bytes = code_bytes(obj, &code, addr);
    let around = bytes
        .ok_or_else(|| "its bytes are not in the file".to_string())
        .and_then(|b| around(obj.architecture(), b, code.start, addr));
    // How an address inside `code` is written: relative to the function's name, the way
    // the user gave the spot.
    let rel = |a: u64| match (&code.name, spot) {
        (Some(n), Spot::Symbol { .. }) => format!("{n}+{}", a - code.start),
        (Some(n), Spot::Address(_)) => format!("{a:#x} ({n}+{})", a - code.start),
        (None, _) => format!("{a:#x}"),
    };
    let func = code
        .name
        .clone()
        .unwrap_or_else(|| format!("the function at {:#x}", code.start));
    match around {
        Ok(Around::Boundary) => Ok(()),
        Ok(Around::Inside { start, len }) => {
            let mut near = vec![rel(start)];
            if start + len < code.end {
                near.push(rel(start + len));
            }
            let kind = if matches!(spot, Spot::Symbol { .. }) {
                "offsets"
            } else {
                "addresses"
            };
            bail!(
                "{} is inside the instruction at {} ({len} bytes): a uprobe there would corrupt it and crash every process running {func}; valid {kind} near it: {}",
                rel(addr),
                rel(start),
                near.join(", ")
            )
        }
        Err(why) => bail!(
            "cannot check that an instruction of {func} starts at {shown}{named} ({why}); give the function's entry, or --unsafe-offset if you know that an instruction starts there"
        ),
    }
}

fn plus_is_zero(spot: &Spot<'_>) -> bool {
    matches!(spot, Spot::Symbol { plus: 0, .. })
}

/// Ok when `addr` is in executable code; else where it is instead.
fn in_code(obj: &object::File<'_>, addr: u64) -> Result<(), String> {
    let mut sections = obj.sections().filter(|s| s.address() != 0).peekable();
    if sections.peek().is_some() {
        let Some(s) = sections.find(|s| s.address() <= addr && addr - s.address() < s.size())
        else {
            return Err("in no section of the file".into());
        };
        let exec = matches!(s.flags(), SectionFlags::Elf { sh_flags }
            if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0);
        if exec && s.kind() != SectionKind::UninitializedData {
            return Ok(());
        }
        let name = s.name().unwrap_or("?");
        return Err(format!("in section {name}, which is not code"));
    }
    // No section headers: the loadable segments' permissions.
    let seg = obj
        .segments()
        .find(|s| s.address() <= addr && addr - s.address() < s.file_range().1);
    match seg.map(|s| s.flags()) {
        Some(SegmentFlags::Elf { p_flags }) if p_flags & object::elf::PF_X != 0 => Ok(()),
        Some(_) => Err("in a segment without execute permission".into()),
        None => Err("in no loaded segment".into()),
    }
}

/// The function holding the probed address: the symbol given (when it has a size), else
/// a function symbol covering the address, else the unwind entry covering it.
fn code_at(obj: &object::File<'_>, spot: Spot<'_>) -> Option<Code> {
    if let Spot::Symbol {
        name, start, size, ..
    } = spot
    {
        if size > 0 {
            return Some(Code {
                name: Some(name.to_string()),
                start,
                end: start + size,
            });
        }
    }
    let addr = spot.addr();
    let functions = || function_symbols(obj);
    if let Some(s) = functions().find(|s| s.address() <= addr && addr - s.address() < s.size()) {
        return Some(Code {
            name: s.name().ok().map(str::to_string),
            start: s.address(),
            end: s.address() + s.size(),
        });
    }
    let (start, end) = unwind_entry(obj, addr)?;
    let name = functions()
        .find(|s| s.address() == start)
        .and_then(|s| s.name().ok().map(str::to_string));
    Some(Code { name, start, end })
}

/// The function symbols a file defines (its symbol table's and its dynamic ones).
fn function_symbols<'a, 'd>(
    obj: &'a object::File<'d>,
) -> impl Iterator<Item = object::Symbol<'d, 'a>> + 'a {
    obj.symbols()
        .chain(obj.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
}

/// The range of the `.eh_frame` entry (FDE) covering `addr`: the bounds of a function even
/// in a stripped file (unwinding needs them).
fn unwind_entry(obj: &object::File<'_>, addr: u64) -> Option<(u64, u64)> {
    use gimli::UnwindSection;
    let sec = obj.section_by_name(".eh_frame")?;
    let data = sec.data().ok()?;
    let endian = if obj.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let mut eh = gimli::EhFrame::new(data, endian);
    eh.set_address_size(if obj.is_64() { 8 } else { 4 });
    let mut bases = gimli::BaseAddresses::default().set_eh_frame(sec.address());
    if let Some(text) = obj.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = obj.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }
    let mut entries = eh.entries(&bases);
    while let Ok(Some(entry)) = entries.next() {
        let gimli::CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let Ok(fde) = partial.parse(|s, b, o| s.cie_from_offset(b, o)) else {
            continue;
        };
        let (start, len) = (fde.initial_address(), fde.len());
        if start <= addr && addr - start < len {
            return Some((start, start + len));
        }
    }
    None
}

/// The bytes of `code` from its start up to its end (or its section's), which must hold
/// `addr`.
fn code_bytes<'d>(obj: &object::File<'d>, code: &Code, addr: u64) -> Option<&'d [u8]> {
    let sec = obj
        .sections()
        .find(|s| s.address() <= code.start && code.start - s.address() < s.size())?;
    let data = sec.data().ok()?;
    let from = (code.start - sec.address()) as usize;
    let to = ((code.end - sec.address()) as usize).min(data.len());
    let bytes = data.get(from..to)?;
    (addr - code.start < bytes.len() as u64).then_some(bytes)
}

/// Whether `addr` starts an instruction of the code `bytes` (which start at `start`, at an
/// instruction), by the file's architecture; Err: why that cannot be told.
fn around(arch: Architecture, bytes: &[u8], start: u64, addr: u64) -> Result<Around, String> {
    match arch {
        // A64: every instruction is 4 bytes, 4-aligned.
        Architecture::Aarch64 => Ok(fixed_width(addr, 4)),
        #[cfg(target_arch = "x86_64")]
        Architecture::X86_64 => decode_x86(64, bytes, start, addr),
        #[cfg(target_arch = "x86_64")]
        Architecture::I386 => decode_x86(32, bytes, start, addr),
        other => {
            let _ = (bytes, start);
            Err(format!("btrace cannot decode {other:?} instructions"))
        }
    }
}

fn fixed_width(addr: u64, width: u64) -> Around {
    match addr % width {
        0 => Around::Boundary,
        r => Around::Inside {
            start: addr - r,
            len: width,
        },
    }
}

/// Decodes x86 code from its first instruction up to the one holding `addr`.
#[cfg(target_arch = "x86_64")]
fn decode_x86(bitness: u32, bytes: &[u8], start: u64, addr: u64) -> Result<Around, String> {
    use iced_x86::{Decoder, DecoderOptions, Instruction};
    let mut decoder = Decoder::with_ip(bitness, bytes, start, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return Err(format!(
                "no valid instruction at {:#x}, before it",
                insn.ip()
            ));
        }
        if insn.ip() == addr {
            return Ok(Around::Boundary);
        }
        if addr < insn.next_ip() {
            return Ok(Around::Inside {
                start: insn.ip(),
                len: insn.len() as u64,
            });
        }
    }
    Err("the function's bytes end before it".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_instructions_are_four_bytes() {
        assert_eq!(fixed_width(0x1000, 4), Around::Boundary);
        assert_eq!(
            fixed_width(0x1006, 4),
            Around::Inside {
                start: 0x1004,
                len: 4
            }
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_boundaries_from_the_first_instruction() {
        // endbr64 (4); push rbp (1); mov rbp, rsp (3); mov eax, 1 (5); pop rbp (1); ret (1)
        let code = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0xb8, 1, 0, 0, 0, 0x5d, 0xc3,
        ];
        let at = |a: u64| decode_x86(64, &code, 0x1000, 0x1000 + a);
        for b in [0, 4, 5, 8, 13, 14] {
            assert_eq!(at(b), Ok(Around::Boundary), "{b}");
        }
        assert_eq!(
            at(2),
            Ok(Around::Inside {
                start: 0x1000,
                len: 4
            })
        );
        assert_eq!(
            at(10),
            Ok(Around::Inside {
                start: 0x1008,
                len: 5
            })
        );
        assert!(at(15).is_err());
        // Garbage before the address: not told.
        assert!(decode_x86(64, &[0x0f, 0xff, 0xff, 0xff, 0xff], 0, 3).is_err());
    }
}
