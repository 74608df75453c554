// SPDX-License-Identifier: Apache-2.0
//! `btrace kprobe GLOB --count`: calls per kernel function, counted in the kernel (no
//! event per call), like funccount. The glob is expanded against the functions ftrace can
//! trace (available_filter_functions), their addresses taken from kallsyms.
//!
//! Hooks: kprobe.multi (Linux 5.18+) attaches every function with one link in one
//! syscall; else one kprobe per function (5.10 has no multi-attach). fentry per function
//! is not used: each would be a program of its own, verified and attached through a
//! trampoline of its own (an ftrace direct call per function), far slower to attach for
//! hundreds of functions, and unsafe on the functions the trampoline itself uses.
//! The function is told in the kernel by the probe's address (no BPF cookies, which 5.10
//! lacks): the kprobe's instruction pointer, or bpf_get_func_ip under kprobe.multi; user
//! space resolves it to the function whose entry it lies just past.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fmt;

use anyhow::{anyhow, bail, Result};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::Link;

use crate::core::attach::Links;
use crate::core::kmem::Driver;
use crate::core::lifecycle::{self, Declaration, Tree};
use crate::core::scope::Scope;

use super::skel::{Kprobe, KprobeKind, KprobeSkel, OpenKprobeSkel};
use super::tracer::FENTRY_DENY;
use crate::resolve::elf::glob_match;
use crate::tracers::func::{self, Plan};

/// How the counting probes are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountHook {
    /// One kprobe.multi link for every function (5.18+).
    Multi,
    /// One kprobe per function.
    PerFunction,
}

impl fmt::Display for CountHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CountHook::Multi => "kprobe.multi",
            CountHook::PerFunction => "kprobe",
        })
    }
}

/// A probe's address lies at most this far past its function's start: a kprobe's
/// instruction pointer is just past the probed instruction (int3, or the ftrace call site
/// after an endbr64).
const ENTRY_SLACK: u64 = 64;

/// The functions a pattern matches, and where they are.
#[derive(Debug, Default)]
pub struct KernelFuncs {
    /// The functions probed, by name (one per name: static functions of one name in
    /// several files are one probe, attached where the kernel resolves the name).
    pub names: Vec<String>,
    /// Every kallsyms address of those names, sorted, with the index of its name.
    addrs: Vec<(u64, usize)>,
    /// Matching functions left out: btrace's deny list, the kprobe blacklist.
    pub left_out: Vec<String>,
}

