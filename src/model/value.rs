// SPDX-License-Identifier: Apache-2.0
//! A decoded value of an event's field or argument, and how it is shown: as `name=value`
//! text, or in a JSON record's `args` with the record-level lists that say how to read
//! it (`raw`, `escaped`, `truncated`).

use serde_json::{Map, Value};

use super::bytes;
use super::json_write as jw;

/// One value, typed for showing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    Int(i64),
    UInt(u64),
    Bool(bool),
    /// A pointer or address: `0x...` (a JSON string).
    Hex(u64),
    /// The bytes of a string or buffer, and whether they were cut.
    Bytes {
        data: Vec<u8>,
        truncated: bool,
    },
    /// A list of strings (execve's argv): each with its cut mark, and whether the list was
    /// cut.
    List {
        items: Vec<(Vec<u8>, bool)>,
        truncated: bool,
    },
    /// What the kernel calls the value (an enumerator, flags, a symbol, an address, a
    /// device number): bare in text, a string in JSON.
    Name(String),
    /// An array that is not text, as hex digits.
    HexBytes(Vec<u8>),
    /// Why there is no value (`<not read>`).
    Note(String),
    /// Not in the record (beyond the bytes copied).
    Missing,
}

/// A named value; `raw` holds the number it was decoded from when it is shown by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub val: Val,
    pub raw: Option<Val>,
}

impl<'a> Field<'a> {
    pub fn plain(name: &'a str, val: Val) -> Self {
        Field {
            name,
            val,
            raw: None,
        }
    }
}

impl Val {
    /// The value as text (`name=` not included).
    pub fn text(&self) -> String {
        match self {
            Val::Int(v) => v.to_string(),
            Val::UInt(v) => v.to_string(),
            Val::Bool(v) => v.to_string(),
            Val::Hex(v) => format!("0x{v:x}"),
            Val::Bytes { data, truncated } => bytes::quoted_c(data, *truncated),
            Val::List { items, truncated } => {
                let mut parts: Vec<String> = items
                    .iter()
                    .map(|(b, cut)| bytes::quoted_c(b, *cut))
                    .collect();
                if *truncated {
                    parts.push("...".into());
                }
                format!("[{}]", parts.join(", "))
            }
            Val::Name(s) | Val::Note(s) => bytes::escape_text(s).into_owned(),
            Val::HexBytes(b) => bytes::hex(b),
            Val::Missing => "?".into(),
        }
    }

    /// The value as JSON; the names of what had to be escaped or was cut are added to
    /// `marks` (`name`, or `name[i]` for a list item).
    pub fn json(&self, name: &str, marks: &mut Marks) -> Value {
        match self {
            Val::Int(v) => (*v).into(),
            Val::UInt(v) => (*v).into(),
            Val::Bool(v) => (*v).into(),
            Val::Hex(v) => format!("0x{v:x}").into(),
            Val::Bytes { data, truncated } => {
                let (s, escaped) = bytes::json_string(data);
                if escaped {
                    marks.escaped.push(name.to_string());
                }
                if *truncated {
                    marks.truncated.push(name.to_string());
                }
                s.into()
            }
            Val::List { items, truncated } => {
                if *truncated {
                    marks.truncated.push(name.to_string());
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, (b, cut)) in items.iter().enumerate() {
                    let (s, escaped) = bytes::json_string(b);
                    if escaped {
                        marks.escaped.push(format!("{name}[{i}]"));
                    }
                    if *cut {
                        marks.truncated.push(format!("{name}[{i}]"));
                    }
                    out.push(Value::String(s));
                }
                Value::Array(out)
            }
            Val::Name(s) | Val::Note(s) => s.clone().into(),
            Val::HexBytes(b) => bytes::hex(b).into(),
            Val::Missing => Value::Null,
        }
    }
}

