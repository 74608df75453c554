// SPDX-License-Identifier: Apache-2.0
//! A small evaluator for the C constant expressions of tracepoint print formats: the
//! values of `__print_symbolic`/`__print_flags` tables, e.g. GFP flags written as
//! `( unsigned long)(((( gfp_t)((((1UL))) << (10))|((((1UL))) << (11)))) | ...)`, or
//! identifiers such as `IOPRIO_CLASS_RT`.
//!
//! Integer literals (decimal, hex, octal; U/L suffixes), identifiers (enumerators, looked
//! up in the kernel's BTF), casts to integer or pointer types (truncating or extending as
//! C does), parentheses, unary `~ - + !` and binary `* / % + - << >> & ^ |`, with C's
//! precedence and its usual arithmetic conversions on LP64. Anything else, an unknown
//! identifier or type, a shift out of range or a division by zero makes the whole
//! expression fail: a value that does not evaluate is never guessed.

use super::ctype::{IntType, KernelTypes};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Num(u64, IntType),
    Ident(String),
    Op(&'static str),
}

const OPS: &[&str] = &[
    "<<", ">>", "(", ")", "~", "!", "*", "/", "%", "+", "-", "&", "^", "|",
];

fn literal(text: &str) -> Option<(u64, IntType)> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(['u', 'l']);
    let suffix = &lower[digits.len()..];
    let unsigned_suffix = suffix.contains('u');
    let long_suffix = suffix.contains('l');
    let (radix, body) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    let v = u64::from_str_radix(body, radix).ok()?;
    // The first type that holds the value, as C picks it (decimal literals without U
    // never become unsigned).
    let fits_int = v <= i32::MAX as u64;
    let fits_uint = v <= u32::MAX as u64;
    let fits_long = v <= i64::MAX as u64;
    let t = |width, signed| IntType { width, signed };
    let ty = match (unsigned_suffix, long_suffix) {
        (false, false) if fits_int => t(4, true),
        (false, false) if radix != 10 && fits_uint => t(4, false),
        (false, _) if fits_long => t(8, true),
        (true, false) if fits_uint => t(4, false),
        (false, _) if radix == 10 => return None,
        _ => t(8, false),
    };
    Some((v, ty))
}

fn tokens(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            let (v, ty) = literal(&s[start..i])?;
            out.push(Tok::Num(v, ty));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].to_string()));
        } else {
            let op = OPS.iter().find(|op| s[i..].starts_with(**op))?;
            out.push(Tok::Op(op));
            i += op.len();
        }
    }
    Some(out)
}

/// A value with its C type; `bits` is the value converted to 64 bits (sign-extended
/// when signed).
#[derive(Clone, Copy, Debug)]
struct V {
    bits: u64,
    ty: IntType,
}

impl V {
    fn of(bits: u64, ty: IntType) -> V {
        V {
            bits: ty.extend(bits),
            ty,
        }
    }
}

/// Integer promotion: anything narrower than int becomes int.
fn promote(t: IntType) -> IntType {
    if t.width < 4 {
        IntType {
            width: 4,
            signed: true,
        }
    } else {
        t
    }
}

