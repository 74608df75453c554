// SPDX-License-Identifier: Apache-2.0
//! What this kernel really allows, found by trying: each probe loads (and where it matters
//! attaches) a tiny program from features.bpf.c and reports success or the reason
//! it failed. Used by `btrace doctor` and by commands that explain why they cannot run.

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{Link, OpenProgramMut};

use crate::core::skel::{Loaded, SkelKind};
use crate::resolve::btf;

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/features.skel.rs"));
}
use skel::{FeaturesSkel, FeaturesSkelBuilder, OpenFeaturesSkel};

crate::skel_kind!(
    FeaturesKind,
    FeaturesSkelBuilder,
    OpenFeaturesSkel,
    FeaturesSkel
);
type Features = Loaded<FeaturesKind>;

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub ok: bool,
    /// What was tried and what happened (the error on failure).
    pub detail: String,
}

impl Probe {
    pub fn yes(detail: impl Into<String>) -> Self {
        Probe {
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn no(detail: impl Into<String>) -> Self {
        Probe {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Functions attach probes use, in order: the first the kernel's BTF has.
const PROBE_TARGETS: [&str; 4] = ["do_sys_openat2", "vfs_read", "do_nanosleep", "schedule"];

/// A kernel function to test-attach fentry/kprobe to.
pub fn probe_target() -> Option<&'static str> {
    let btf = btf::vmlinux().ok()?;
    PROBE_TARGETS
        .into_iter()
        .find(|f| btf::proto_in(&btf, f).is_some())
}

/// Kprobes exist when the kernel was built with CONFIG_KPROBES (and kprobe events):
/// the perf PMU or the tracefs control file shows it.
pub fn kprobes_present() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
        || crate::core::system::tracefs_dir().is_some_and(|d| d.join("kprobe_events").exists())
}

/// Loads the probe object with only `prog` enabled; `setup` can adjust that program.
/// Only the open step of core::lifecycle: a probe loads one program alone to learn
/// whether the kernel takes it, with no scope, no fallback and its own attach test.
fn load_only(
    prog: &str,
    mut setup: impl FnMut(&mut OpenProgramMut<'_>) -> Result<()>,
) -> Result<Features> {
    Loaded::new(|storage| {
        let mut open = FeaturesKind::open(storage)?;
        for mut p in open.open_object_mut().progs_mut() {
            let wanted = p.name() == prog;
            p.set_autoload(wanted);
            if wanted {
                setup(&mut p)?;
            }
        }
        if prog != "probe_task_storage" {
            open.maps.probe_store.set_autocreate(false)?;
        }
        Ok(open.load()?)
    })
}

/// The error itself: the kernel's errno says it all for these one-line probes (libbpf's
/// kept log is dropped, so it does not leak into a later error).
fn describe(e: anyhow::Error) -> String {
    crate::core::bpf_log::take();
    format!("{e:#}")
}

/// Loads `prog` alone (after `setup`), attaches it with `attach`, and detaches again.
fn load_and_attach(
    prog: &str,
    setup: impl FnMut(&mut OpenProgramMut<'_>) -> Result<()>,
    attach: impl FnOnce(&Features) -> libbpf_rs::Result<Link>,
) -> Result<()> {
    let skel = load_only(prog, setup).context("loading")?;
    // Attached is the answer; dropping the link detaches at once.
    drop(attach(&skel).context("attaching")?);
    Ok(())
}

/// The probe's answer for an attach test on the kernel function `target`.
fn on_target(target: &str, result: Result<()>) -> Probe {
    match result {
        Ok(()) => Probe::yes(format!("attached to {target}")),
        Err(e) => Probe::no(format!("test on {target}: {}", describe(e))),
    }
}

/// fentry: load and attach a real fentry program (the answer cannot be read from the
/// version: sandboxes and kernels without ftrace direct calls refuse it).
pub fn fentry() -> Probe {
    let Some(target) = probe_target() else {
        return Probe::no("no known function to test-attach to in the kernel's BTF");
    };
    let result = load_and_attach(
        "probe_fentry",
        |p| {
            p.set_attach_target(0, Some(target.to_string()))
                .context("setting the fentry target")
        },
        |skel| skel.progs.probe_fentry.attach_trace(),
    );
    on_target(target, result)
}

/// kprobes: present, and a real kprobe attaches.
pub fn kprobe() -> Probe {
    if !kprobes_present() {
        return Probe::no(
            "no kprobe support (CONFIG_KPROBES/CONFIG_KPROBE_EVENTS not set: no /sys/bus/event_source/devices/kprobe, no kprobe_events)",
        );
    }
    let Some(target) = probe_target() else {
        return Probe::no("no known function to test-attach to");
    };
    let result = load_and_attach(
        "probe_kprobe",
        |_| Ok(()),
        |skel| skel.progs.probe_kprobe.attach_kprobe(false, target),
    );
    on_target(target, result)
}

/// uprobe_multi links (Linux 6.6+; CAP_BPF and CAP_PERFMON suffice, where uprobes through
/// perf events need CAP_SYS_ADMIN). Asked as libbpf asks: a link on "/" fails with EBADF
/// (not a regular file) where the kernel has them, with EINVAL where it does not.
pub fn uprobe_multi() -> Probe {
    let result = load_and_attach(
        "probe_uprobe_multi",
        |_| Ok(()),
        |skel| {
            skel.progs.probe_uprobe_multi.attach_uprobe_multi_with_opts(
                -1,
                "/",
                "",
                libbpf_rs::UprobeMultiOpts {
                    offsets: vec![0],
                    ..Default::default()
                },
            )
        },
    );
    let Err(e) = result else {
        return Probe::yes("uprobe_multi link created");
    };
    let errno = crate::core::attach::os_error(&e);
    // libbpf's log of the expected refusal is no part of a later error.
    crate::core::bpf_log::take();
    match errno {
        Some(libc::EBADF) => Probe::yes(
            "uprobe_multi links exist (a test link on / was refused as not a regular file)",
        ),
        Some(libc::EINVAL | libc::EOPNOTSUPP) => {
            Probe::no("this kernel has no uprobe_multi links (Linux 6.6+)")
        }
        _ => Probe::no(format!("uprobe_multi test link: {}", describe(e))),
    }
}

/// tp_btf: a BTF-typed tracepoint program on sys_enter loads and attaches.
pub fn tp_btf() -> Probe {
    match load_and_attach(
        "probe_tp_btf",
        |_| Ok(()),
        |skel| skel.progs.probe_tp_btf.attach(),
    ) {
        Ok(()) => Probe::yes("tp_btf/sys_enter attached"),
        Err(e) => Probe::no(describe(e)),
    }
}

/// Task-local storage usable from tracing programs (5.11+).
pub fn task_storage() -> Probe {
    match load_only("probe_task_storage", |_| Ok(())) {
        Ok(_skel) => Probe::yes("task storage map used from a tp_btf program"),
        Err(e) => Probe::no(describe(e)),
    }
}

/// BPF ring buffer maps (5.8+), asked of the kernel through libbpf's probe.
pub fn ringbuf() -> Probe {
    // SAFETY: a probe call with no options.
    let rc = unsafe {
        libbpf_sys::libbpf_probe_bpf_map_type(libbpf_sys::BPF_MAP_TYPE_RINGBUF, std::ptr::null())
    };
    probed(
        rc,
        "BPF_MAP_TYPE_RINGBUF map created",
        "the kernel has no BPF_MAP_TYPE_RINGBUF (needs Linux 5.8+)",
    )
}

/// BPF cookies in kprobe-type programs (bpf_get_attach_cookie, Linux 5.15+), asked of
/// the kernel through libbpf's helper probe.
pub fn attach_cookie() -> Probe {
    // SAFETY: a probe call with no options.
    let rc = unsafe {
        libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_sys::BPF_PROG_TYPE_KPROBE,
            libbpf_sys::BPF_FUNC_get_attach_cookie,
            std::ptr::null(),
        )
    };
    crate::core::bpf_log::take();
    probed(
        rc,
        "bpf_get_attach_cookie available to kprobe programs",
        "the kernel has no BPF cookies (bpf_get_attach_cookie: Linux 5.15+)",
    )
}

/// The answer of one of libbpf's probes (1: yes, 0: no, negative: the probe itself failed
/// with that errno), `yes` or `no` saying what it means.
fn probed(rc: i32, yes: &str, no: &str) -> Probe {
    match rc {
        1 => Probe::yes(yes),
        0 => Probe::no(no),
        e => Probe::no(format!(
            "probing failed: {}",
            std::io::Error::from_raw_os_error(-e)
        )),
    }
}

/// The kernel's preemption model as far as it can be told without debugfs: the current
/// dynamic mode (debugfs), a `preempt=` boot option, else the build's default from the
/// kernel config. None when nothing says.
fn preemption_model() -> Option<String> {
    if let Ok(modes) = std::fs::read_to_string("/sys/kernel/debug/sched/preempt") {
        // "none voluntary (full) lazy": the current one is in parentheses.
        if let Some(m) = modes
            .split_whitespace()
            .find_map(|w| w.strip_prefix('(')?.strip_suffix(')'))
        {
            return Some(m.to_string());
        }
    }
    if let Ok(cmdline) = std::fs::read_to_string("/proc/cmdline") {
        if let Some(m) = cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix("preempt="))
        {
            return Some(m.to_string());
        }
    }
    let config = kernel_config()?;
    let set = |name: &str| config.lines().any(|l| l.strip_prefix(name) == Some("=y"));
    Some(
        if set("CONFIG_PREEMPT_RT") || set("CONFIG_PREEMPT") {
            "full"
        } else if set("CONFIG_PREEMPT_LAZY") {
            "lazy"
        } else if set("CONFIG_PREEMPT_VOLUNTARY") {
            "voluntary"
        } else if set("CONFIG_PREEMPT_NONE") {
            "none"
        } else {
            return None;
        }
        .to_string(),
    )
}

/// The running kernel's build configuration: /proc/config.gz (CONFIG_IKCONFIG_PROC), else
/// the distribution's /boot/config-RELEASE.
fn kernel_config() -> Option<String> {
    use std::io::Read;
    if let Ok(f) = std::fs::File::open("/proc/config.gz") {
        let mut text = String::new();
        if flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .is_ok()
        {
            return Some(text);
        }
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    std::fs::read_to_string(Path::new("/boot").join(format!("config-{}", release.trim()))).ok()
}

/// Why BPF programs on the syscall tracepoints (tp_btf, raw_tp) can be skipped by this
/// kernel, if they can: from 6.13 these tracepoints are "faultable" and run their probes
/// preemptibly; on a preemptible kernel a program preempted mid-run keeps its per-CPU
/// recursion guard, and every other task's syscall on that CPU meanwhile skips it
/// (counted as `missed`: 7.3 under load skipped thousands a second). The classic
/// tracepoint way runs with preemption off and misses nothing. Unknown preemption is
/// taken as preemptible.
pub fn syscall_hooks_skip_runs() -> Option<String> {
    // The preemption model first: reading it is cheap, and a kernel that does not preempt
    // needs no look at BTF (parsing vmlinux's took a fifth of hist's start-up).
    let model = preemption_model();
    if matches!(model.as_deref(), Some("none") | Some("voluntary")) {
        return None;
    }
    let btf = btf::vmlinux().ok()?;
    if btf::struct_has_member(&btf, "tracepoint_ext", "faultable") != Some(true) {
        return None;
    }
    Some(match model {
        Some(m) => format!(
            "syscall tracepoints run BPF programs preemptibly here (faultable tracepoints, preemption '{m}')"
        ),
        None => "syscall tracepoints run BPF programs preemptibly here (faultable tracepoints, preemption model unknown)".to_string(),
    })
}
