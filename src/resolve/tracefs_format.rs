//! A tracepoint's record layout, from its tracefs format file
//! (`/sys/kernel/tracing/events/CATEGORY/NAME/format`), and decoding of raw records.
//!
//! Each `field:TYPE NAME; offset:N; size:N; signed:N;` line becomes a [`Field`] with the
//! kind of value it holds. The `signed` flag is taken as the kernel gives it, except where
//! the declared C type says more: syscall tracepoints store every argument in an 8-byte
//! unsigned slot, so an `int dfd` of -100 is decoded from its low 4 bytes as signed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// How a field's bytes are turned into a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer of `width` bytes (1, 2, 4 or 8) at the field's offset.
    Int {
        signed: bool,
        width: usize,
    },
    Bool,
    /// A pointer (shown in hex), not a string.
    Pointer,
    /// `char *`: the string it points at is read by the kernel program.
    StrPtr,
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
    /// Fields whose value is a string the kernel program must fetch.
    pub fn needs_kernel_string(&self) -> bool {
        matches!(self.kind, Kind::StrPtr | Kind::DataLocStr { .. })
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
}

/// Reads and parses the format of `category:name` under the tracefs directory `tracefs`.
pub fn read(tracefs: &Path, category: &str, name: &str) -> Result<Format> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn parse(text: &str) -> Result<Format> {
    let mut name = String::new();
    let mut id = 0;
    let mut fields = Vec::new();
    let mut fixed_size = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("name:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("ID:") {
            id = v.trim().parse().context("bad ID line")?;
        } else if line.starts_with("field:") {
            let f = parse_field(line).with_context(|| format!("bad field line: {line}"))?;
            fixed_size = fixed_size.max(f.offset + f.size);
            if !f.name.starts_with("common_") {
                fields.push(f);
            }
        }
    }
    if fixed_size == 0 {
        bail!("no fields found");
    }
    Ok(Format {
        name,
        id,
        fields,
        fixed_size,
    })
}