/// The usual arithmetic conversions (LP64: a long holds every unsigned int).
fn common(a: IntType, b: IntType) -> IntType {
    let (a, b) = (promote(a), promote(b));
    if a.width == b.width {
        IntType {
            width: a.width,
            signed: a.signed && b.signed,
        }
    } else if a.width > b.width {
        a
    } else {
        b
    }
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    env: &'a dyn KernelTypes,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_op(&self) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.peek_op() == Some(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Binary operators by precedence level, loosest first.
    const LEVELS: &'static [&'static [&'static str]] = &[
        &["|"],
        &["^"],
        &["&"],
        &["<<", ">>"],
        &["+", "-"],
        &["*", "/", "%"],
    ];

    fn binary(&mut self, level: usize) -> Option<V> {
        if level == Self::LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        while let Some(op) = self.peek_op().filter(|o| Self::LEVELS[level].contains(o)) {
            self.pos += 1;
            let rhs = self.binary(level + 1)?;
            lhs = apply(op, lhs, rhs)?;
        }
        Some(lhs)
    }

    /// The type named by the tokens of a parenthesised group at `self.pos` (just after
    /// '('), if it is a cast: identifiers and `*` only, followed by an operand.
    fn cast_type(&self) -> Option<(IntType, usize)> {
        let mut words = Vec::new();
        let mut pointer = false;
        let mut i = self.pos;
        loop {
            match self.toks.get(i)? {
                Tok::Ident(w) => words.push(w.as_str()),
                Tok::Op("*") => pointer = true,
                Tok::Op(")") => break,
                _ => return None,
            }
            i += 1;
        }
        if words.is_empty() {
            return None;
        }
        // `(NAME)` alone is a parenthesised enumerator when it is one.
        if words.len() == 1 && !pointer && self.env.enumerator(words[0]).is_some() {
            return None;
        }
        let starts_operand = matches!(
            self.toks.get(i + 1),
            Some(Tok::Num(..) | Tok::Ident(_) | Tok::Op("(" | "~" | "!" | "-" | "+"))
        );
        if !starts_operand {
            return None;
        }
        let ty = if pointer {
            IntType {
                width: 8,
                signed: false,
            }
        } else {
            self.env.int_type(&words.join(" "))?
        };
        Some((ty, i + 1))
    }

    fn unary(&mut self) -> Option<V> {
        let int = IntType {
            width: 4,
            signed: true,
        };
        if self.eat("~") {
            let v = self.unary()?;
            let ty = promote(v.ty);
            return Some(V::of(!v.bits, ty));
        }
        if self.eat("-") {
            let v = self.unary()?;
            let ty = promote(v.ty);
            return Some(V::of(v.bits.wrapping_neg(), ty));
        }
        if self.eat("+") {
            let v = self.unary()?;
            return Some(V::of(v.bits, promote(v.ty)));
        }
        if self.eat("!") {
            let v = self.unary()?;
            return Some(V::of((v.bits == 0) as u64, int));
        }
        if self.eat("(") {
            if let Some((ty, next)) = self.cast_type() {
                self.pos = next;
                let v = self.unary()?;
                return Some(V::of(v.bits, ty));
            }
            let v = self.binary(0)?;
            return self.eat(")").then_some(v);
        }
        match self.peek()?.clone() {
            Tok::Num(v, ty) => {
                self.pos += 1;
                Some(V::of(v, ty))
            }
            Tok::Ident(name) => {
                self.pos += 1;
                let bits = self.env.enumerator(&name)?;
                // Enumerators are ints in C unless they do not fit one.
                let ty = if bits as i64 >= i32::MIN as i64 && bits as i64 <= i32::MAX as i64 {
                    int
                } else {
                    IntType {
                        width: 8,
                        signed: (bits as i64) < 0,
                    }
                };
                Some(V::of(bits, ty))
            }
            Tok::Op(_) => None,
        }
    }
}

fn apply(op: &str, a: V, b: V) -> Option<V> {
    if op == "<<" || op == ">>" {
        let ty = promote(a.ty);
        let n = b.bits;
        if (b.ty.signed && (n as i64) < 0) || n >= 8 * ty.width as u64 {
            return None;
        }
        let bits = match op {
            "<<" => a.bits << n,
            _ if ty.signed => ((a.bits as i64) >> n) as u64,
            _ => ty.extend(a.bits) >> n,
        };
        return Some(V::of(bits, ty));
    }
    let ty = common(a.ty, b.ty);
    let (x, y) = (ty.extend(a.bits), ty.extend(b.bits));
    let bits = match op {
        "|" => x | y,
        "^" => x ^ y,
        "&" => x & y,
        "+" => x.wrapping_add(y),
        "-" => x.wrapping_sub(y),
        "*" => x.wrapping_mul(y),
        "/" | "%" if y == 0 => return None,
        "/" if ty.signed => (x as i64).checked_div(y as i64)? as u64,
        "%" if ty.signed => (x as i64).checked_rem(y as i64)? as u64,
        "/" => x / y,
        "%" => x % y,
        _ => return None,
    };
    Some(V::of(bits, ty))
}

