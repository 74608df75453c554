// SPDX-License-Identifier: Apache-2.0
//! A tracepoint's record layout, from its tracefs format file
//! (`/sys/kernel/tracing/events/CATEGORY/NAME/format`), and decoding of raw records.
//!
//! Each `field:TYPE NAME; offset:N; size:N; signed:N;` line becomes a [`Field`] with the
//! kind of value it holds. An integer's width and signedness come from its declared C
//! type, resolved through the kernel's BTF and every typedef (`off_t` -> `long`): syscall
//! tracepoints store every argument in an 8-byte slot marked `signed:0`, so the flag alone
//! would show `lseek(fd, -5, ...)`'s offset as 18446744073709551611. The flag is used
//! when the type is unknown. Pointers with a length field beside them are buffers
//! ([`super::buffers`]).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::buffers::{self, Direction, Shape};
use super::ctype::{unqualified, KernelTypes};
use crate::model::bytes;
use crate::model::value::Val;

/// How a field's bytes are turned into a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer of `width` bytes (1, 2, 4 or 8) at the field's offset.
    Int {
        signed: bool,
        width: usize,
    },
    Bool,
    /// A pointer (shown in hex), not a string; also an output buffer, not filled yet.
    Pointer,
    /// `char *`: the C string it points at is read by the kernel program.
    StrPtr,
    /// A pointer to bytes the traced code reads, with their count in field `len` (an
    /// index into [`Format::fields`]): exactly that many are read (at most the string size).
    Buffer {
        len: usize,
    },
    /// `char **` (execve's argv): the list of strings is read by the kernel program.
    StrList,
    /// `char name[N]`: the characters are in the record.
    CharArray,
    /// `__data_loc char[]` / `__rel_loc char[]`: the string follows the fixed record.
    DataLocStr {
        relative: bool,
    },
    /// Anything else (other arrays, dynamic arrays of non-chars): shown as hex bytes.
    Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub c_type: String,
    pub offset: usize,
    pub size: usize,
    pub kind: Kind,
}

impl Field {
    /// Fields whose value the kernel program reads into a slot of the record.
    pub fn needs_slot(&self) -> bool {
        matches!(
            self.kind,
            Kind::StrPtr | Kind::DataLocStr { .. } | Kind::Buffer { .. } | Kind::StrList
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: u32,
    /// Every field but the `common_*` header ones, in record order.
    pub fields: Vec<Field>,
    /// Bytes of the fixed part of the record (header included).
    pub fixed_size: usize,
    /// The `print fmt:` line, as the kernel gives it (empty if there is none).
    pub print_fmt: String,
}

/// Reads and parses the format of `category:name` under the tracefs directory `tracefs`.
pub fn read(tracefs: &Path, category: &str, name: &str, types: &dyn KernelTypes) -> Result<Format> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, types).with_context(|| format!("parsing {}", path.display()))
}

pub fn parse(text: &str, types: &dyn KernelTypes) -> Result<Format> {
    let mut name = String::new();
    let mut id = 0;
    let mut fields = Vec::new();
    let mut fixed_size = 0;
    let mut print_fmt = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("name:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("ID:") {
            id = v.trim().parse().context("bad ID line")?;
        } else if line.starts_with("field:") {
            let f = parse_field(line, types).with_context(|| format!("bad field line: {line}"))?;
            fixed_size = fixed_size.max(f.offset + f.size);
            if !f.name.starts_with("common_") {
                fields.push(f);
            }
        } else if line.starts_with("print fmt:") {
            print_fmt = line.to_string();
        }
    }
    if fixed_size == 0 {
        bail!("no fields found");
    }
    pair_buffers(&name, &mut fields);
    Ok(Format {
        name,
        id,
        fields,
        fixed_size,
        print_fmt,
    })
}

/// Pointers with a length field beside them become buffers: input buffers are read for
/// exactly their length, output buffers (not filled at entry) stay pointers.
fn pair_buffers(event: &str, fields: &mut [Field]) {
    let owner = event.strip_prefix("sys_enter_").unwrap_or(event);
    let shapes: Vec<(&str, Shape)> = fields
        .iter()
        .map(|f| {
            let shape = match f.kind {
                Kind::StrPtr => Shape::CharPtr {
                    constant: pointee_is_const(&f.c_type),
                },
                Kind::Pointer => Shape::Ptr,
                Kind::Int { .. } => Shape::Int,
                _ => Shape::Other,
            };
            (f.name.as_str(), shape)
        })
        .collect();
    let pairs = buffers::pairs(owner, &shapes);
    for p in pairs {
        fields[p.buf].kind = match p.dir {
            Direction::In => Kind::Buffer { len: p.len },
            Direction::Out => Kind::Pointer,
        };
    }
}

