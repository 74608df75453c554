// SPDX-License-Identifier: Apache-2.0
//! `btrace doctor`: what this kernel and this process allow, found by trying (feature
//! probes load and attach real programs), and which btrace commands will work here.

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::core::features::{self, Probe};
use crate::core::output::OutputArgs;
use crate::core::system;
use crate::tracers::{Check, Entry, REGISTRY};

#[derive(Args, Debug, Clone, Default)]
/// No flags of its own: with the global --json, one "fact" record per fact, one "command"
/// record per command and mode, then a "summary".
pub struct DoctorArgs {}

/// One row of the facts table. `ok` is None for facts that are information only.
pub struct Fact {
    pub name: &'static str,
    pub value: String,
    pub ok: Option<bool>,
    pub detail: String,
}

/// One command (and mode) and whether it works here.
pub struct CommandCheck {
    pub command: &'static str,
    pub mode: Option<&'static str>,
    pub works: bool,
    /// How it works, or why it does not.
    pub how: String,
    /// What would make it work (empty when it works).
    pub fix: String,
}

fn probe_fact(name: &'static str, p: &Probe) -> Fact {
    Fact {
        name,
        value: if p.ok { "yes" } else { "no" }.into(),
        ok: Some(p.ok),
        detail: p.detail.clone(),
    }
}

/// Which BTF btrace uses: a --btf file, or the kernel's own.
fn btf_fact() -> Fact {
    let ok = system::require_btf();
    let (value, detail) = match (system::custom_btf(), &ok) {
        (Some(p), Ok(())) => ("file".to_string(), format!("{} (--btf)", p.display())),
        (None, Ok(())) => ("kernel".to_string(), system::BTF_PATH.to_string()),
        (_, Err(e)) => ("no".to_string(), format!("{e:#}")),
    };
    Fact {
        name: "btf",
        value,
        ok: Some(ok.is_ok()),
        detail,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn caps_fact() -> Fact {
    if !system::in_initial_user_ns() {
        return Fact {
            name: "capabilities",
            value: "user namespace".into(),
            ok: Some(false),
            detail: "held only inside a user namespace, which does not allow BPF: run btrace in the host's user namespace".into(),
        };
    }
    let caps = system::effective_caps();
    let held: Vec<&str> = [
        (system::CAP_SYS_ADMIN, "SYS_ADMIN"),
        (system::CAP_BPF, "BPF"),
        (system::CAP_PERFMON, "PERFMON"),
    ]
    .into_iter()
    .filter(|(c, _)| system::has_cap(caps, *c))
    .map(|(_, n)| n)
    .collect();
    let missing = system::missing_tracing_caps(caps);
    Fact {
        name: "capabilities",
        value: if held.is_empty() {
            "none".into()
        } else {
            held.join(",")
        },
        ok: Some(missing.is_empty()),
        detail: if missing.is_empty() {
            "enough to load tracing programs".into()
        } else {
            format!(
                "missing {}: run as root or grant CAP_BPF and CAP_PERFMON",
                missing.join(" and ")
            )
        },
    }
}

fn unprivileged_fact() -> Fact {
    let v = read_trimmed("/proc/sys/kernel/unprivileged_bpf_disabled");
    let detail = match v.as_deref() {
        Some("0") => "unprivileged users may load some BPF programs",
        Some("1") => "unprivileged BPF disabled until reboot (btrace needs privileges anyway)",
        Some("2") => {
            "unprivileged BPF disabled; an admin may re-enable it (btrace needs privileges anyway)"
        }
        _ => "not readable",
    };
    Fact {
        name: "unprivileged_bpf_disabled",
        value: v.unwrap_or_else(|| "unknown".into()),
        ok: None,
        detail: detail.into(),
    }
}

fn lockdown_fact() -> Fact {
    match read_trimmed("/sys/kernel/security/lockdown") {
        Some(text) => {
            let mode = text
                .split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(['[', ']']).to_string())
                .unwrap_or(text);
            let ok = mode != "confidentiality";
            Fact {
                name: "lockdown",
                detail: if ok {
                    "BPF may read kernel memory".into()
                } else {
                    "confidentiality lockdown forbids reading kernel memory from BPF: tracers cannot run".into()
                },
                value: mode,
                ok: Some(ok),
            }
        }
        None => Fact {
            name: "lockdown",
            value: "unknown".into(),
            ok: None,
            detail:
                "no /sys/kernel/security/lockdown (securityfs not mounted, or no lockdown LSM); \
                     mount -t securityfs none /sys/kernel/security to see it"
                    .into(),
        },
    }
}

fn jit_fact() -> Fact {
    let v = read_trimmed("/proc/sys/net/core/bpf_jit_enable");
    let (ok, detail) = match v.as_deref() {
        Some("1") => (Some(true), "programs are compiled to native code"),
        Some("2") => (Some(true), "JIT on, with debug output"),
        Some("0") => (
            Some(false),
            "interpreter only: every probe costs more (sysctl net.core.bpf_jit_enable=1)",
        ),
        _ => (None, "not readable"),
    };
    Fact {
        name: "jit",
        value: v.unwrap_or_else(|| "unknown".into()),
        ok,
        detail: detail.into(),
    }
}

fn tracefs_fact() -> Fact {
    if let Some(d) = system::tracefs_dir() {
        return Fact {
            name: "tracefs",
            value: "mounted".into(),
            ok: Some(true),
            detail: d.display().to_string(),
        };
    }
    if let Some(d) = system::tracefs_mount() {
        return Fact {
            name: "tracefs",
            value: "unreadable".into(),
            ok: Some(false),
            detail: format!(
                "mounted at {} but not readable by this user: classic tracepoints need root or read access",
                d.display()
            ),
        };
    }
    let known = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|s| s.lines().any(|l| l.ends_with("tracefs")));
    Fact {
        name: "tracefs",
        value: "not mounted".into(),
        ok: Some(known),
        detail: if known {
            "a command that needs it mounts it for btrace alone, in a mount namespace of its own (the system's mounts stay as they are); for everyone: mount -t tracefs nodev /sys/kernel/tracing".into()
        } else {
            "this kernel has no tracefs (CONFIG_TRACING): classic tracepoints and kprobes cannot attach".into()
        },
    }
}

