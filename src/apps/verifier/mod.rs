// SPDX-License-Identifier: Apache-2.0
//! `btrace verifier [CASE]`: loads deliberately wrong programs (src/bpf/verifier_cases.bpf.c)
//! and shows what the kernel's verifier says about each, why, and the fixed variant,
//! which is then loaded to prove the fix. Nothing is attached: loading is the verdict.

use std::mem::MaybeUninit;

use anyhow::{bail, Context, Result};
use clap::Args;
use libbpf_rs::skel::{OpenSkel, Skel};
use serde_json::{json, Value};

use crate::core::bpf_log;
use crate::core::output::{Output, OutputArgs};
use crate::core::skel::SkelKind;

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/verifier_cases.skel.rs"));
}
use skel::{OpenVerifierCasesSkel, VerifierCasesSkel, VerifierCasesSkelBuilder};

crate::skel_kind!(
    VerifierCasesKind,
    VerifierCasesSkelBuilder,
    OpenVerifierCasesSkel,
    VerifierCasesSkel
);

#[derive(Args, Debug, Clone, Default)]
pub struct VerifierArgs {
    /// One case (loop, bounds, null, stack, uninit, kptr); all when absent
    #[arg(value_name = "CASE")]
    pub case: Option<String>,
    /// Show the whole verifier log (text mode shows its last lines)
    #[arg(long)]
    pub full_log: bool,
}

/// One broken rule: the program that breaks it and the one that does not.
pub struct Case {
    pub name: &'static str,
    pub title: &'static str,
    pub intent: &'static str,
    pub program_type: &'static str,
    pub bad: &'static str,
    pub fixed: &'static str,
    /// Fragments of the rejection that stay the same across kernels (5.10 .. 6.18).
    pub key: &'static [&'static str],
    pub why: &'static str,
    pub fix: &'static str,
    /// Load without CAP_PERFMON (and CAP_SYS_ADMIN), as a less privileged loader would.
    pub without_perfmon: bool,
}

pub const CASES: [Case; 6] = [
    Case {
        name: "loop",
        title: "unbounded loop",
        intent: "draw random numbers until one is a multiple of 1024",
        program_type: "tracepoint",
        bad: "loop_bad",
        fixed: "loop_fixed",
        key: &["infinite loop detected", "back-edge"],
        why: "The verifier must prove that every program ends. Walking the loop, it reaches the \
              loop head again in exactly the same state, so nothing shows progress toward an \
              exit: it rejects the loop as possibly infinite.",
        fix: "Give the loop a constant bound (for (i = 0; i < 64; i++) ... break): the verifier \
              walks at most that many iterations (bounded loops need Linux 5.3+; bpf_loop() \
              5.17+ takes a callback instead).",
        without_perfmon: false,
    },
    Case {
        name: "bounds",
        title: "out-of-bounds map value access",
        intent: "count an event in one of 16 slots chosen at random",
        program_type: "tracepoint",
        bad: "bounds_bad",
        fixed: "bounds_fixed",
        key: &[
            "invalid access to map value",
            "outside of the allowed memory range",
        ],
        why: "The index is random % 32, so it can be up to 31, but the map value holds 16 \
              slots of 8 bytes (128 bytes). The verifier tracks the index's range and sees that \
              slot[i] can land past the end of the value.",
        fix: "Check the index against the array size before using it (if (i < 16)); the \
              verifier narrows the range on that branch and accepts the access.",
        without_perfmon: false,
    },
    Case {
        name: "null",
        title: "missing NULL check after a map lookup",
        intent: "count calls per process in a hash map",
        program_type: "tracepoint",
        bad: "null_bad",
        fixed: "null_fixed",
        key: &["map_value_or_null"],
        why: "bpf_map_lookup_elem() returns NULL when the key is absent; its result has the type \
              map_value_or_null, and the verifier refuses any access through it until the \
              program has tested it.",
        fix: "Test the pointer (if (!n) ...): on the other branch its type becomes \
              map_value and the access is allowed.",
        without_perfmon: false,
    },
    Case {
        name: "stack",
        title: "stack over 512 bytes",
        intent: "look at the first 288 bytes of a packet in each of two nested functions",
        program_type: "socket filter",
        bad: "stack_bad",
        fixed: "stack_fixed",
        key: &["combined stack size"],
        why: "A BPF program has 512 bytes of stack for its whole call chain. clang already \
              refuses one function over the limit; here each function is under it, but the \
              calls nest, and the frames together are over 512 bytes. (Recent kernels give \
              tracing programs a private stack with a relaxed limit for call chains; socket \
              filters keep the classic one.)",
        fix: "Keep large buffers out of the stack: take them from a per-CPU array map (one \
              element, looked up at the start) and work there.",
        without_perfmon: false,
    },
    Case {
        name: "uninit",
        title: "read of uninitialised stack",
        intent: "store a 16-counter record whose first counter is 1",
        program_type: "socket filter",
        bad: "uninit_bad",
        fixed: "uninit_fixed",
        key: &["read from stack"],
        why: "Only slot[0] of the on-stack record was written, but the helper reads all 128 \
              bytes into the map: the rest is uninitialised stack, which could leak old kernel \
              data. (Loaders holding CAP_PERFMON may do this since Linux 6.5 and read an \
              unknown value; btrace loads this case without CAP_PERFMON, so the rule applies \
              on every kernel.)",
        fix: "Initialise the whole record first (struct counters c = {};).",
        without_perfmon: true,
    },
    Case {
        name: "kptr",
        title: "kernel pointer dereferenced without a probe-read helper",
        intent: "read the current task's process id from its task_struct",
        program_type: "tracepoint",
        bad: "kptr_bad",
        fixed: "kptr_fixed",
        key: &["invalid mem access"],
        why: "bpf_get_current_task() returns the task's address as a plain number (a scalar): \
              the verifier knows nothing about the memory behind it and refuses a direct load \
              through it, which could fault in the kernel.",
        fix: "Read kernel memory through bpf_probe_read_kernel(), here via BPF_CORE_READ(t, \
              tgid), which also relocates the field offset for the running kernel.",
        without_perfmon: false,
    },
];