/// `const char *` (the pointed-to bytes are const), not `char *const`.
fn pointee_is_const(c_type: &str) -> bool {
    c_type
        .split('*')
        .next()
        .is_some_and(|before| before.split_whitespace().any(|w| w == "const"))
}

/// `field:const char * filename; offset:24; size:8; signed:0;`
fn parse_field(line: &str, types: &dyn KernelTypes) -> Result<Field> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, false);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once(':').context("no ':'")?;
        match key.trim() {
            "field" => decl = Some(val.trim()),
            "offset" => offset = Some(val.trim().parse::<usize>()?),
            "size" => size = Some(val.trim().parse::<usize>()?),
            "signed" => signed = val.trim() == "1",
            _ => {}
        }
    }
    let decl = decl.context("no field declaration")?;
    let (offset, size) = (offset.context("no offset")?, size.context("no size")?);
    let (c_type, name, array) = split_declaration(decl)?;
    let kind = classify(&c_type, array.as_deref(), size, signed, types);
    Ok(Field {
        name,
        c_type,
        offset,
        size,
        kind,
    })
}

/// `const char * filename` -> ("const char *", "filename", None);
/// `char prev_comm[16]` -> ("char", "prev_comm", Some("16"));
/// `__data_loc char[] name` -> ("__data_loc char[]", "name", None).
fn split_declaration(decl: &str) -> Result<(String, String, Option<String>)> {
    let decl = decl.trim();
    let split = decl
        .rfind(|c: char| c.is_whitespace() || c == '*')
        .context("no field name")?;
    let (ty, mut name) = (decl[..=split].trim(), decl[split + 1..].trim());
    let mut array = None;
    if let Some(open) = name.find('[') {
        array = Some(name[open + 1..name.len().saturating_sub(1)].to_string());
        name = &name[..open];
    }
    if name.is_empty() {
        bail!("no field name in '{decl}'");
    }
    Ok((ty.to_string(), name.to_string(), array))
}

fn classify(
    c_type: &str,
    array: Option<&str>,
    size: usize,
    signed_flag: bool,
    types: &dyn KernelTypes,
) -> Kind {
    if let Some(rest) = c_type.strip_prefix("__data_loc") {
        return data_loc(rest, false);
    }
    if let Some(rest) = c_type.strip_prefix("__rel_loc") {
        return data_loc(rest, true);
    }
    let t = unqualified(c_type);
    if array.is_some() {
        return match t.as_str() {
            "char" | "unsigned char" | "signed char" => Kind::CharArray,
            _ => Kind::Bytes,
        };
    }
    match t.as_str() {
        "char *" => return Kind::StrPtr,
        "char * *" => return Kind::StrList,
        "bool" | "_Bool" => return Kind::Bool,
        _ if t.contains('*') => return Kind::Pointer,
        _ => {}
    }
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Kind::Bytes;
    }
    match types.int_type(c_type) {
        Some(it) => Kind::Int {
            signed: it.signed,
            width: it.width.min(size),
        },
        None => Kind::Int {
            signed: signed_flag,
            width: size,
        },
    }
}

fn data_loc(rest: &str, relative: bool) -> Kind {
    let elem: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
    let elem = elem.replace("const", "");
    if elem == "char[]" || elem == "unsignedchar[]" {
        Kind::DataLocStr { relative }
    } else {
        Kind::Bytes
    }
}

/// An integer of `width` bytes at the start of `b` (native endianness).
pub fn int_at(b: &[u8], width: usize, signed: bool) -> Option<i128> {
    let b = b.get(..width)?;
    let mut buf = [0u8; 8];
    buf[..width].copy_from_slice(b);
    let raw = u64::from_ne_bytes(buf);
    if !signed {
        return Some(raw as i128);
    }
    let shift = 64 - 8 * width as u32;
    Some((((raw << shift) as i64) >> shift) as i128)
}

/// The bytes of `field` in a raw record, or None beyond what was copied.
pub fn field_bytes<'a>(field: &Field, raw: &'a [u8]) -> Option<&'a [u8]> {
    raw.get(field.offset..field.offset + field.size)
}