impl Val {
    /// [`text`](Self::text), appended to `out`.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        match self {
            Val::Int(v) => jw::int(out, *v),
            Val::UInt(v) => jw::int(out, *v),
            Val::Name(s) | Val::Note(s) => out.extend_from_slice(s.as_bytes()),
            Val::Missing => out.push(b'?'),
            v => out.extend_from_slice(v.text().as_bytes()),
        }
    }

    /// [`json`](Self::json), written into `out`, the marks into `marks`.
    pub fn write_json(&self, out: &mut Vec<u8>, name: &str, marks: &mut JsonMarks) {
        match self {
            Val::Int(v) => jw::int(out, *v),
            Val::UInt(v) => jw::int(out, *v),
            Val::Bool(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
            Val::Hex(v) => {
                use std::io::Write;
                let _ = write!(out, "\"0x{v:x}\"");
            }
            Val::Bytes { data, truncated } => {
                match std::str::from_utf8(data) {
                    Ok(s) => jw::str(out, s),
                    Err(_) => {
                        let (s, _) = bytes::json_string(data);
                        marks.escaped.push(name.to_string());
                        jw::str(out, &s);
                    }
                }
                if *truncated {
                    marks.truncated.push(name.to_string());
                }
            }
            Val::List { items, truncated } => {
                if *truncated {
                    marks.truncated.push(name.to_string());
                }
                out.push(b'[');
                for (i, (b, cut)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let (s, escaped) = bytes::json_string(b);
                    if escaped {
                        marks.escaped.push(format!("{name}[{i}]"));
                    }
                    if *cut {
                        marks.truncated.push(format!("{name}[{i}]"));
                    }
                    jw::str(out, &s);
                }
                out.push(b']');
            }
            Val::Name(s) | Val::Note(s) => jw::str(out, s),
            Val::HexBytes(b) => jw::str(out, &bytes::hex(b)),
            Val::Missing => out.extend_from_slice(b"null"),
        }
    }
}

/// [`Marks`] for records written straight into a buffer: the same lists, kept between
/// records (cleared by [`write_into`](Self::write_into)) so a record without any costs
/// no allocation.
#[derive(Default, Debug)]
pub struct JsonMarks {
    pub escaped: Vec<String>,
    pub truncated: Vec<String>,
    /// The members of the `raw` object, written.
    pub raw: Vec<u8>,
}

impl JsonMarks {
    /// The number behind a value shown by name, as a member of `raw`.
    pub fn add_raw(&mut self, name: &str, raw: &Val) {
        if !self.raw.is_empty() {
            self.raw.push(b',');
        }
        jw::key(&mut self.raw, name);
        raw.write_json(&mut self.raw, name, &mut JsonMarks::default());
    }

    /// Appends the non-empty lists as members of the record being written (`,"raw":{..}`
    /// ...), in [`Marks::insert_into`]'s order, and clears them.
    pub fn write_into(&mut self, out: &mut Vec<u8>) {
        if !self.raw.is_empty() {
            jw::next_key(out, "raw");
            out.push(b'{');
            out.extend_from_slice(&self.raw);
            out.push(b'}');
            self.raw.clear();
        }
        if !self.escaped.is_empty() {
            jw::next_key(out, "escaped");
            jw::str_array(out, &self.escaped);
            self.escaped.clear();
        }
        if !self.truncated.is_empty() {
            jw::next_key(out, "truncated");
            jw::str_array(out, &self.truncated);
            self.truncated.clear();
        }
    }
}

/// [`json_args`] written into `out` as the `args` object (`{...}`).
pub fn write_json_args(fields: &[Field<'_>], out: &mut Vec<u8>, marks: &mut JsonMarks) {
    out.push(b'{');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        jw::key(out, f.name);
        f.val.write_json(out, f.name, marks);
        if let Some(raw) = &f.raw {
            marks.add_raw(f.name, raw);
        }
    }
    out.push(b'}');
}