/// `field:const char * filename; offset:24; size:8; signed:0;`
fn parse_field(line: &str) -> Result<Field> {
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
    let kind = classify(&c_type, array.as_deref(), size, signed);
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

/// Width in bytes and signedness of the C integer types tracepoints commonly declare.
fn known_int(c_type: &str) -> Option<(usize, bool)> {
    let t = c_type
        .split_whitespace()
        .filter(|w| *w != "const" && *w != "volatile")
        .collect::<Vec<_>>()
        .join(" ");
    Some(match t.as_str() {
        "char" | "signed char" | "s8" | "__s8" | "int8_t" => (1, true),
        "unsigned char" | "u8" | "__u8" | "uint8_t" => (1, false),
        "short" | "short int" | "s16" | "__s16" | "int16_t" => (2, true),
        "unsigned short" | "u16" | "__u16" | "uint16_t" | "umode_t" => (2, false),
        "int" | "s32" | "__s32" | "int32_t" | "pid_t" | "tid_t" => (4, true),
        "unsigned" | "unsigned int" | "u32" | "__u32" | "uint32_t" | "uint" | "uid_t" | "gid_t"
        | "dev_t" => (4, false),
        "long" | "long int" | "long long" | "s64" | "__s64" | "int64_t" | "loff_t" | "ssize_t" => {
            (8, true)
        }
        "unsigned long" | "unsigned long long" | "u64" | "__u64" | "uint64_t" | "size_t" => {
            (8, false)
        }
        _ => return None,
    })
}

fn classify(c_type: &str, array: Option<&str>, size: usize, signed_flag: bool) -> Kind {
    let compact: String = c_type.chars().filter(|c| !c.is_whitespace()).collect();
    let unqualified = compact.replace("const", "").replace("volatile", "");
    if let Some(rest) = c_type.strip_prefix("__data_loc") {
        return data_loc(rest, false);
    }
    if let Some(rest) = c_type.strip_prefix("__rel_loc") {
        return data_loc(rest, true);
    }
    if array.is_some() {
        return match unqualified.as_str() {
            "char" | "unsignedchar" | "signedchar" => Kind::CharArray,
            _ => Kind::Bytes,
        };
    }
    if unqualified == "char*" {
        return Kind::StrPtr;
    }
    if compact.contains('*') {
        return Kind::Pointer;
    }
    if unqualified == "bool" || unqualified == "_Bool" {
        return Kind::Bool;
    }
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Kind::Bytes;
    }
    match known_int(c_type) {
        Some((width, signed)) => Kind::Int {
            signed: signed || signed_flag,
            width: width.min(size),
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

/// Text up to the first NUL, lossily decoded.
pub fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The value of one field of a raw record. `strings` holds the strings the kernel program
/// fetched, in the order of the fields that need one ([`Field::needs_kernel_string`]);
/// `string_index` is this field's index in it.
pub fn decode(field: &Field, raw: &[u8], strings: &[String], string_index: usize) -> Value {
    if field.needs_kernel_string() {
        return strings
            .get(string_index)
            .map(|s| Value::String(s.clone()))
            .unwrap_or(Value::Null);
    }
    let Some(bytes) = raw.get(field.offset..field.offset + field.size) else {
        return Value::Null; // beyond what was copied (records over TP_RAW_MAX)
    };
    match &field.kind {
        Kind::Int { signed, width } => match int_at(bytes, *width, *signed) {
            Some(v) if *signed => json!(v as i64),
            Some(v) => json!(v as u64),
            None => Value::Null,
        },
        Kind::Bool => json!(bytes.iter().any(|&b| b != 0)),
        Kind::Pointer => json!(format!(
            "0x{:x}",
            int_at(bytes, 8.min(field.size), false).unwrap_or(0)
        )),
        Kind::CharArray => json!(c_string(bytes)),
        Kind::Bytes | Kind::StrPtr | Kind::DataLocStr { .. } => json!(hex_bytes(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Format {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/formats")
            .join(name);
        parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn field<'a>(f: &'a Format, name: &str) -> &'a Field {
        f.fields.iter().find(|x| x.name == name).unwrap()
    }

    #[test]
    fn syscall_enter_openat() {
        let f = fixture("syscalls_sys_enter_openat");
        assert_eq!(f.name, "sys_enter_openat");
        assert_eq!(f.fixed_size, 48);
        let names: Vec<_> = f.fields.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["__syscall_nr", "dfd", "filename", "flags", "mode"]);
        // An `int` in an 8-byte unsigned slot is still a signed int.
        assert_eq!(
            field(&f, "dfd").kind,
            Kind::Int {
                signed: true,
                width: 4
            }
        );
        assert_eq!(field(&f, "filename").kind, Kind::StrPtr);
        assert_eq!(field(&f, "filename").offset, 24);
        assert_eq!(
            field(&f, "mode").kind,
            Kind::Int {
                signed: false,
                width: 2
            }
        );
    }

    #[test]
    fn data_loc_and_char_arrays() {
        let exec = fixture("sched_sched_process_exec");
        assert_eq!(
            field(&exec, "filename").kind,
            Kind::DataLocStr { relative: false }
        );
        assert_eq!(
            field(&exec, "pid").kind,
            Kind::Int {
                signed: true,
                width: 4
            }
        );
        let sw = fixture("sched_sched_switch");
        let prev = field(&sw, "prev_comm");
        assert_eq!(
            (prev.kind.clone(), prev.offset, prev.size),
            (Kind::CharArray, 8, 16)
        );
        assert_eq!(
            field(&sw, "prev_state").kind,
            Kind::Int {
                signed: true,
                width: 8
            }
        );
        assert_eq!(sw.fixed_size, 64);
    }

    #[test]
    fn exit_ret_is_signed_long() {
        let f = fixture("syscalls_sys_exit_openat");
        assert_eq!(
            field(&f, "ret").kind,
            Kind::Int {
                signed: true,
                width: 8
            }
        );
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
            classify("const char *const *", None, 8, false),
            Kind::Pointer
        );
        assert_eq!(
            classify("__rel_loc char[]", None, 4, false),
            Kind::DataLocStr { relative: true }
        );
        assert_eq!(
            classify("__data_loc unsigned long[]", None, 4, false),
            Kind::Bytes
        );
    }

    #[test]
    fn decoding_values() {
        let f = fixture("syscalls_sys_enter_openat");
        let mut raw = vec![0u8; 48];
        raw[16..24].copy_from_slice(&(-100i64 as u64).to_ne_bytes());
        raw[32..40].copy_from_slice(&0o101u64.to_ne_bytes());
        raw[40..48].copy_from_slice(&0o600u64.to_ne_bytes());
        let strings = vec!["/tmp/x".to_string()];
        assert_eq!(decode(field(&f, "dfd"), &raw, &strings, 0), json!(-100));
        assert_eq!(
            decode(field(&f, "filename"), &raw, &strings, 0),
            json!("/tmp/x")
        );
        assert_eq!(decode(field(&f, "flags"), &raw, &strings, 0), json!(0o101));
        assert_eq!(decode(field(&f, "mode"), &raw, &strings, 0), json!(0o600));
        // A field beyond the copied bytes has no value.
        assert_eq!(
            decode(field(&f, "mode"), &raw[..40], &strings, 0),
            Value::Null
        );
        assert_eq!(int_at(&[0xff], 1, true), Some(-1));
        assert_eq!(int_at(&[0xff], 1, false), Some(255));
    }
}