/// The value of a field held in the record itself (not one read into a slot: those are
/// decoded from their slot by the tracer). Pointers, and slot fields here, are hex.
pub fn decode(field: &Field, raw: &[u8]) -> Val {
    let Some(bytes) = field_bytes(field, raw) else {
        return Val::Missing; // beyond what was copied (records over TP_RAW_MAX)
    };
    match &field.kind {
        Kind::Int { signed, width } => match int_at(bytes, *width, *signed) {
            Some(v) if *signed => Val::Int(v as i64),
            Some(v) => Val::UInt(v as u64),
            None => Val::Missing,
        },
        Kind::Bool => Val::Bool(bytes.iter().any(|&b| b != 0)),
        Kind::Pointer | Kind::StrPtr | Kind::Buffer { .. } | Kind::StrList => {
            Val::Hex(int_at(bytes, 8.min(field.size), false).unwrap_or(0) as u64)
        }
        Kind::CharArray => Val::Bytes {
            data: bytes::until_nul(bytes).to_vec(),
            truncated: false,
        },
        Kind::Bytes | Kind::DataLocStr { .. } => Val::HexBytes(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::btf::BtfTypes;
    use crate::resolve::ctype::BaseTypes;

    fn fixture_with(name: &str, types: &dyn KernelTypes) -> Format {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/formats")
            .join(name);
        parse(&std::fs::read_to_string(path).unwrap(), types).unwrap()
    }

    fn fixture(name: &str) -> Format {
        fixture_with(name, &BaseTypes)
    }

    /// The running kernel's types, when it has BTF (the integration tests need it anyway).
    fn kernel_types() -> Option<BtfTypes> {
        Path::new("/sys/kernel/btf/vmlinux")
            .exists()
            .then(|| BtfTypes::vmlinux().unwrap())
    }

    fn field<'a>(f: &'a Format, name: &str) -> &'a Field {
        f.fields.iter().find(|x| x.name == name).unwrap()
    }

    fn int(signed: bool, width: usize) -> Kind {
        Kind::Int { signed, width }
    }

    #[test]
    fn syscall_enter_openat() {
        let f = fixture("syscalls_sys_enter_openat");
        assert_eq!(f.name, "sys_enter_openat");
        assert_eq!(f.fixed_size, 48);
        let names: Vec<_> = f.fields.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["__syscall_nr", "dfd", "filename", "flags", "mode"]);
        // An `int` in an 8-byte unsigned slot is still a signed int.
        assert_eq!(field(&f, "dfd").kind, int(true, 4));
        assert_eq!(field(&f, "filename").kind, Kind::StrPtr);
        assert_eq!(field(&f, "filename").offset, 24);
        // Without BTF a typedef falls back to the format: 8 unsigned bytes.
        assert_eq!(field(&f, "mode").kind, int(false, 8));
        assert!(f.print_fmt.starts_with("print fmt: \"dfd: "));
    }

    /// Typedefs through the kernel's BTF: off_t, clockid_t, umode_t, size_t.
    #[test]
    fn typedefs_from_btf() {
        let Some(types) = kernel_types() else { return };
        let f = fixture_with("syscalls_sys_enter_openat", &types);
        assert_eq!(field(&f, "mode").kind, int(false, 2), "umode_t");
        let f = fixture_with("syscalls_sys_enter_lseek", &types);
        assert_eq!(field(&f, "offset").kind, int(true, 8), "off_t is a long");
        assert_eq!(field(&f, "whence").kind, int(false, 4));
        let f = fixture_with("syscalls_sys_enter_timer_create", &types);
        assert_eq!(field(&f, "which_clock").kind, int(true, 4), "clockid_t");
        let f = fixture_with("syscalls_sys_enter_write", &types);
        assert_eq!(field(&f, "count").kind, int(false, 8), "size_t");
        let f = fixture_with("skb_kfree_skb", &types);
        assert_eq!(field(&f, "reason").kind, int(false, 4), "an enum");
        let f = fixture_with("block_block_rq_issue", &types);
        assert_eq!(field(&f, "dev").kind, int(false, 4), "dev_t");
        assert_eq!(field(&f, "sector").kind, int(false, 8), "sector_t");
        for t in ["key_serial_t", "mqd_t", "timer_t", "pid_t"] {
            assert_eq!(
                types.int_type(t),
                Some(crate::resolve::ctype::IntType {
                    width: 4,
                    signed: true
                }),
                "{t}"
            );
        }
        assert_eq!(types.int_type("struct file"), None);
        assert_eq!(types.int_type("no_such_type_t"), None);
        let names = types.enum_names("enum skb_drop_reason").unwrap();
        assert!(names
            .iter()
            .any(|(v, n)| *v == 2 && n == "SKB_DROP_REASON_NOT_SPECIFIED"));
    }

    #[test]
    fn buffers_strings_and_lists() {
        let w = fixture("syscalls_sys_enter_write");
        let count = w.fields.iter().position(|f| f.name == "count").unwrap();
        assert_eq!(field(&w, "buf").kind, Kind::Buffer { len: count });
        // read's buffer is not filled at entry: a pointer.
        let r = fixture("syscalls_sys_enter_read");
        assert_eq!(field(&r, "buf").kind, Kind::Pointer);
        let e = fixture("syscalls_sys_enter_execve");
        assert_eq!(field(&e, "filename").kind, Kind::StrPtr);
        assert_eq!(field(&e, "argv").kind, Kind::StrList);
        assert_eq!(field(&e, "envp").kind, Kind::StrList);
        assert!(field(&e, "argv").needs_slot());
    }

    #[test]
    fn data_loc_and_char_arrays() {
        let exec = fixture("sched_sched_process_exec");
        assert_eq!(
            field(&exec, "filename").kind,
            Kind::DataLocStr { relative: false }
        );
        assert_eq!(field(&exec, "pid").kind, int(true, 4));
        let sw = fixture("sched_sched_switch");
        let prev = field(&sw, "prev_comm");
        assert_eq!(
            (prev.kind.clone(), prev.offset, prev.size),
            (Kind::CharArray, 8, 16)
        );
        assert_eq!(field(&sw, "prev_state").kind, int(true, 8));
        assert_eq!(sw.fixed_size, 64);
        let s = fixture("sock_inet_sock_set_state");
        assert_eq!(field(&s, "saddr").kind, Kind::Bytes);
        assert_eq!(field(&s, "oldstate").kind, int(true, 4));
    }

    #[test]
    fn exit_ret_is_signed_long() {
        let f = fixture("syscalls_sys_exit_openat");
        assert_eq!(field(&f, "ret").kind, int(true, 8));
    }

    #[test]
    fn declarations() {
        assert_eq!(
            split_declaration("const char * filename").unwrap(),
            ("const char *".into(), "filename".into(), None)
        );
        assert_eq!(
            split_declaration("char prev_comm[16]").unwrap(),
            ("char".into(), "prev_comm".into(), Some("16".into()))
        );
        assert_eq!(
            split_declaration("const char *const * argv").unwrap().1,
            "argv"
        );
        assert_eq!(
            classify("const char *const *", None, 8, false, &BaseTypes),
            Kind::StrList
        );
        assert_eq!(
            classify("struct sigevent *", None, 8, false, &BaseTypes),
            Kind::Pointer
        );
        assert_eq!(
            classify("__rel_loc char[]", None, 4, false, &BaseTypes),
            Kind::DataLocStr { relative: true }
        );
        assert_eq!(
            classify("__data_loc unsigned long[]", None, 4, false, &BaseTypes),
            Kind::Bytes
        );
        assert!(pointee_is_const("const char *"));
        assert!(!pointee_is_const("char *"));
    }

    #[test]
    fn decoding_values() {
        let f = fixture("syscalls_sys_enter_openat");
        let mut raw = vec![0u8; 48];
        raw[16..24].copy_from_slice(&(-100i64 as u64).to_ne_bytes());
        raw[24..32].copy_from_slice(&0x7fff_1000u64.to_ne_bytes());
        raw[32..40].copy_from_slice(&0o101u64.to_ne_bytes());
        raw[40..48].copy_from_slice(&0o600u64.to_ne_bytes());
        assert_eq!(decode(field(&f, "dfd"), &raw), Val::Int(-100));
        assert_eq!(decode(field(&f, "filename"), &raw), Val::Hex(0x7fff_1000));
        assert_eq!(decode(field(&f, "flags"), &raw), Val::Int(0o101));
        assert_eq!(decode(field(&f, "mode"), &raw), Val::UInt(0o600));
        // A field beyond the copied bytes has no value.
        assert_eq!(decode(field(&f, "mode"), &raw[..40]), Val::Missing);
        assert_eq!(int_at(&[0xff], 1, true), Some(-1));
        assert_eq!(int_at(&[0xff], 1, false), Some(255));
    }
}