/// What the kernel said about one program.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub accepted: bool,
    /// The load error (empty when accepted).
    pub error: String,
    /// The verifier's log of a rejected program.
    pub log: Vec<String>,
    /// Instructions of the program as loaded.
    pub insns: usize,
}

/// The verifier's own lines from libbpf's messages about a failed load.
fn verifier_log(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for l in lines {
        if l.contains("-- BEGIN PROG LOAD LOG --") {
            inside = true;
        } else if l.contains("-- END PROG LOAD LOG --") {
            inside = false;
        } else if inside {
            out.push(l.clone());
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out
}

/// Loads program `prog` alone and returns the verdict.
fn load_program(prog: &str) -> Result<Verdict> {
    let mut storage = MaybeUninit::uninit();
    // Only the open step of core::lifecycle: each case is loaded alone for the
    // verifier's verdict, never attached.
    let mut open = VerifierCasesKind::open(&mut storage).context("opening the verifier cases")?;
    let mut found = false;
    for mut p in open.open_object_mut().progs_mut() {
        let this = p.name() == prog;
        found |= this;
        p.set_autoload(this);
    }
    if !found {
        bail!("no program {prog} in verifier_cases.bpf.c");
    }
    bpf_log::take();
    let loaded = open.load();
    let verdict = match loaded {
        Ok(skel) => {
            let insns = skel
                .object()
                .progs()
                .find(|p| p.name() == prog)
                .map(|p| p.insn_cnt())
                .unwrap_or(0);
            Ok(Verdict {
                accepted: true,
                insns,
                ..Verdict::default()
            })
        }
        Err(e) => Ok(Verdict {
            accepted: false,
            error: e.to_string(),
            log: verifier_log(&bpf_log::take()),
            insns: 0,
        }),
    };
    verdict
}

/// Drops CAP_PERFMON and CAP_SYS_ADMIN from this thread's effective capabilities
/// (capabilities are per thread; the rest of btrace keeps them).
fn drop_perfmon_in_this_thread() -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words, as capget(2) documents.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("capget");
        }
        for cap in [
            crate::core::system::CAP_PERFMON,
            crate::core::system::CAP_SYS_ADMIN,
        ] {
            data[(cap / 32) as usize].effective &= !(1u32 << (cap % 32));
        }
        if libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("capset");
        }
    }
    Ok(())
}

