// SPDX-License-Identifier: Apache-2.0
//! What a tracepoint's `print fmt:` line says about its fields: the kernel's own names
//! for their values. The format string's conversions are paired, in order, with the
//! top-level comma-separated argument expressions:
//!
//! - `__print_symbolic(REC->f, { v, "name" }, ...)`: f's value -> name table;
//! - `__print_flags(REC->f, "|", { v, "name" }, ...)`, possibly as
//!   `(REC->f) ? __print_flags(...) : "none"`: f's flag table (and its name for 0);
//! - `%pS`, `%ps`, `%pB` on `REC->f` (possibly cast): f is a kernel text address, shown
//!   as `symbol+0xoff` from /proc/kallsyms;
//! - `%pI4`, `%pI6`, `%pI6c` on `REC->f`: an IPv4 or IPv6 address.
//!
//! Table values are C constant expressions ([`super::cexpr`]); an entry that does not
//! evaluate is left out, never guessed. A key that is an expression of a field rather
//! than the field itself (block's `(REC->ioprio >> 13) & 7`) gives no table.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::cexpr;
use super::ctype::KernelTypes;
use super::kallsyms::Kallsyms;

/// How a field's value is shown by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Render {
    /// One name per value; other values stay numbers.
    Symbolic(Vec<(u64, String)>),
    /// Names of the flags set, joined by `delim`, and what is left in hex; `zero` names
    /// the value 0.
    Flags {
        delim: String,
        table: Vec<(u64, String)>,
        zero: Option<String>,
    },
    /// A kernel text address: `symbol+0xoff` (`offset: false`: the symbol alone, as %ps).
    KernelSym {
        offset: bool,
    },
    Ipv4,
    Ipv6,
    /// A `dev_t`: `major,minor`.
    DevT,
}

impl Render {
    /// The name of integer value `v` (as C converts it to 64 bits), if this render has
    /// one for it.
    pub fn int(&self, v: u64, syms: Option<&Kallsyms>) -> Option<String> {
        match self {
            Render::Symbolic(t) => t.iter().find(|(k, _)| *k == v).map(|(_, n)| n.clone()),
            Render::Flags { delim, table, zero } => flags(v, delim, table, zero.as_deref()),
            Render::KernelSym { offset } => syms?.symbolize(v, *offset),
            Render::DevT => Some(format!("{},{}", v >> 20, v & 0xfffff)),
            Render::Ipv4 | Render::Ipv6 => None,
        }
    }

    /// The text of a byte-array value (an address), if this render has one.
    pub fn bytes(&self, b: &[u8]) -> Option<String> {
        match (self, b.len()) {
            (Render::Ipv4, 4) => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
            (Render::Ipv6, 16) => {
                let a: [u8; 16] = b.try_into().ok()?;
                Some(Ipv6Addr::from(a).to_string())
            }
            _ => None,
        }
    }
}

/// Flags as the kernel prints them: each table entry whose bits are all set, in table
/// order, its bits then cleared; what remains in hex.
fn flags(mut v: u64, delim: &str, table: &[(u64, String)], zero: Option<&str>) -> Option<String> {
    if v == 0 {
        return zero
            .map(str::to_string)
            .or_else(|| table.iter().find(|(m, _)| *m == 0).map(|(_, n)| n.clone()));
    }
    let mut out = String::new();
    for (mask, name) in table {
        if *mask != 0 && v & mask == *mask {
            if !out.is_empty() {
                out.push_str(delim);
            }
            out.push_str(name);
            v &= !mask;
        }
    }
    if v != 0 {
        if !out.is_empty() {
            out.push_str(delim);
        }
        let _ = write!(out, "0x{v:x}");
    }
    Some(out)
}

/// Splits `print fmt: "FORMAT", ARGS` into the format string (unescaped) and the
/// top-level argument expressions.
pub fn split(line: &str) -> Option<(String, Vec<String>)> {
    let rest = line.trim().strip_prefix("print fmt:")?.trim_start();
    let (fmt, used) = string_literal(rest)?;
    let args = rest[used..].trim_start();
    let args = match args.strip_prefix(',') {
        Some(a) => split_top(a),
        None if args.is_empty() => Vec::new(),
        None => return None,
    };
    Some((fmt, args))
}