/// [`text_args`] appended to `out`.
pub fn write_text_args(fields: &[Field<'_>], out: &mut Vec<u8>) {
    for f in fields {
        out.push(b' ');
        out.extend_from_slice(f.name.as_bytes());
        out.push(b'=');
        f.val.write_text(out);
    }
}

/// What a record says about its values besides them.
#[derive(Default, Debug)]
pub struct Marks {
    /// Values in the escaped form (not valid UTF-8): `\\` and `\xNN` to undo.
    pub escaped: Vec<String>,
    /// Values cut at the string size (or lists cut at their item limit).
    pub truncated: Vec<String>,
    /// The numbers behind values shown by name.
    pub raw: Map<String, Value>,
}

impl Marks {
    /// Adds the non-empty lists to a record.
    pub fn insert_into(self, rec: &mut Map<String, Value>) {
        if !self.raw.is_empty() {
            rec.insert("raw".into(), Value::Object(self.raw));
        }
        let list = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        if !self.escaped.is_empty() {
            rec.insert("escaped".into(), list(self.escaped));
        }
        if !self.truncated.is_empty() {
            rec.insert("truncated".into(), list(self.truncated));
        }
    }
}

/// The fields as a JSON `args` object, and the marks that go beside it in the record.
pub fn json_args(fields: &[Field<'_>], marks: &mut Marks) -> Map<String, Value> {
    let mut args = Map::new();
    for f in fields {
        let v = f.val.json(f.name, marks);
        if let Some(raw) = &f.raw {
            let r = raw.json(f.name, &mut Marks::default());
            marks.raw.insert(f.name.to_string(), r);
        }
        args.insert(f.name.to_string(), v);
    }
    args
}

/// The fields as ` name=value` pairs.
pub fn text_args(fields: &[Field<'_>], line: &mut String) {
    for f in fields {
        line.push(' ');
        line.push_str(f.name);
        line.push('=');
        line.push_str(&f.val.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_forms() {
        let b = |d: &[u8], t| Val::Bytes {
            data: d.to_vec(),
            truncated: t,
        };
        assert_eq!(b(b"a\0\xff", false).text(), r#""a\x00\xff""#);
        assert_eq!(b(b"abc", true).text(), r#""abc"..."#);
        assert_eq!(Val::Hex(0xff00).text(), "0xff00");
        assert_eq!(Val::Int(-5).text(), "-5");
        assert_eq!(Val::Name("TCP_CLOSE".into()).text(), "TCP_CLOSE");
        // A string that looks like a number is still quoted.
        assert_eq!(b(b"0x10", false).text(), "\"0x10\"");
        let list = Val::List {
            items: vec![(b"ls".to_vec(), false), (b"-l\tx".to_vec(), true)],
            truncated: true,
        };
        assert_eq!(list.text(), r#"["ls", "-l\tx"..., ...]"#);
    }

    #[test]
    fn json_with_marks() {
        let fields = [
            Field::plain(
                "buf",
                Val::Bytes {
                    data: b"\xff\\".to_vec(),
                    truncated: true,
                },
            ),
            Field {
                name: "newstate",
                val: Val::Name("TCP_CLOSE".into()),
                raw: Some(Val::Int(7)),
            },
            Field::plain(
                "argv",
                Val::List {
                    items: vec![(b"a".to_vec(), false), (b"\xfe".to_vec(), true)],
                    truncated: false,
                },
            ),
        ];
        let mut marks = Marks::default();
        let args = json_args(&fields, &mut marks);
        let mut rec = Map::new();
        rec.insert("args".into(), Value::Object(args));
        marks.insert_into(&mut rec);
        assert_eq!(
            Value::Object(rec.clone()),
            json!({
                "args": {"buf": "\\xff\\\\", "newstate": "TCP_CLOSE", "argv": ["a", "\\xfe"]},
                "raw": {"newstate": 7},
                "escaped": ["buf", "argv[1]"],
                "truncated": ["buf", "argv[1]"],
            })
        );
        // Written straight, the same bytes.
        let mut out = br#"{"args":"#.to_vec();
        let mut jm = JsonMarks::default();
        write_json_args(&fields, &mut out, &mut jm);
        jm.write_into(&mut out);
        out.push(b'}');
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&Value::Object(rec)).unwrap()
        );
        assert!(jm.raw.is_empty() && jm.escaped.is_empty() && jm.truncated.is_empty());
        let mut text = Vec::new();
        write_text_args(&fields, &mut text);
        let mut line = String::new();
        text_args(&fields, &mut line);
        assert_eq!(String::from_utf8(text).unwrap(), line);
        // Nothing to say: no lists at all.
        let mut rec = Map::new();
        Marks::default().insert_into(&mut rec);
        assert!(rec.is_empty());
    }
}
