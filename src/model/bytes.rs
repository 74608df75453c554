// SPDX-License-Identifier: Apache-2.0
//! Bytes as btrace shows them: strings and buffers read from a traced program may hold any
//! byte (NULs, invalid UTF-8), and what is printed must give those bytes back exactly.
//!
//! - Text mode, always C-style: printable ASCII and valid non-control UTF-8 as they are;
//!   `\\`, `\"`, `\n`, `\t`, `\r`; every other byte (controls, DEL, C1 controls, invalid
//!   UTF-8) as `\xNN` with two hex digits. [`unescape_c`] reverses it.
//! - JSON: bytes that are valid UTF-8 are the string value as they are (serde escapes
//!   control characters as JSON requires). Otherwise the value is an escaped form: valid
//!   UTF-8 stays, a backslash becomes `\\`, each invalid byte `\xNN`; the record lists the
//!   field under `"escaped"` so a consumer knows to apply [`unescape_json`].

use std::borrow::Cow;
use std::fmt::Write;

/// Text from the traced system (a process name, a path, a symbol, a cgroup name, a
/// string field) as text output shows it, so that nothing in it can move the cursor,
/// color the terminal or start a line of its own: as it is, but a backslash as `\\`,
/// newline, tab and carriage return as `\n` `\t` `\r`, every other control character
/// (C0, DEL, C1) and bidirectional-text control as `\xNN` per UTF-8 byte, each byte of
/// invalid UTF-8 as `\xNN` (as strace and `ls -b` do). JSON needs none of this: serde
/// escapes what JSON requires.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s.as_bytes(), true, false, needs_escape);
    Cow::Owned(out)
}

/// One line of text output as it goes out: control characters (and invalid UTF-8) that a
/// printer left in it escaped as [`escape_text`] does, backslashes left alone (the fields
/// in it are escaped already). None when there is nothing to escape (nearly always).
pub fn escape_line(b: &[u8]) -> Option<String> {
    if b.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        return None;
    }
    if let Ok(s) = std::str::from_utf8(b) {
        if !s.chars().any(needs_escape) {
            return None;
        }
    }
    let mut out = String::with_capacity(b.len() + 8);
    escape_into(&mut out, b, false, false, needs_escape);
    Some(out)
}