/// A C string literal at the start of `s`: its text and the bytes it took.
fn string_literal(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    None
}

/// `s` split at its top-level commas (outside parentheses, braces, brackets and
/// string or character literals), each part trimmed.
pub fn split_top(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut cur = String::new();
    for c in s.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_string());
    }
    parts
}

/// The conversions of a printf format, in order: `d`, `s`, `pS`, `pI6c`, ...; a `*`
/// width or precision takes an argument of its own, listed as `*`.
pub fn conversions(fmt: &str) -> Vec<String> {
    let b = fmt.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        if b.get(i) == Some(&b'%') {
            i += 1;
            continue;
        }
        // Flags, width, precision, length modifiers.
        while i < b.len() && b"-+ #0123456789.*hlLqjzt".contains(&b[i]) {
            if b[i] == b'*' {
                out.push("*".to_string());
            }
            i += 1;
        }
        let Some(&conv) = b.get(i) else { break };
        i += 1;
        let mut spec = (conv as char).to_string();
        if conv == b'p' {
            // The kernel's pointer extensions: %pS, %pI4, %pI6c, ...
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                spec.push(b[i] as char);
                i += 1;
            }
        }
        out.push(spec);
    }
    out
}

/// The outermost parentheses of `s`, if they enclose all of it.
fn strip_parens(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    let mut depth = 0;
    for c in inner.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return None,
            ')' => depth -= 1,
            _ => {}
        }
    }
    (depth == 0).then_some(inner)
}

/// A leading cast `(type)` of `s` and what follows it.
fn strip_cast(s: &str) -> Option<&str> {
    let close = s.find(')')?;
    let ty = s.strip_prefix('(')?.get(..close - 1)?;
    let is_type = !ty.trim().is_empty()
        && ty
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '*' || c.is_whitespace());
    let rest = s[close + 1..].trim_start();
    (is_type && !rest.is_empty()).then_some(rest)
}

/// The field `f` when `expr` is `REC->f`, possibly parenthesised, cast or with `&`.
pub fn field_ref(expr: &str) -> Option<&str> {
    let mut s = expr.trim();
    loop {
        if let Some(inner) = strip_parens(s) {
            s = inner.trim();
        } else if let Some(rest) = strip_cast(s) {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('&') {
            s = rest.trim_start();
        } else {
            break;
        }
    }
    let name = s.strip_prefix("REC->")?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

/// `NAME(ARGS)` when `expr` is a call of NAME: its arguments.
fn call<'a>(expr: &'a str, names: &[&str]) -> Option<(&'a str, Vec<String>)> {
    let mut s = expr.trim();
    while let Some(inner) = strip_parens(s) {
        s = inner.trim();
    }
    let open = s.find('(')?;
    let name = s[..open].trim();
    if !names.contains(&name) {
        return None;
    }
    let inner = strip_parens(&s[open..])?;
    Some((name, split_top(inner)))
}

/// `{ value, "name" }` entries, those that evaluate.
fn table(entries: &[String], types: &dyn KernelTypes) -> Vec<(u64, String)> {
    entries
        .iter()
        .filter_map(|e| {
            let inner = e.trim().strip_prefix('{')?.strip_suffix('}')?;
            let parts = split_top(inner);
            let [value, name] = parts.as_slice() else {
                return None;
            };
            let (text, used) = string_literal(name)?;
            if used != name.len() {
                return None;
            }
            Some((cexpr::eval(value, types)?, text))
        })
        .collect()
}

/// `COND ? THEN : ELSE` split at its top level.
fn ternary(expr: &str) -> Option<(&str, &str, &str)> {
    let b = expr.as_bytes();
    let (mut depth, mut quote, mut q, mut colon) = (0i32, None, None, None);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(qc) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == qc {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'\'' => quote = Some(c),
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'?' if depth == 0 && q.is_none() => q = Some(i),
            b':' if depth == 0 && q.is_some() => colon = Some(i),
            _ => {}
        }
        i += 1;
    }
    let (q, colon) = (q?, colon?);
    Some((&expr[..q], &expr[q + 1..colon], &expr[colon + 1..]))
}