impl KernelFuncs {
    /// The functions `pattern` matches: every text symbol of `kallsyms` (/proc/kallsyms)
    /// at an address ftrace can trace (one named in `available`, available_filter_functions:
    /// `name` or `name [module]` per line), aliases included (ftrace lists one name per
    /// address: 5.10's `__x64_sys_getppid` is an alias of the `__do_sys_getppid` it lists),
    /// minus those of btrace's fentry deny list and of `deny`. One probe per address, under
    /// the name ftrace lists when it matches, else the first matching alias by name. A
    /// pattern that is not a glob may also name a function ftrace does not list (a kprobe
    /// does not need ftrace).
    pub fn expand(pattern: &str, available: &str, kallsyms: &str, deny: &[&str]) -> KernelFuncs {
        let glob = func::is_glob(pattern);
        let listed: HashSet<&str> = available
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut syms: Vec<(u64, &str)> = kallsyms
            .lines()
            .filter_map(|line| {
                let mut w = line.split_whitespace();
                let (a, kind, name) = (w.next()?, w.next()?, w.next()?);
                let addr = u64::from_str_radix(a, 16).ok()?;
                (addr != 0 && matches!(kind, "t" | "T")).then_some((addr, name))
            })
            .collect();
        let traceable: HashSet<u64> = syms
            .iter()
            .filter(|(_, n)| listed.contains(n))
            .map(|(a, _)| *a)
            .collect();
        syms.retain(|(a, n)| {
            if glob {
                traceable.contains(a) && glob_match(pattern, n)
            } else {
                *n == pattern
            }
        });
        let mut left_out = BTreeSet::new();
        syms.retain(|(_, n)| {
            let out = FENTRY_DENY.contains(n) || deny.contains(n);
            if out {
                left_out.insert(n.to_string());
            }
            !out
        });
        // One name per address: the listed one first, then by name.
        syms.sort_by_key(|(a, n)| (*a, !listed.contains(n), *n));
        syms.dedup_by_key(|(a, _)| *a);
        let names: Vec<String> = syms
            .iter()
            .map(|(_, n)| n.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let addrs = syms
            .iter()
            .map(|(a, n)| {
                (
                    *a,
                    names.binary_search_by(|x| x.as_str().cmp(n)).unwrap_or(0),
                )
            })
            .collect();
        KernelFuncs {
            names,
            addrs,
            left_out: left_out.into_iter().collect(),
        }
    }

    /// Whether kallsyms gave addresses (it shows zeros to a reader without privileges).
    pub fn has_addresses(&self) -> bool {
        !self.addrs.is_empty()
    }

    /// The function a probe address belongs to.
    pub fn name_of(&self, ip: u64) -> String {
        let i = self.addrs.partition_point(|(a, _)| *a <= ip);
        match i.checked_sub(1).map(|i| self.addrs[i]) {
            Some((start, n)) if ip - start <= ENTRY_SLACK => self.names[n].clone(),
            _ => format!("[unknown 0x{ip:x}]"),
        }
    }
}

/// The names on the kprobe blacklist (debugfs, when mounted: `0xstart-0xend\tname`).
pub fn kprobe_blacklist() -> Vec<String> {
    std::fs::read_to_string("/sys/kernel/debug/kprobes/blacklist")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The functions `pattern` matches on this kernel.
pub fn expand(pattern: &str) -> Result<KernelFuncs> {
    let tracefs = crate::core::system::ensure_tracefs()?;
    let list = tracefs.join("available_filter_functions");
    let available = std::fs::read_to_string(&list).map_err(|e| {
        anyhow!(
            "reading {}: {e} (the kernel needs CONFIG_FUNCTION_TRACER for globs)",
            list.display()
        )
    })?;
    let kallsyms = std::fs::read_to_string("/proc/kallsyms")
        .map_err(|e| anyhow!("reading /proc/kallsyms: {e}"))?;
    let black = kprobe_blacklist();
    let deny: Vec<&str> = black.iter().map(String::as_str).collect();
    let funcs = KernelFuncs::expand(pattern, &available, &kallsyms, &deny);
    if funcs.names.is_empty() {
        match funcs.left_out.first() {
            Some(f) => bail!(
                "'{pattern}' matches only functions btrace does not probe (the BPF trampoline's own, or the kprobe blacklist: {f})"
            ),
            None => bail!(
                "no traceable kernel function matches '{pattern}' (see {}; grep the name in /proc/kallsyms)",
                list.display()
            ),
        }
    }
    if !funcs.has_addresses() {
        bail!("/proc/kallsyms shows no addresses to this user (kernel.kptr_restrict): run as root");
    }
    Ok(funcs)
}

/// Functions the kernel refused to probe (one kprobe each), with the first refusal.
#[derive(Debug, Default)]
pub struct Refused {
    pub count: usize,
    pub first: Option<String>,
}

/// One `--count` load as core::lifecycle drives it: the plan, the functions, and the
/// functions the kernel refused (filled while attaching).
struct CountLoad<'a> {
    plan: &'a Plan,
    funcs: &'a KernelFuncs,
    refused: RefCell<Refused>,
}

impl Declaration for CountLoad<'_> {
    type Kind = KprobeKind;
    type Way = CountHook;
    const DRIVERS: &'static [Driver] = func::DRIVERS;
    const TREE: Tree = Tree::First;

    fn scope(&self) -> &Scope {
        &self.plan.scope
    }

    fn configure(&self, hook: CountHook, open: &mut OpenKprobeSkel<'_>) -> Result<()> {
        self.plan.configure(open.open_object_mut(), false)?;
        open.maps.events.set_max_entries(4096)?;
        open.maps
            .counts
            .set_max_entries(func::counts_entries(self.funcs.names.len()))?;
        let p = &mut open.progs;
        p.func_fentry.set_autoload(false);
        p.func_fexit.set_autoload(false);
        p.func_kprobe.set_autoload(false);
        p.func_kretprobe.set_autoload(false);
        p.func_kcount.set_autoload(hook == CountHook::PerFunction);
        p.func_kcount_multi.set_autoload(hook == CountHook::Multi);
        Ok(())
    }

    fn hooks(&self, hook: CountHook, skel: &KprobeSkel<'_>, links: &mut Links) -> Result<()> {
        let funcs = self.funcs;
        let mut refused = self.refused.borrow_mut();
        match hook {
            CountHook::Multi => {
                links.push(
                    skel.progs
                        .func_kcount_multi
                        .attach_kprobe_multi(false, funcs.names.clone())?,
                );
            }
            CountHook::PerFunction => {
                let mut attached = 0;
                for name in &funcs.names {
                    match skel.progs.func_kcount.attach_kprobe(false, name) {
                        Ok(l) => {
                            links.push(l);
                            attached += 1;
                        }
                        Err(e) => {
                            refused.count += 1;
                            refused.first.get_or_insert_with(|| format!("{name}: {e}"));
                        }
                    }
                }
                if attached == 0 {
                    bail!(
                        "the kernel refused a kprobe on every function ({})",
                        refused.first.as_deref().unwrap_or("none")
                    );
                }
            }
        }
        Ok(())
    }
}