/// The value of constant expression `expr`, converted to 64 bits as C converts it to an
/// `unsigned long` (what the kernel's print helpers compare), or None.
pub fn eval(expr: &str, env: &dyn KernelTypes) -> Option<u64> {
    let toks = tokens(expr)?;
    let mut p = Parser { toks, pos: 0, env };
    let v = p.binary(0)?;
    (p.pos == p.toks.len()).then_some(v.bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::ctype::TestTypes;

    fn ev(s: &str) -> Option<u64> {
        eval(s, &TestTypes)
    }

    #[test]
    fn literals_and_precedence() {
        assert_eq!(ev("0"), Some(0));
        assert_eq!(ev("1UL << 10"), Some(1024));
        assert_eq!(ev("0x10 | 010 | 1"), Some(0x19));
        assert_eq!(ev("1 + 2 * 3"), Some(7));
        assert_eq!(ev("(1 + 2) * 3"), Some(9));
        assert_eq!(ev("1 | 2 & 3 << 1"), Some(1 | (2 & (3 << 1))));
        assert_eq!(ev("-1"), Some(u64::MAX), "an int -1 as an unsigned long");
        assert_eq!(ev("~0U"), Some(0xffff_ffff), "unsigned int stays 32 bits");
        assert_eq!(ev("~0UL"), Some(u64::MAX));
        assert_eq!(ev("(8 - 1)"), Some(7));
        assert_eq!(
            ev("-8 >> 1"),
            Some((-4i64) as u64),
            "arithmetic shift of a signed int"
        );
        assert_eq!(
            ev("0xffffffff"),
            Some(0xffff_ffff),
            "hex literal: unsigned int"
        );
        assert_eq!(ev("!0 + !5"), Some(1));
    }

    #[test]
    fn casts_and_identifiers() {
        assert_eq!(ev("(unsigned char)0x1ff"), Some(0xff));
        assert_eq!(
            ev("( unsigned long)(( gfp_t)((((1UL))) << (10)))"),
            Some(1 << 10)
        );
        // ~ on a 32-bit gfp_t keeps 32 bits, as in the kernel's GFP masks.
        assert_eq!(
            ev("( unsigned long)(~(( gfp_t)((1UL << 10)|(1UL << 11))))"),
            Some(0xffff_f3ff)
        );
        assert_eq!(ev("(void *)0"), Some(0));
        assert_eq!(ev("IOPRIO_CLASS_RT"), Some(1));
        assert_eq!(
            ev("(IOPRIO_CLASS_RT)"),
            Some(1),
            "a parenthesised enumerator"
        );
        assert_eq!(ev("MINUS_ONE"), Some(u64::MAX));
        assert_eq!(ev("(int)MINUS_ONE"), Some(u64::MAX));
        assert_eq!(ev("(unsigned int)MINUS_ONE"), Some(0xffff_ffff));
    }

    #[test]
    fn what_does_not_evaluate() {
        assert_eq!(ev("IOPRIO_CLASS_UNKNOWN"), None);
        assert_eq!(ev("(some_type_t)1"), None, "unknown cast type");
        assert_eq!(ev("1 << 64"), None);
        assert_eq!(ev("1 << 32"), None, "beyond an int");
        assert_eq!(ev("1 / 0"), None);
        assert_eq!(ev("REC->x"), None);
        assert_eq!(ev("\"str\""), None);
        assert_eq!(ev("(1"), None);
        assert_eq!(ev("1 2"), None);
        assert_eq!(ev(""), None);
        assert_eq!(ev("99999999999999999999"), None);
    }

    /// The real GFP_KERNEL entry of kmem:kmalloc's print format on 6.18.
    #[test]
    fn gfp_kernel() {
        let e = "( unsigned long)((( gfp_t)(((((1UL))) << (10))|((((1UL))) << (11)))) | (( gfp_t)((((1UL))) << (6))) | (( gfp_t)((((1UL))) << (7))))";
        assert_eq!(ev(e), Some(0xcc0));
    }
}
