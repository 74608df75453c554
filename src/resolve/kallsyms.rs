// SPDX-License-Identifier: Apache-2.0
//! Kernel text addresses as `symbol+0xoff`, from /proc/kallsyms: read once, sorted,
//! searched by bisection.

use anyhow::{Context, Result};

pub struct Kallsyms {
    /// Text symbols by address (the first listed of those sharing an address); module
    /// symbols carry their module: `name [module]`.
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn load() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Ok(Self::parse(&text))
    }

    /// The text (function) symbols of a kallsyms listing; addresses shown as 0 (read
    /// without privileges) are left out.
    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                if addr == 0 || !matches!(kind, "t" | "T" | "w" | "W") {
                    return None;
                }
                Some(match w.next() {
                    Some(module) => (addr, format!("{name} {module}")),
                    None => (addr, name.to_string()),
                })
            })
            .collect();
        syms.sort_by_key(|(a, _)| *a); // stable: the first listed stays first
        syms.dedup_by_key(|(a, _)| *a);
        Kallsyms { syms }
    }

    /// `symbol+0xoff` (`symbol [module]+0xoff` in a module; the symbol alone at offset 0
    /// or without `offset`), or None for an address below every symbol or past the last.
    pub fn symbolize(&self, addr: u64, offset: bool) -> Option<String> {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        if i == 0 || i == self.syms.len() {
            return None;
        }
        let (start, name) = &self.syms[i - 1];
        let off = addr - start;
        Some(if off == 0 || !offset {
            name.clone()
        } else {
            match name.split_once(' ') {
                Some((sym, module)) => format!("{sym}+0x{off:x} {module}"),
                None => format!("{name}+0x{off:x}"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81000000 T _text\n\
             ffffffff81000100 t do_thing\n\
             ffffffff81002000 D some_data\n\
             ffffffff81000200 T other\n\
             ffffffffc0000000 t mod_fn\t[mymod]\n\
             ffffffffc0001000 T end_marker\n",
        );
        for (addr, offset, want) in [
            (0xffffffff81000000, true, Some("_stext")),
            (0xffffffff81000123, true, Some("do_thing+0x23")),
            (0xffffffff81000123, false, Some("do_thing")),
            (0xffffffffc0000010, true, Some("mod_fn+0x10 [mymod]")),
            (0x1000, true, None),
        ] {
            assert_eq!(k.symbolize(addr, offset).as_deref(), want, "{addr:#x}");
        }
        assert_eq!(k.symbolize(0xffffffffc0002000, true), None, "past the last");
    }

    #[test]
    fn this_kernel() {
        let Ok(k) = Kallsyms::load() else { return };
        if k.syms.is_empty() {
            return; // not root: addresses hidden
        }
        let (addr, name) = k
            .syms
            .iter()
            .find(|(_, n)| n == "vfs_read")
            .cloned()
            .expect("vfs_read in kallsyms");
        assert_eq!(k.symbolize(addr + 4, true), Some(format!("{name}+0x4")));
    }
}