/// Opens, configures, loads and attaches the counting programs of one hook.
pub fn load_count(
    hook: CountHook,
    plan: &Plan,
    funcs: &KernelFuncs,
) -> Result<(Kprobe, Vec<Link>, Refused)> {
    let decl = CountLoad {
        plan,
        funcs,
        refused: RefCell::default(),
    };
    let (skel, links) = lifecycle::load_way(&decl, hook)?;
    Ok((skel, links.into_vec(), decl.refused.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVAILABLE: &str = "tcp_v4_rcv\ntcp_sendmsg\ntcp_sendmsg_locked\nudp_sendmsg\n\
        tcp_foo.isra.0\ntcp_mod_fn [tcp_mod]\n__rcu_read_lock\ntcp_sendmsg\n__do_sys_getppid\n";
    const KALLSYMS: &str = "ffffffff81000000 T _stext\n\
        ffffffff81000100 T tcp_v4_rcv\n\
        ffffffff81000200 T tcp_sendmsg\n\
        ffffffff81000300 t tcp_sendmsg_locked\n\
        ffffffff81000400 D tcp_data\n\
        ffffffff81000500 t tcp_foo.isra.0\n\
        ffffffff81000600 T udp_sendmsg\n\
        ffffffff81000700 T __rcu_read_lock\n\
        ffffffff81000800 t tcp_static\n\
        ffffffff81000900 t tcp_sendmsg\n\
        ffffffff81000a00 t __do_sys_getppid\n\
        ffffffff81000a00 T __ia32_sys_getppid\n\
        ffffffff81000a00 T __x64_sys_getppid\n\
        ffffffffc0000000 t tcp_mod_fn\t[tcp_mod]\n";

    #[test]
    fn glob_expands_against_traceable_functions() {
        let f = KernelFuncs::expand("tcp_*", AVAILABLE, KALLSYMS, &["tcp_v4_rcv"]);
        // tcp_sendmsg twice (two static functions), probed once by name; tcp_static is not
        // traceable by ftrace; the blacklisted one is left out.
        assert_eq!(
            f.names,
            [
                "tcp_foo.isra.0",
                "tcp_mod_fn",
                "tcp_sendmsg",
                "tcp_sendmsg_locked"
            ]
        );
        assert_eq!(f.left_out, ["tcp_v4_rcv"]);
        let f = KernelFuncs::expand("__rcu*", AVAILABLE, KALLSYMS, &[]);
        assert!(f.names.is_empty());
        assert_eq!(f.left_out, ["__rcu_read_lock"]);
        let f = KernelFuncs::expand("tcp_send?sg", AVAILABLE, KALLSYMS, &[]);
        assert_eq!(f.names, ["tcp_sendmsg"]);
        // An exact name: from kallsyms alone when ftrace does not list it.
        let f = KernelFuncs::expand("tcp_static", AVAILABLE, KALLSYMS, &[]);
        assert_eq!(f.names, ["tcp_static"]);
        assert!(KernelFuncs::expand("nope", AVAILABLE, KALLSYMS, &[])
            .names
            .is_empty());
        // Aliases of a listed address match; one probe per address, under the listed name
        // when it matches.
        let f = KernelFuncs::expand("__x64_sys_getp?id", AVAILABLE, KALLSYMS, &[]);
        assert_eq!(f.names, ["__x64_sys_getppid"]);
        let f = KernelFuncs::expand("*getppid", AVAILABLE, KALLSYMS, &[]);
        assert_eq!(f.names, ["__do_sys_getppid"]);
        assert_eq!(f.name_of(0xffffffff81000a01), "__do_sys_getppid");
    }

    #[test]
    fn probe_addresses_resolve_to_their_function() {
        let f = KernelFuncs::expand("tcp_*", AVAILABLE, KALLSYMS, &[]);
        // int3 kprobe: start + 1; ftrace after endbr64: start + 5; kprobe.multi: start.
        assert_eq!(f.name_of(0xffffffff81000201), "tcp_sendmsg");
        assert_eq!(f.name_of(0xffffffff81000305), "tcp_sendmsg_locked");
        assert_eq!(f.name_of(0xffffffff81000100), "tcp_v4_rcv");
        // Both static functions of one name count under it.
        assert_eq!(f.name_of(0xffffffff81000901), "tcp_sendmsg");
        assert_eq!(f.name_of(0xffffffffc0000001), "tcp_mod_fn");
        // Far past a function's entry, or below every function: unknown, with the address.
        assert_eq!(
            f.name_of(0xffffffff81000280),
            "[unknown 0xffffffff81000280]"
        );
        assert_eq!(f.name_of(0x10), "[unknown 0x10]");
        assert!(f.has_addresses());
    }
}
