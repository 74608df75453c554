// SPDX-License-Identifier: Apache-2.0
//! The run-time filter of the tcp tracer: which sockets' transitions reach user space.
//!
//! The filter lives in BPF maps, so it can change while the programs run, with no
//! reload: a small config array (family, which sets are on), a hash of ports and an
//! LPM trie of address ranges (IPv4 and IPv6). Each part is "no filter" when unset;
//! parts combine with AND; ports and ranges each match either end of the connection.
//!
//! Use from another tool (the dashboard):
//! ```no_run
//! # use btrace::core::scope::Scope;
//! # use btrace::tracers::tcp::{tracer::{self, TcpOptions}, filter::{FilterSpec, TcpFilter}};
//! # fn demo() -> anyhow::Result<()> {
//! let spec = FilterSpec::default();
//! // load_best writes `spec` before attaching and hands back the live filter
//! let (_hook, tcp, mut filter, _links) =
//!     tracer::load_best(&TcpOptions::default(), &spec, &Scope::default())?;
//! let mut second = TcpFilter::new(&tcp)?;     // another handle: own dups of the map fds
//! filter.set_ports(&[443, 8080])?;             // takes effect for the next transition
//! filter.add_addr("10.0.0.0/8".parse()?)?;
//! second.set_pid(None)?;                     // both handles write the same maps
//! # Ok(()) }
//! ```
//! `TcpFilter` holds its own file descriptors of the maps, not a borrow of the skeleton,
//! so it can be kept and changed beside an `EventStream` reading the same skeleton.
//!
//! The pid (the scope's run-time part, written to the tracer's .bss) is the socket's
//! owner as the kernel side recorded it (the process that connected, listened or closed
//! it), not whatever task a softirq interrupted: a transition of a socket whose owner is
//! not known yet (an accepted connection before its process first touches it) does not
//! match a pid filter, and is counted as unattributed.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::model::cidr::Cidr;
use crate::model::tcp::Family;

use super::skel::{types, Tcp, MAX_ADDRS, MAX_PORTS};

/// A whole filter, as plain data. The default traces everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Owner process id (tgid).
    pub pid: Option<u32>,
    /// Sockets with one of these ports at either end; empty = any port.
    pub ports: Vec<u16>,
    /// Sockets with an address inside one of these ranges at either end; empty = any.
    pub addrs: Vec<Cidr>,
    pub family: Option<Family>,
}

impl FilterSpec {
    /// Contradictions a user should hear about (a filter that can never match).
    pub fn check(&self) -> Result<()> {
        if let Some(fam) = self.family {
            if let Some(r) = self
                .addrs
                .iter()
                .find(|r| r.is_ipv4() != (fam == Family::V4))
            {
                let other = if r.is_ipv4() { 4 } else { 6 };
                bail!(
                    "--addr {r} is an IPv{other} range but -{} traces only {fam}; drop one of them",
                    fam.number()
                );
            }
        }
        if self.ports.contains(&0) {
            bail!("port 0 cannot be traced: ports are 1-65535");
        }
        if self.ports.len() > MAX_PORTS {
            bail!("at most {MAX_PORTS} ports can be traced at once");
        }
        if self.addrs.len() > MAX_ADDRS {
            bail!("at most {MAX_ADDRS} address ranges can be traced at once");
        }
        Ok(())
    }
}

/// The filter of one loaded tcp tracer. Every setter writes the maps at once.
pub struct TcpFilter {
    cfg: MapHandle,
    ports: MapHandle,
    addrs: MapHandle,
    /// The tracer's .bss (the scope's run-time part) and its process-tree bitmap.
    bss: MapHandle,
    procs: MapHandle,
    spec: FilterSpec,
}

