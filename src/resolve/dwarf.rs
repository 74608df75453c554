// SPDX-License-Identifier: Apache-2.0
//! A user-space function's prototype from DWARF (the file's own `.debug_info`, or a
//! separate debug file found by build id under /usr/lib/debug/.build-id): argument names
//! and kinds, as [`super::btf`] gives them for kernel functions, so that `uprobe` prints
//! `a=-3 b=42 s="x"` instead of six registers. DWARF parsing by the `gimli` crate.

use std::borrow::Cow;
use std::path::PathBuf;

use gimli::{AttributeValue, EndianSlice, RunTimeEndian, UnitRef};
use object::{Object, ObjectSection};

use super::btf::{Arg, Proto, ValueKind};
use super::elf::ElfFile;

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// The prototype of the function at `addr` (or named `name`) in `file`, or None when
/// neither the file nor a debug file for it carries DWARF for it.
pub fn proto(file: &ElfFile, name: &str, addr: u64) -> Option<Proto> {
    let own = proto_in(&file.data, name, addr);
    if own.is_some() {
        return own;
    }
    let debug = debug_file(file)?;
    let data = std::fs::read(debug).ok()?;
    proto_in(&data, name, addr)
}

/// /usr/lib/debug/.build-id/ab/cdef....debug, for a file with a GNU build id.
fn debug_file(file: &ElfFile) -> Option<PathBuf> {
    let id = file.build_id()?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    if hex.len() < 3 {
        return None;
    }
    let p = PathBuf::from(format!(
        "/usr/lib/debug/.build-id/{}/{}.debug",
        &hex[..2],
        &hex[2..]
    ));
    p.exists().then_some(p)
}

fn proto_in(data: &[u8], name: &str, addr: u64) -> Option<Proto> {
    let obj = object::File::parse(data).ok()?;
    obj.section_by_name(".debug_info")?;
    let endian = if obj.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(obj
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok()?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, endian));
    let mut units = dwarf.units();
    let mut by_name = None;
    while let Ok(Some(header)) = units.next() {
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        let u = unit.unit_ref(&dwarf);
        let mut entries = u.entries();
        while let Ok(Some(e)) = entries.next_dfs() {
            if e.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let low = e
                .attr_value(gimli::DW_AT_low_pc)
                .and_then(|v| u.attr_address(v).ok().flatten());
            let Some(low) = low else {
                continue; // a declaration, or inlined only
            };
            let fname = e
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| u.attr_string(v).ok())
                .map(|s| s.to_string_lossy().into_owned());
            if low == addr {
                return subprogram(u, e.offset(), name);
            }
            if by_name.is_none() && fname.as_deref() == Some(name) {
                by_name = subprogram(u, e.offset(), name);
            }
        }
    }
    by_name
}

/// A subprogram's parameters and return type.
fn subprogram(u: UnitRef<'_, R<'_>>, off: gimli::UnitOffset, name: &str) -> Option<Proto> {
    let mut tree = u.entries_tree(Some(off)).ok()?;
    let root = tree.root().ok()?;
    let ret = match root.entry().attr_value(gimli::DW_AT_type) {
        Some(t) => kind_of(u, t, 0),
        None => ValueKind::Void,
    };
    let mut args = Vec::new();
    let mut children = root.children();
    while let Ok(Some(child)) = children.next() {
        let e = child.entry();
        if e.tag() != gimli::DW_TAG_formal_parameter {
            continue;
        }
        let pname = e
            .attr_value(gimli::DW_AT_name)
            .and_then(|v| u.attr_string(v).ok())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("arg{}", args.len()));
        let kind = e
            .attr_value(gimli::DW_AT_type)
            .map_or(ValueKind::Unsupported("unusual type"), |t| kind_of(u, t, 0));
        args.push(Arg { name: pname, kind });
    }
    Some(Proto {
        func: name.to_string(),
        args,
        ret,
    })
}

/// How a value of DWARF type `t` is shown, through typedefs and qualifiers.
fn kind_of(u: UnitRef<'_, R<'_>>, t: AttributeValue<R<'_>>, depth: u32) -> ValueKind {
    let AttributeValue::UnitRef(off) = t else {
        return ValueKind::Unsupported("unusual type");
    };
    let Ok(e) = u.entry(off) else {
        return ValueKind::Unsupported("unusual type");
    };
    if depth > 16 {
        return ValueKind::Unsupported("unusual type");
    }
    let size = e
        .attr_value(gimli::DW_AT_byte_size)
        .and_then(|v| v.udata_value())
        .unwrap_or(8) as usize;
    match e.tag() {
        gimli::DW_TAG_typedef
        | gimli::DW_TAG_const_type
        | gimli::DW_TAG_volatile_type
        | gimli::DW_TAG_restrict_type
        | gimli::DW_TAG_atomic_type => match e.attr_value(gimli::DW_AT_type) {
            Some(next) => kind_of(u, next, depth + 1),
            None => ValueKind::Void,
        },
        gimli::DW_TAG_base_type => {
            let enc = e.attr_value(gimli::DW_AT_encoding);
            match enc {
                Some(AttributeValue::Encoding(gimli::DW_ATE_boolean)) => ValueKind::Bool,
                Some(AttributeValue::Encoding(
                    gimli::DW_ATE_signed | gimli::DW_ATE_signed_char,
                )) => ValueKind::Int {
                    signed: true,
                    width: size,
                },
                Some(AttributeValue::Encoding(
                    gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char,
                )) => ValueKind::Int {
                    signed: false,
                    width: size,
                },
                Some(AttributeValue::Encoding(gimli::DW_ATE_float)) => {
                    ValueKind::Unsupported("floating point")
                }
                _ => ValueKind::Unsupported("unusual type"),
            }
        }
        gimli::DW_TAG_enumeration_type => ValueKind::Int {
            signed: false,
            width: size,
        },
        gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type => {
            match e
                .attr_value(gimli::DW_AT_type)
                .and_then(|p| char_pointee(u, p))
            {
                Some(constant) => ValueKind::Str { constant },
                None => ValueKind::Pointer,
            }
        }
        gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type | gimli::DW_TAG_class_type => {
            ValueKind::Unsupported("struct passed by value")
        }
        _ => ValueKind::Unsupported("unusual type"),
    }
}

/// Some(constant) when a pointer's target is a (const) char, looking through typedefs
/// and qualifiers.
fn char_pointee<'a>(u: UnitRef<'_, R<'a>>, mut t: AttributeValue<R<'a>>) -> Option<bool> {
    let mut constant = false;
    for _ in 0..16 {
        let AttributeValue::UnitRef(off) = t else {
            return None;
        };
        let e = u.entry(off).ok()?;
        match e.tag() {
            gimli::DW_TAG_const_type => constant = true,
            gimli::DW_TAG_typedef | gimli::DW_TAG_volatile_type | gimli::DW_TAG_restrict_type => {}
            gimli::DW_TAG_base_type => {
                let size = e.attr_value(gimli::DW_AT_byte_size)?.udata_value()?;
                let enc = e.attr_value(gimli::DW_AT_encoding)?;
                let is_char = matches!(
                    enc,
                    AttributeValue::Encoding(
                        gimli::DW_ATE_signed_char | gimli::DW_ATE_unsigned_char
                    )
                );
                return (size == 1 && is_char).then_some(constant);
            }
            _ => return None,
        }
        t = e.attr_value(gimli::DW_AT_type)?;
    }
    None
}