/// A character a terminal would act on rather than show.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The one escaping every form shares (text, lines, C strings): `\n`, `\t`, `\r`, and each
/// invalid UTF-8 byte as `\xNN`; `backslash`: whether `\` is doubled; `quote`: whether `"`
/// is escaped; `hex`: which other characters become `\xNN` per UTF-8 byte.
fn escape_into(out: &mut String, b: &[u8], backslash: bool, quote: bool, hex: fn(char) -> bool) {
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' if backslash => out.push_str("\\\\"),
                '"' if quote => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if hex(c) => {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// `b` in C-style escapes, without quotes.
pub fn escape_c(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    escape_into(&mut out, b, true, true, char::is_control);
    out
}

/// `b` as a quoted C-style string, with `...` after the closing quote when it was cut.
pub fn quoted_c(b: &[u8], truncated: bool) -> String {
    let mut s = format!("\"{}\"", escape_c(b));
    if truncated {
        s.push_str("...");
    }
    s
}

/// `b` as a JSON string value, and whether it is the escaped form (not valid UTF-8).
pub fn json_string(b: &[u8]) -> (String, bool) {
    if let Ok(s) = std::str::from_utf8(b) {
        return (s.to_string(), false);
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    (out, true)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// `\xNN` at the start of `s` (after the backslash), as a byte.
fn hex_pair(s: &[u8]) -> Option<u8> {
    match s {
        [b'x', h, l, ..] => Some(hex_digit(*h)? << 4 | hex_digit(*l)?),
        _ => None,
    }
}

/// The bytes of an escaped form: each backslash starts an escape that `escape` decodes
/// from what follows the backslash, as (the byte, how many bytes after the backslash it
/// takes). None if an escape does not decode.
fn unescape(s: &str, escape: impl Fn(&[u8]) -> Option<(u8, usize)>) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let (byte, used) = escape(&b[i + 1..])?;
        out.push(byte);
        i += 1 + used;
    }
    Some(out)
}

/// The bytes of a JSON value listed under `"escaped"`: `\\` is a backslash, `\xNN` a byte.
/// None if `s` is not such a form.
pub fn unescape_json(s: &str) -> Option<Vec<u8>> {
    unescape(s, |e| match e {
        [b'\\', ..] => Some((b'\\', 1)),
        _ => Some((hex_pair(e)?, 3)),
    })
}

/// The bytes of a C-style escaped text value (without its quotes). None if `s` is not
/// such a form.
pub fn unescape_c(s: &str) -> Option<Vec<u8>> {
    unescape(s, |e| {
        let byte = match e.first()? {
            b'\\' => b'\\',
            b'"' => b'"',
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            _ => return Some((hex_pair(e)?, 3)),
        };
        Some((byte, 1))
    })
}

/// Bytes as lowercase hex digits (arrays that are not text).
pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The text of a fixed `char name[N]` field: up to its first NUL.
pub fn until_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: &[u8] = b"ab\0c\xff\n\\\"d";

    #[test]
    fn text_escapes() {
        assert_eq!(escape_c(WRITTEN), r#"ab\x00c\xff\n\\\"d"#);
        assert_eq!(escape_c("tab\there\r".as_bytes()), r"tab\there\r");
        assert_eq!(escape_c("héllo €".as_bytes()), "héllo €");
        // DEL, a C1 control (valid UTF-8, U+0085) and a lone continuation byte.
        assert_eq!(escape_c(b"\x7f\xc2\x85\x80"), r"\x7f\xc2\x85\x80");
        assert_eq!(quoted_c(b"abc", true), "\"abc\"...");
        assert_eq!(quoted_c(b"", false), "\"\"");
    }

    #[test]
    fn json_forms() {
        assert_eq!(
            json_string(b"plain \\ text\n"),
            ("plain \\ text\n".into(), false)
        );
        let (s, escaped) = json_string(WRITTEN);
        assert!(escaped);
        assert_eq!(s, "ab\0c\\xff\n\\\\\"d");
        assert_eq!(unescape_json(&s).unwrap(), WRITTEN);
        // Valid UTF-8 around the invalid byte stays as it is.
        assert_eq!(json_string(b"\xe2\x82\xac\xfe").0, "€\\xfe");
        assert!(unescape_json("bad \\q").is_none());
        assert!(unescape_json("short \\x4").is_none());
    }

    /// Every byte string comes back from both forms: all single bytes and pairs, and a
    /// pseudo-random sample of longer ones.
    #[test]
    fn round_trips() {
        let mut cases: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for a in (0..=255u8).step_by(7) {
            for b in 0..=255u8 {
                cases.push(vec![a, b]);
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300 {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards ASCII, backslashes and UTF-8 lead bytes.
                v.push(match x % 5 {
                    0 => b'\\',
                    1 => (x >> 8) as u8 & 0x7f,
                    2 => 0xc0 | (x >> 8) as u8 & 0x3f,
                    _ => (x >> 8) as u8,
                });
            }
            cases.push(v);
        }
        cases.push("€ and ü".as_bytes().to_vec());
        for b in &cases {
            assert_eq!(unescape_c(&escape_c(b)).as_deref(), Some(&b[..]), "{b:?}");
            let (s, escaped) = json_string(b);
            // Through real JSON text, as a consumer would read it.
            let text = serde_json::to_string(&s).unwrap();
            let back: String = serde_json::from_str(&text).unwrap();
            let bytes = if escaped {
                unescape_json(&back).unwrap()
            } else {
                back.into_bytes()
            };
            assert_eq!(bytes, *b);
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(until_nul(b"cat\0\0x"), b"cat");
        assert_eq!(until_nul(b"full"), b"full");
    }

    #[test]
    fn text_from_the_traced_system_cannot_drive_the_terminal() {
        assert_eq!(escape_text("plain name"), "plain name");
        assert!(matches!(escape_text("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_text("\x1b[31mRED\nFAKE\t\\x\u{7f}\u{9b}\u{202e}"),
            r"\x1b[31mRED\nFAKE\t\\x\x7f\xc2\x9b\xe2\x80\xae"
        );
        assert_eq!(escape_line(b"ok \\ line"), None);
        assert_eq!(escape_line("caf\u{e9}".as_bytes()), None);
        assert_eq!(
            escape_line(b"a\x1bb\nc\\\xff").as_deref(),
            Some(r"a\x1bb\nc\\xff")
        );
    }
}