impl TcpFilter {
    /// Takes hold of the filter maps of a loaded tracer and clears the filter (traces
    /// everything) — a fresh tracer's maps are empty anyway.
    pub fn new(skel: &Tcp) -> Result<TcpFilter> {
        let dup = |m| MapHandle::try_from(m).context("duplicating a tcp filter map");
        let f = TcpFilter {
            cfg: dup(&skel.maps.tcp_filter_cfg)?,
            ports: dup(&skel.maps.tcp_filter_ports)?,
            addrs: dup(&skel.maps.tcp_filter_addrs)?,
            bss: dup(&skel.maps.bss)?,
            procs: dup(&skel.maps.scope_procs)?,
            spec: FilterSpec::default(),
        };
        f.write_cfg()?;
        Ok(f)
    }

    /// What the kernel filters on now.
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Replaces the whole filter.
    pub fn apply(&mut self, spec: &FilterSpec) -> Result<()> {
        self.set_pid(spec.pid)?;
        self.set_family(spec.family)?;
        self.set_ports(&spec.ports)?;
        self.set_addrs(&spec.addrs)
    }

    /// Traces everything.
    pub fn clear(&mut self) -> Result<()> {
        self.apply(&FilterSpec::default())
    }

    /// Only sockets owned by this process (None: any).
    pub fn set_pid(&mut self, pid: Option<u32>) -> Result<()> {
        self.write_pid(pid, false)
    }

    /// Only sockets owned by this process or a process it starts (the dashboard's rule).
    pub fn set_pid_tree(&mut self, pid: Option<u32>) -> Result<()> {
        self.write_pid(pid, true)
    }

    fn write_pid(&mut self, pid: Option<u32>, tree: bool) -> Result<()> {
        if pid == Some(0) {
            bail!("pid 0 cannot own a socket; use None for any process");
        }
        if tree {
            crate::core::scope::prepare_live_tree(&self.procs, pid)?;
        }
        let key = 0u32.to_ne_bytes();
        let mut bss = self
            .bss
            .lookup(&key, MapFlags::ANY)
            .context("reading the tcp tracer's run-time settings")?
            .map(|v| crate::core::skel::plain_prefix::<types::bss>(&v))
            .context("the tcp tracer has no run-time settings")?;
        bss.scope_live_tgid = if tree { 0 } else { pid.unwrap_or(0) };
        bss.scope_live_tree = tree && pid.is_some();
        // SAFETY: a plain struct of integers (Plain in skel.rs).
        let bytes = unsafe { plain::as_bytes(&bss) };
        let len = (self.bss.value_size() as usize).min(bytes.len());
        self.bss
            .update(&key, &bytes[..len], MapFlags::ANY)
            .context("writing the tcp pid filter")?;
        self.spec.pid = pid;
        Ok(())
    }

    pub fn set_family(&mut self, family: Option<Family>) -> Result<()> {
        self.spec.family = family;
        self.write_cfg()
    }

    /// Only these ports (either end); an empty list means any port. New ports are added
    /// before old ones are removed, so a port kept across the change is never missed.
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<()> {
        let new: BTreeSet<u16> = ports.iter().copied().collect();
        if new.contains(&0) {
            bail!("port 0 cannot be traced: ports are 1-65535");
        }
        if new.len() > MAX_PORTS {
            bail!("at most {MAX_PORTS} ports can be traced at once");
        }
        if new.is_empty() {
            self.spec.ports.clear();
            self.write_cfg()?;
        }
        for p in &new {
            self.ports
                .update(&p.to_ne_bytes(), &[1], MapFlags::ANY)
                .with_context(|| format!("adding port {p} to the tcp filter"))?;
        }
        for old in self.spec.ports.iter().filter(|p| !new.contains(p)) {
            delete_present(&self.ports, &old.to_ne_bytes())
                .with_context(|| format!("removing port {old} from the tcp filter"))?;
        }
        self.spec.ports = new.into_iter().collect();
        self.write_cfg()
    }

    pub fn add_port(&mut self, port: u16) -> Result<()> {
        let mut ports = self.spec.ports.clone();
        ports.push(port);
        self.set_ports(&ports)
    }

    pub fn remove_port(&mut self, port: u16) -> Result<()> {
        let ports: Vec<u16> = self
            .spec
            .ports
            .iter()
            .copied()
            .filter(|&p| p != port)
            .collect();
        self.set_ports(&ports)
    }