/// Loads `prog` as the case asks: in a thread of its own when it must do without
/// CAP_PERFMON.
pub fn judge(case: &Case, prog: &'static str) -> Result<Verdict> {
    if !case.without_perfmon {
        return load_program(prog);
    }
    std::thread::spawn(move || {
        drop_perfmon_in_this_thread()?;
        load_program(prog)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the loader thread for {prog} panicked"))?
}

/// Lines of the log that say what went wrong: those holding a key fragment, else the last
/// line before the verifier's statistics.
pub fn key_lines(case: &Case, log: &[String]) -> Vec<String> {
    let hits: Vec<String> = log
        .iter()
        .filter(|l| case.key.iter().any(|k| l.contains(k)))
        .cloned()
        .collect();
    if !hits.is_empty() {
        return hits;
    }
    log.iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| {
            !l.is_empty() && !l.starts_with("processed") && !l.starts_with("verification time")
        })
        .map(|l| vec![l.to_string()])
        .unwrap_or_default()
}

/// Whether the kernel did what the case shows: the bad program rejected by the
/// verifier, the fixed one accepted.
pub struct Outcome {
    pub bad: Verdict,
    pub fixed: Verdict,
    pub key_lines: Vec<String>,
}

pub fn run_case(case: &Case) -> Result<Outcome> {
    let bad = judge(case, case.bad)?;
    let fixed = judge(case, case.fixed)?;
    let key_lines = key_lines(case, &bad.log);
    Ok(Outcome {
        bad,
        fixed,
        key_lines,
    })
}

/// Whether this command works here (for `btrace doctor`): one fixed variant loads.
pub fn probe() -> Result<String> {
    let v = load_program("null_fixed")?;
    if !v.accepted {
        bail!("a correct program was refused: {}", v.error);
    }
    Ok("a correct tracepoint program loaded".into())
}

const TEXT_LOG_LINES: usize = 20;

fn highlight(line: &str, tty: bool) -> String {
    if tty {
        format!(">> \x1b[1;31m{line}\x1b[0m")
    } else {
        format!(">> {line}")
    }
}

fn print_text(out: &mut Output, n: usize, case: &Case, o: &Outcome, full: bool) -> Result<()> {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(1) } == 1;
    out.line(&format!(
        "== {n}/{} {}: {} ==",
        CASES.len(),
        case.name,
        case.title
    ))?;
    out.line(&format!(
        "Intent:   {} ({} program {})",
        case.intent, case.program_type, case.bad
    ))?;
    if o.bad.accepted {
        out.line("Verifier: ACCEPTED it: this kernel does not enforce the rule as shown here.")?;
    } else {
        let shown = if full || o.bad.log.len() <= TEXT_LOG_LINES {
            &o.bad.log[..]
        } else {
            &o.bad.log[o.bad.log.len() - TEXT_LOG_LINES..]
        };
        out.line(&format!(
            "Verifier: REJECTED ({}). Its log{}, key lines marked >>:",
            o.bad.error,
            if shown.len() < o.bad.log.len() {
                format!(
                    " (last {} of {} lines; --full-log for all)",
                    shown.len(),
                    o.bad.log.len()
                )
            } else {
                String::new()
            }
        ))?;
        for l in shown {
            if o.key_lines.contains(l) {
                out.styled_line(&format!("  {}", highlight(l, tty)))?;
            } else {
                out.line(&format!("     {l}"))?;
            }
        }
    }
    out.line(&format!("Why:      {}", case.why))?;
    out.line(&format!("Fix:      {}", case.fix))?;
    if o.fixed.accepted {
        out.line(&format!(
            "Fixed:    {} ACCEPTED by this kernel ({} instructions loaded).",
            case.fixed, o.fixed.insns
        ))?;
    } else {
        out.line(&format!(
            "Fixed:    {} REJECTED: {}",
            case.fixed, o.fixed.error
        ))?;
        for l in key_lines(case, &o.fixed.log) {
            out.styled_line(&format!("  {}", highlight(&l, tty)))?;
        }
    }
    out.line("")?;
    Ok(())
}

fn case_json(case: &Case, o: &Outcome) -> Value {
    json!({
        "type": "case", "case": case.name, "title": case.title, "intent": case.intent,
        "program_type": case.program_type, "program": case.bad,
        "rejected": !o.bad.accepted, "error": o.bad.error, "log": o.bad.log,
        "key_lines": o.key_lines, "explanation": case.why, "fix": case.fix,
        "fixed_program": case.fixed, "fixed_loaded": o.fixed.accepted,
        "fixed_error": if o.fixed.accepted { Value::Null } else { o.fixed.error.clone().into() },
    })
}

/// With the global --json: one "case" record per case, then a "summary".
pub fn run(args: VerifierArgs, sink: &OutputArgs) -> Result<()> {
    let chosen: Vec<&Case> = match &args.case {
        None => CASES.iter().collect(),
        Some(name) => match CASES.iter().find(|c| c.name == name) {
            Some(c) => vec![c],
            None => bail!(
                "unknown verifier case '{name}'; the cases are {}",
                CASES.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    crate::core::system::preflight()?;
    let mut out = sink.sink()?;
    let (mut rejected, mut fixed_ok) = (0, 0);
    let mut surprises = Vec::new();
    for (i, case) in chosen.iter().enumerate() {
        let o = run_case(case)?;
        rejected += usize::from(!o.bad.accepted);
        fixed_ok += usize::from(o.fixed.accepted);
        if o.bad.accepted {
            surprises.push(format!("{}: the wrong program was accepted", case.name));
        }
        if !o.fixed.accepted {
            surprises.push(format!(
                "{}: the fixed program was rejected ({})",
                case.name, o.fixed.error
            ));
        }
        if out.json {
            out.record(&case_json(case, &o))?;
        } else {
            let n = CASES.iter().position(|c| c.name == case.name).unwrap_or(i) + 1;
            print_text(&mut out, n, case, &o, args.full_log)?;
        }
        out.flush()?;
    }
    if out.json {
        out.record(&json!({
            "type": "summary", "kernel": crate::core::system::kernel_release(),
            "cases": chosen.len(), "rejected": rejected, "fixed_loaded": fixed_ok,
        }))?;
    } else {
        out.line(&format!(
            "{} case(s) on {}: {rejected} rejected as expected, {fixed_ok} fixed variant(s) loaded.",
            chosen.len(),
            crate::core::system::kernel_release()
        ))?;
    }
    out.flush()?;
    if !surprises.is_empty() {
        bail!("unexpected verdicts: {}", surprises.join("; "));
    }
    Ok(())
}