/// Every probe that decides whether a command works, run once.
pub struct Findings {
    pub facts: Vec<Fact>,
    pub commands: Vec<CommandCheck>,
}

fn command_check(command: &'static str, c: Check) -> CommandCheck {
    match c.result {
        Ok(how) => CommandCheck {
            command,
            mode: c.mode,
            works: true,
            how,
            fix: String::new(),
        },
        Err(e) => CommandCheck {
            command,
            mode: c.mode,
            works: false,
            how: crate::core::attach::describe(&e),
            fix: c.fix.into(),
        },
    }
}

/// The name doctor reports a tracer under: its command, or its group name for a tracer
/// that only the dashboard runs.
fn label(e: &Entry) -> &'static str {
    if e.command == "top" {
        e.name
    } else {
        e.command
    }
}

/// The dashboard works when its first group (syscalls) loads; the others are shown as off
/// when this kernel refuses them. Its groups are the registry's loadable tracers.
fn top_check(commands: &[CommandCheck]) -> CommandCheck {
    let groups: Vec<(&str, bool)> = REGISTRY
        .iter()
        .filter(|e| e.load.is_some())
        .map(|e| {
            let works = commands
                .iter()
                .filter(|c| c.command == label(e))
                .all(|c| c.works);
            (e.name, works)
        })
        .collect();
    let on: Vec<&str> = groups.iter().filter(|g| g.1).map(|g| g.0).collect();
    let off: Vec<&str> = groups.iter().filter(|g| !g.1).map(|g| g.0).collect();
    let first_works = groups.first().is_some_and(|g| g.1);
    let mut how = format!("groups: {}", on.join(", "));
    if !off.is_empty() {
        how += &format!("; off: {}", off.join(", "));
    }
    CommandCheck {
        command: "top",
        mode: None,
        works: first_works,
        how,
        fix: if first_works {
            String::new()
        } else {
            "needs the syscalls group (see hist)".into()
        },
    }
}

/// Why no BPF program can load here whatever the kernel allows, if so: probes would only
/// report the same EPERM as if features were missing.
fn blocked() -> Option<String> {
    if !system::in_initial_user_ns() {
        return Some("BPF is not allowed in a user namespace".into());
    }
    let missing = system::missing_tracing_caps(system::effective_caps());
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(" and ")))
}