    /// Only sockets with an address inside one of these ranges (either end); an empty
    /// list means any address. IPv4 and IPv6 ranges may be mixed.
    pub fn set_addrs(&mut self, ranges: &[Cidr]) -> Result<()> {
        let mut new: Vec<Cidr> = Vec::new();
        for r in ranges {
            if !new.contains(r) {
                new.push(*r);
            }
        }
        if new.len() > MAX_ADDRS {
            bail!("at most {MAX_ADDRS} address ranges can be traced at once");
        }
        if new.is_empty() {
            self.spec.addrs.clear();
            self.write_cfg()?;
        }
        for r in &new {
            self.addrs
                .update(&trie_key(r), &[1], MapFlags::ANY)
                .with_context(|| format!("adding {r} to the tcp filter"))?;
        }
        for old in self.spec.addrs.iter().filter(|r| !new.contains(r)) {
            delete_present(&self.addrs, &trie_key(old))
                .with_context(|| format!("removing {old} from the tcp filter"))?;
        }
        self.spec.addrs = new;
        self.write_cfg()
    }

    pub fn add_addr(&mut self, range: Cidr) -> Result<()> {
        let mut addrs = self.spec.addrs.clone();
        addrs.push(range);
        self.set_addrs(&addrs)
    }

    pub fn remove_addr(&mut self, range: Cidr) -> Result<()> {
        let addrs: Vec<Cidr> = self
            .spec
            .addrs
            .iter()
            .copied()
            .filter(|r| *r != range)
            .collect();
        self.set_addrs(&addrs)
    }

    fn write_cfg(&self) -> Result<()> {
        let cfg = types::tcp_filter_cfg {
            family: self.spec.family.map_or(0, Family::af),
            ports_on: u8::from(!self.spec.ports.is_empty()),
            addrs_on: u8::from(!self.spec.addrs.is_empty()),
        };
        // SAFETY: a plain struct of integers (see the Plain impl above).
        let bytes = unsafe { plain::as_bytes(&cfg) };
        self.cfg
            .update(&0u32.to_ne_bytes(), bytes, MapFlags::ANY)
            .context("writing the tcp filter")
    }
}

fn trie_key(r: &Cidr) -> Vec<u8> {
    let (prefixlen, addr) = r.trie_key();
    let key = types::tcp_addr_key { prefixlen, addr };
    // SAFETY: a plain struct of integers (see the Plain impl above).
    unsafe { plain::as_bytes(&key) }.to_vec()
}

/// Deletes a key; one already absent is fine.
fn delete_present(map: &MapHandle, key: &[u8]) -> Result<()> {
    match map.delete(key) {
        Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(family: Option<Family>, addrs: &[&str]) -> FilterSpec {
        FilterSpec {
            family,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ..FilterSpec::default()
        }
    }

    #[test]
    fn family_and_ranges_must_agree() {
        let e = spec(Some(Family::V4), &["10.0.0.0/8", "fd00::/64"])
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fd00::/64 is an IPv6 range") && e.contains("-4"),
            "{e}"
        );
        let e = spec(Some(Family::V6), &["10.0.0.0/8"])
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPv4 range") && e.contains("-6"), "{e}");
        spec(Some(Family::V6), &["fd00::/64"]).check().unwrap();
        spec(None, &["10.0.0.0/8", "fd00::/64"]).check().unwrap();
    }

    #[test]
    fn port_zero_is_refused() {
        let s = FilterSpec {
            ports: vec![80, 0],
            ..FilterSpec::default()
        };
        assert!(s.check().unwrap_err().to_string().contains("1-65535"));
    }

    #[test]
    fn trie_key_layout_matches_the_kernel_struct() {
        let k = trie_key(&"10.1.2.0/24".parse().unwrap());
        assert_eq!(k.len(), 20);
        assert_eq!(&k[..4], &120u32.to_ne_bytes());
        assert_eq!(&k[14..], &[0xff, 0xff, 10, 1, 2, 0]);
    }
}
