// SPDX-License-Identifier: Apache-2.0
//! `--count`: calls per function counted in the kernel (kprobe and uprobe share it).

use anyhow::Result;
use libbpf_rs::MapCore;
use serde_json::{json, Value};

use super::run::RunMaps;
use crate::core::output::Output;
use crate::core::run::{Aggregation, Period};
use crate::core::session::Session;

/// Functions (attach points) a glob with `--count` takes by default.
pub const DEFAULT_MAX_PROBES: usize = 1000;

/// `--count` and its bound, shared by `kprobe` and `uprobe`.
#[derive(clap::Args, Debug, Clone)]
pub struct CountArgs {
    /// Calls per function counted in the kernel (no event per call); FUNC may then be a
    /// glob (`tcp_*`, `malloc*`, `?alloc`)
    #[arg(long, conflicts_with_all = ["ret", "hist"])]
    pub count: bool,
    /// With --count: at most this many functions are probed at once (default 1000); a
    /// glob matching more is refused
    #[arg(long, value_name = "N")]
    pub max_probes: Option<usize>,
}

impl CountArgs {
    pub fn max_probes(&self) -> usize {
        self.max_probes.unwrap_or(DEFAULT_MAX_PROBES)
    }

    /// The flags that do not go with --count (or need it).
    pub fn check(&self, func: &str, max_inflight: Option<u32>, stack: bool) -> Result<()> {
        if !self.count {
            if self.max_probes.is_some() {
                anyhow::bail!("--max-probes bounds the functions a glob counts: it needs --count");
            }
            if is_glob(func) {
                anyhow::bail!(
                    "'{func}' is a glob: events and --hist are of one function, so a glob needs --count (calls per function)"
                );
            }
            return Ok(());
        }
        if max_inflight.is_some() {
            anyhow::bail!(
                "--max-inflight bounds the calls waiting for their return: --count has none"
            );
        }
        if stack {
            anyhow::bail!("--stack records the stacks of each event: --count prints no events");
        }
        if self.max_probes == Some(0) {
            anyhow::bail!("--max-probes 0 would probe nothing: give at least 1");
        }
        Ok(())
    }
}

/// Whether a function name is a glob (`*`, `?`).
pub fn is_glob(func: &str) -> bool {
    func.contains(['*', '?'])
}

/// The one line for a glob that matches more functions than --max-probes allows.
pub fn check_max_probes(pattern: &str, n: usize, of: &str, max: usize) -> Result<()> {
    if n > max {
        anyhow::bail!(
            "'{pattern}' matches {n} functions {of}: at most {max} are probed at once (--max-probes {max}); narrow the pattern, or raise --max-probes"
        );
    }
    Ok(())
}

/// Bound of the `counts` map for `n` attach points: one key each, with room to spare
/// (a kprobe function with two addresses; a full map is a counted loss anyway).
pub fn counts_entries(n: usize) -> u32 {
    (n * 2 + 16) as u32
}

/// Calls so far per function: every key of a counts map (summed over CPUs) under the
/// name `name_of` gives it, keys of one name added up.
pub fn read_counts(
    map: &dyn MapCore,
    name_of: &dyn Fn(u64) -> String,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut by_name = std::collections::BTreeMap::new();
    for key in map.keys() {
        let Some(cpus) = map.lookup_percpu(&key, libbpf_rs::MapFlags::ANY)? else {
            continue;
        };
        let n: u64 = cpus
            .iter()
            .filter_map(|b| plain::from_bytes::<u64>(b).ok().copied())
            .sum();
        // A hash's u64 key (kprobe: the address), or an array's u32 index (uprobe).
        let k = match key.len() {
            8 => u64::from_ne_bytes(key[..].try_into().expect("8 bytes")),
            4 => u32::from_ne_bytes(key[..].try_into().expect("4 bytes")).into(),
            _ => continue,
        };
        if n == 0 {
            continue; // an array's slot of a function not called
        }
        *by_name.entry(name_of(k)).or_insert(0) += n;
    }
    Ok(by_name)
}

/// What a `--count` run prints and closes with.
pub struct CountRun<'a> {
    /// The pattern as given: `tcp_*`, `libc:malloc*`.
    pub what: &'a str,
    pub hook: &'a str,
    /// Functions probed.
    pub functions: usize,
    /// A note for the `Tracing` line (e.g. functions the kernel refused).
    pub note: String,
    /// The closing record's own fields.
    pub specific: Value,
}

/// `--count`: calls per function, counted in the kernel, printed at the end (and every -i
/// interval), busiest first. `name_of` names a key of the `counts` map.
pub fn print_counts(
    session: Session,
    run: &CountRun<'_>,
    maps: &RunMaps<'_>,
    counts: &dyn MapCore,
    name_of: &dyn Fn(u64) -> String,
) -> Result<i32> {
    let n = run.functions;
    let plural = if n == 1 { "" } else { "s" };
    let mut last = std::collections::BTreeMap::<String, u64>::new();
    let report = |out: &mut Output, period: Option<&Period>| -> Result<()> {
        let now = read_counts(counts, name_of)?;
        let mut rows: Vec<(&String, u64, u64)> = now
            .iter()
            .map(|(f, t)| (f, t.saturating_sub(*last.get(f).unwrap_or(&0)), *t))
            .filter(|(_, d, _)| *d > 0)
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        if !out.json {
            if let Some(p) = period {
                out.line(&format!("--- interval {} ---", p.number))?;
            }
            out.line(&format!("{:<40} {:>12}", "FUNCTION", "CALLS"))?;
        }
        for (f, d, total) in &rows {
            if out.json {
                let mut rec = json!({"type": "count", "func": f, "count": d, "total": total});
                if let Some(p) = period {
                    rec["interval"] = p.number.into();
                }
                out.record(&rec)?;
            } else {
                out.line(&format!("{f:<40} {d:>12}"))?;
            }
        }
        if !out.json && rows.is_empty() {
            out.line("(no calls)")?;
        }
        last = now;
        Ok(())
    };
    let mut specific = run.specific.clone();
    specific["functions"] = n.into();
    let desc = Aggregation {
        tracing: &format!(
            "{} ({n} function{plural}{}) via {}",
            run.what, run.note, run.hook
        ),
        what: run.what,
        hook: run.hook,
    };
    super::run::run_report(session, desc, maps, report, specific)
}