pub fn examine() -> Findings {
    let blocked = blocked();
    let probe = |f: fn() -> Probe| match &blocked {
        Some(why) => Probe::no(format!("not tried: {why}")),
        None => f(),
    };
    let ringbuf = probe(features::ringbuf);
    let kprobe = probe(features::kprobe);
    let fentry = probe(features::fentry);
    let tp_btf = probe(features::tp_btf);
    let task_storage = probe(features::task_storage);
    let uprobe_multi = probe(features::uprobe_multi);
    let facts = vec![
        Fact {
            name: "kernel",
            value: system::kernel_release(),
            ok: None,
            detail: "uname -r".into(),
        },
        btf_fact(),
        probe_fact("ringbuf", &ringbuf),
        probe_fact("kprobes", &kprobe),
        probe_fact("fentry", &fentry),
        probe_fact("tp_btf", &tp_btf),
        probe_fact("task_storage", &task_storage),
        probe_fact("uprobe_multi", &uprobe_multi),
        tracefs_fact(),
        caps_fact(),
        unprivileged_fact(),
        lockdown_fact(),
        jit_fact(),
    ];

    // Every tracer of the registry, as the command that runs it; then the apps.
    let mut commands = Vec::new();
    if let Some(why) = &blocked {
        let fix = if system::in_initial_user_ns() {
            "run as root, or grant CAP_BPF and CAP_PERFMON"
        } else {
            "run btrace in the host's user namespace (as root, or a privileged container)"
        };
        for e in REGISTRY {
            commands.push(command_check(
                label(e),
                Check {
                    mode: None,
                    result: Err(anyhow::anyhow!("{why}")),
                    fix,
                },
            ));
        }
        return Findings { facts, commands };
    }
    for e in REGISTRY {
        for c in (e.checks)() {
            commands.push(command_check(label(e), c));
        }
    }
    let top = top_check(&commands);
    commands.push(top);
    commands.push(command_check(
        "verifier",
        Check {
            mode: None,
            result: crate::apps::verifier::probe(),
            fix: "needs privileges to load BPF programs (root, or CAP_BPF and CAP_PERFMON)",
        },
    ));
    Findings { facts, commands }
}

fn fact_json(f: &Fact) -> Value {
    json!({"type": "fact", "name": f.name, "value": f.value, "ok": f.ok, "detail": f.detail})
}

fn command_json(c: &CommandCheck) -> Value {
    json!({
        "type": "command", "command": c.command, "mode": c.mode, "works": c.works,
        "how": c.how, "fix": if c.fix.is_empty() { Value::Null } else { c.fix.clone().into() },
    })
}

fn command_label(c: &CommandCheck) -> String {
    match c.mode {
        Some(m) => format!("{} --hook {m}", c.command),
        None => c.command.to_string(),
    }
}

pub fn run(_: DoctorArgs, sink: &OutputArgs) -> Result<()> {
    let f = examine();
    let mut out = sink.sink()?;
    if out.json {
        for fact in &f.facts {
            out.record(&fact_json(fact))?;
        }
        for c in &f.commands {
            out.record(&command_json(c))?;
        }
        let labels = |works: bool| -> Vec<String> {
            f.commands
                .iter()
                .filter(|c| c.works == works)
                .map(command_label)
                .collect()
        };
        out.record(&json!({
            "type": "summary", "kernel": system::kernel_release(),
            "works": labels(true), "broken": labels(false),
        }))?;
        out.flush()?;
        return Ok(());
    }
    // Rows marked '!' are the ones that stop something from working.
    let w = f
        .facts
        .iter()
        .map(|x| x.value.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.line(&format!(" {:<25} {:<w$} DETAIL", "FACT", "STATE"))?;
    for fact in &f.facts {
        let mark = if fact.ok == Some(false) { "!" } else { " " };
        out.line(&format!(
            "{mark}{:<25} {:<w$} {}",
            fact.name, fact.value, fact.detail
        ))?;
    }
    out.line("")?;
    out.line(&format!(" {:<25} {:<5} HOW / WHY NOT", "COMMAND", "WORKS"))?;
    for c in &f.commands {
        let works = if c.works { "yes" } else { "no" };
        let mark = if c.works { " " } else { "!" };
        out.line(&format!(
            "{mark}{:<25} {:<5} {}",
            command_label(c),
            works,
            c.how
        ))?;
        if !c.works {
            out.line(&format!("{:<32} fix: {}", "", c.fix))?;
        }
    }
    out.flush()?;
    Ok(())
}