/// A `__print_symbolic`/`__print_flags` expression: the field it names and its render.
fn print_table(expr: &str, types: &dyn KernelTypes) -> Option<(String, Render)> {
    const SYMBOLIC: &[&str] = &["__print_symbolic", "__print_symbolic_u64"];
    const FLAGS: &[&str] = &["__print_flags", "__print_flags_u64"];
    let (expr, zero) = match ternary(expr) {
        Some((_, then, other)) => {
            let (text, used) = string_literal(other.trim())?;
            (used == other.trim().len()).then_some(())?;
            (then, Some(text))
        }
        None => (expr, None),
    };
    if let Some((_, args)) = call(expr, SYMBOLIC) {
        let field = field_ref(args.first()?)?;
        let t = table(&args[1..], types);
        return (!t.is_empty()).then(|| (field.to_string(), Render::Symbolic(t)));
    }
    let (_, args) = call(expr, FLAGS)?;
    let field = field_ref(args.first()?)?;
    let (delim, _) = string_literal(args.get(1)?)?;
    let t = table(&args[2..], types);
    (!t.is_empty()).then(|| {
        (
            field.to_string(),
            Render::Flags {
                delim,
                table: t,
                zero,
            },
        )
    })
}

/// The renders the print format gives the fields, by field name. A field named twice
/// keeps its first render.
pub fn renders(print_fmt_line: &str, types: &dyn KernelTypes) -> Vec<(String, Render)> {
    let Some((fmt, args)) = split(print_fmt_line) else {
        return Vec::new();
    };
    let convs = conversions(&fmt);
    // Conversions pair with arguments only when the counts agree; the symbolic tables
    // name their field themselves and are taken either way.
    let paired = convs.len() == args.len();
    let mut out: Vec<(String, Render)> = Vec::new();
    for (i, expr) in args.iter().enumerate() {
        let found = print_table(expr, types).or_else(|| {
            if !paired {
                return None;
            }
            let render = match convs[i].as_str() {
                "pS" | "pB" | "pF" => Render::KernelSym { offset: true },
                "ps" | "pf" => Render::KernelSym { offset: false },
                "pI4" | "pi4" => Render::Ipv4,
                c if c.starts_with("pI6") || c.starts_with("pi6") => Render::Ipv6,
                _ => return None,
            };
            Some((field_ref(expr)?.to_string(), render))
        });
        if let Some((field, render)) = found {
            if !out.iter().any(|(f, _)| *f == field) {
                out.push((field, render));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::ctype::TestTypes;

    fn fmt_line(fixture: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/formats")
            .join(fixture);
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("print fmt:"))
            .unwrap()
            .to_string()
    }

    fn render<'a>(r: &'a [(String, Render)], field: &str) -> Option<&'a Render> {
        r.iter().find(|(f, _)| f == field).map(|(_, r)| r)
    }

    #[test]
    fn splitting() {
        let (fmt, args) =
            split(r#"print fmt: "a=%d b=\"%s\" c=%%", REC->a, f(x, (y, z)), "s,t""#).unwrap();
        assert_eq!(fmt, "a=%d b=\"%s\" c=%%");
        assert_eq!(args, ["REC->a", "f(x, (y, z))", "\"s,t\""]);
        assert_eq!(conversions(&fmt), ["d", "s"]);
        assert_eq!(
            conversions("%pS %ps %-08lx %.*s %pI6c:%hu %llu %pB"),
            ["pS", "ps", "x", "*", "s", "pI6c", "u", "u", "pB"]
        );
        assert_eq!(field_ref("(void *)REC->call_site"), Some("call_site"));
        assert_eq!(field_ref("((unsigned long)(REC->fd))"), Some("fd"));
        assert_eq!(field_ref("REC->saddr"), Some("saddr"));
        assert_eq!(field_ref("&REC->saddr"), Some("saddr"));
        assert_eq!(field_ref("(REC->ioprio) >> 13"), None);
        assert_eq!(field_ref("__get_str(cmd)"), None);
    }

    #[test]
    fn inet_sock_set_state() {
        let r = renders(&fmt_line("sock_inet_sock_set_state"), &TestTypes);
        let Some(Render::Symbolic(states)) = render(&r, "newstate") else {
            panic!("{r:?}")
        };
        assert_eq!(states.len(), 12);
        assert_eq!(
            render(&r, "newstate").unwrap().int(1, None).as_deref(),
            Some("TCP_ESTABLISHED")
        );
        assert_eq!(
            render(&r, "oldstate").unwrap().int(7, None).as_deref(),
            Some("TCP_CLOSE")
        );
        assert_eq!(render(&r, "oldstate").unwrap().int(99, None), None);
        assert_eq!(
            render(&r, "family").unwrap().int(10, None).as_deref(),
            Some("AF_INET6")
        );
        assert_eq!(
            render(&r, "protocol").unwrap().int(6, None).as_deref(),
            Some("IPPROTO_TCP")
        );
        assert_eq!(render(&r, "saddr"), Some(&Render::Ipv4));
        assert_eq!(render(&r, "daddr_v6"), Some(&Render::Ipv6));
        assert_eq!(
            Render::Ipv4.bytes(&[127, 0, 0, 1]).as_deref(),
            Some("127.0.0.1")
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(Render::Ipv6.bytes(&v6).as_deref(), Some("::1"));
        assert_eq!(render(&r, "sport"), None);
    }

    #[test]
    fn kmalloc_gfp_flags_and_call_site() {
        let r = renders(&fmt_line("kmem_kmalloc"), &TestTypes);
        assert_eq!(
            render(&r, "call_site"),
            Some(&Render::KernelSym { offset: true })
        );
        let gfp = render(&r, "gfp_flags").unwrap();
        let Render::Flags { table, zero, delim } = gfp else {
            panic!("{gfp:?}")
        };
        assert_eq!(delim, "|");
        assert_eq!(zero.as_deref(), Some("none"));
        // Every entry but the { 0, NULL } end marker evaluates.
        assert!(table.len() > 30, "{}", table.len());
        assert!(table.iter().all(|(_, n)| !n.is_empty()));
        // GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS; GFP_ATOMIC = __GFP_HIGH |
        // __GFP_KSWAPD_RECLAIM; __GFP_ZERO is bit 8.
        assert_eq!(gfp.int(0xcc0, None).as_deref(), Some("GFP_KERNEL"));
        assert_eq!(
            gfp.int(0xcc0 | 0x100, None).as_deref(),
            Some("GFP_KERNEL|__GFP_ZERO")
        );
        assert_eq!(gfp.int(0, None).as_deref(), Some("none"));
        assert_eq!(gfp.int(1 << 40, None).as_deref(), Some("0x10000000000"));
    }

    #[test]
    fn kfree_skb_reason_and_location() {
        let r = renders(&fmt_line("skb_kfree_skb"), &TestTypes);
        assert_eq!(
            render(&r, "reason").unwrap().int(2, None).as_deref(),
            Some("NOT_SPECIFIED")
        );
        assert_eq!(
            render(&r, "location"),
            Some(&Render::KernelSym { offset: true })
        );
    }

    #[test]
    fn timer_function_and_block_ioprio() {
        let r = renders(&fmt_line("timer_timer_expire_entry"), &TestTypes);
        assert_eq!(
            render(&r, "function"),
            Some(&Render::KernelSym { offset: false })
        );
        // The ioprio class table's key is an expression of the field, not the field:
        // no render, though its IOPRIO_CLASS_* values evaluate.
        let r = renders(&fmt_line("block_block_rq_issue"), &TestTypes);
        assert_eq!(r, Vec::new());
        let entries: Vec<String> = [
            "{ IOPRIO_CLASS_RT, \"rt\" }",
            "{ IOPRIO_CLASS_INVALID, \"invalid\"}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(table(&entries, &TestTypes), [(1, "rt".to_string())]);
    }

    #[test]
    fn syscalls_have_no_names() {
        assert!(renders(&fmt_line("syscalls_sys_enter_openat"), &TestTypes).is_empty());
    }

    #[test]
    fn flags_rules() {
        let t = vec![
            (3, "AB".to_string()),
            (1, "A".to_string()),
            (4, "C".to_string()),
        ];
        assert_eq!(flags(7, "|", &t, None).as_deref(), Some("AB|C"));
        assert_eq!(flags(1 | 8, " ", &t, None).as_deref(), Some("A 0x8"));
        assert_eq!(flags(0, "|", &t, None), None);
        assert_eq!(Render::DevT.int(8 << 20 | 3, None).as_deref(), Some("8,3"));
    }
}
