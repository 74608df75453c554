// SPDX-License-Identifier: Apache-2.0
//! JSON written straight into a byte buffer, for records printed at millions per second:
//! no `serde_json::Value` built per record. The bytes are exactly those serde_json writes
//! for the same value (compact form): strings escape `"`, `\`, and the control characters
//! below 0x20 (`\b \t \n \f \r` by name, the others as `\u00xx`), nothing else; integers
//! in decimal. The tests hold it to serde_json's output.

/// What each byte below 0x80 becomes in a JSON string: 0 for itself, else the letter
/// after the backslash (`u` for `\u00xx`).
const ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `s` as a quoted JSON string.
pub fn str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = if c < 0x80 { ESCAPE[c as usize] } else { 0 };
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// `"k":`
pub fn key(out: &mut Vec<u8>, k: &str) {
    str(out, k);
    out.push(b':');
}

/// `,"k":`
pub fn next_key(out: &mut Vec<u8>, k: &str) {
    out.push(b',');
    key(out, k);
}

/// Any integer, in decimal.
pub fn int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A string or null.
pub fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A number or null.
pub fn opt_int<I: itoa::Integer>(out: &mut Vec<u8>, v: Option<I>) {
    match v {
        Some(v) => int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A float or null: serde_json's own formatting of it (a non-finite float is null, as
/// serde_json writes it), so the bytes stay those of the JSON tree.
pub fn opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// Strings as an array.
pub fn str_array(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        str(out, s);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::Value::String(s.into())).unwrap()
    }

    #[test]
    fn strings_as_serde_writes_them() {
        let mut every_ascii = String::new();
        for c in 0u8..0x80 {
            every_ascii.push(c as char);
            let one = (c as char).to_string();
            let mut out = Vec::new();
            str(&mut out, &one);
            assert_eq!(out, serde(&one), "byte {c:#x}");
        }
        for s in [
            every_ascii.as_str(),
            "",
            "plain",
            "é\u{80}\u{9f}\u{2028}\u{fffd}😀",
            "a\\xff\\\\b",
            "\u{7f}tail\"",
        ] {
            let mut out = Vec::new();
            str(&mut out, s);
            assert_eq!(out, serde(s), "{s:?}");
        }
    }

    #[test]
    fn integers_as_serde_writes_them() {
        for v in [0i64, -1, 42, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            int(&mut out, v);
            assert_eq!(out, serde_json::to_vec(&v).unwrap());
        }
        let mut out = Vec::new();
        int(&mut out, u64::MAX);
        assert_eq!(out, serde_json::to_vec(&u64::MAX).unwrap());
    }
}
