// SPDX-License-Identifier: Apache-2.0
//! `btrace serve`: a Prometheus/OpenMetrics exporter. The chosen groups of the tracer
//! registry are loaded once, keep their figures in the kernel (no events reach user
//! space), and are read from their maps at each scrape of `GET /metrics` (content
//! negotiated on `Accept`: OpenMetrics 1.0 or the Prometheus text format 0.0.4), or every
//! `-i` seconds into a file for node_exporter's textfile collector (`--textfile`).
//!
//! Each tracer declares its metric families beside itself (`src/tracers/NAME/metrics.rs`,
//! through [`Tracer::metrics`]); this module adds btrace's own health figures, owns the
//! tracers (on the main thread: the HTTP server's thread asks it for each body) and the
//! daemon's life: SIGTERM/SIGINT end it with everything detached, SIGHUP re-attaches.

pub mod exposition;
pub mod http;
pub mod webconfig;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::core::cgroup_labels::{CgroupLabels, DEFAULT_MAX};
use crate::core::losses::Losses;
use crate::core::output::OutputArgs;
use crate::core::runstats::{self, RunStats};
use crate::core::scope::FilterArgs;
use crate::model::metrics::{Kind, Metrics, Value};
use crate::tracers::{self, LiveFilter, LoadConfig, LoadFn, Mode, Tracer, REGISTRY};

use exposition::Format;

/// The default address: loopback only. The exporters' customary range (9100-9999,
/// Prometheus' wiki "Default port allocations") is fully allocated, and 9435 there is
/// ebpf_exporter's, the exporter most likely to run beside btrace; 19435 is outside it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:19435";

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to serve /metrics on [default: 127.0.0.1:19435, or none with --textfile];
    /// anything but loopback exposes the metrics to the network
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Groups to load, comma-separated (those of `btrace top` that an exporter reads)
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "syscalls,tcp,runq"
    )]
    pub groups: Vec<String>,
    /// The tcp group counts only connections with this port at either end
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Also write the metrics to FILE every -i seconds (atomically: a temporary file
    /// renamed), for node_exporter's textfile collector
    #[arg(long, value_name = "FILE")]
    pub textfile: Option<PathBuf>,
    /// With --textfile: seconds between writes (default 15)
    #[arg(short = 'i', long = "interval", value_name = "SECS", requires = "textfile",
          value_parser = crate::core::session::seconds)]
    pub interval: Option<f64>,
    /// Also label the syscall, run-queue and TCP figures by cgroup (the cgroup v2 path,
    /// e.g. /system.slice/nginx.service: the calling, waiting task's or the socket's);
    /// cgroups beyond --max-cgroups share one cgroup="other" series
    #[arg(long, value_enum, value_name = "KEY")]
    pub by: Option<ServeBy>,
    /// With --by cgroup: distinct cgroup label values at most (first come, busiest
    /// first), kept until btrace ends; the rest go to cgroup="other", counted in
    /// btrace_cgroup_overflow_total [default: 100]
    #[arg(long, value_name = "N", requires = "by",
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_cgroups: Option<u32>,
    /// TLS and basic authentication from FILE, the web configuration file Prometheus
    /// exporters share (exporter-toolkit's YAML: tls_server_config with cert_file and
    /// key_file, basic_auth_users with bcrypt hashes)
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
    #[command(flatten)]
    pub scope: FilterArgs,
}

/// What `--by` labels series by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeBy {
    Cgroup,
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

fn install_signals() -> Result<()> {
    let stop = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let hup = SigAction::new(
        SigHandler::Handler(on_hup),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for (sig, act) in [
        (Signal::SIGTERM, &stop),
        (Signal::SIGINT, &stop),
        (Signal::SIGHUP, &hup),
    ] {
        // SAFETY: the handlers only store to atomics, which is async-signal-safe.
        unsafe { sigaction(sig, act) }.with_context(|| format!("installing the {sig} handler"))?;
    }
    Ok(())
}

/// One group of the registry, loaded or with the reason it could not be.
struct Group {
    name: &'static str,
    load: LoadFn,
    tracer: Option<Box<dyn Tracer>>,
    unavailable: Option<String>,
}

/// The groups an exporter may serve: registry entries a long-lived owner can load.
fn servable() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|e| e.load.is_some())
        .map(|e| e.name)
        .collect()
}

/// `--groups`, checked against the registry.
fn select(names: &[String]) -> Result<Vec<(&'static str, LoadFn)>> {
    let mut out: Vec<(&'static str, LoadFn)> = Vec::new();
    for n in names.iter().map(|n| n.trim()) {
        let entry = tracers::entry(n).filter(|e| e.load.is_some());
        let Some(e) = entry else {
            bail!(
                "--groups: no group '{n}' (groups: {})",
                servable().join(", ")
            );
        };
        if !out.iter().any(|(name, _)| *name == e.name) {
            out.push((e.name, e.load.expect("filtered on load")));
        }
    }
    if out.is_empty() {
        bail!("--groups: give at least one of {}", servable().join(", "));
    }
    Ok(out)
}

/// The tracers and btrace's own figures.
struct Exporter {
    groups: Vec<Group>,
    cfg: LoadConfig,
    stats: Option<RunStats>,
    scrape_errors: u64,
    kernel: String,
    /// `--by cgroup`: the label values given, shared by the groups (one cap in all).
    cgroups: Option<CgroupLabels>,
}

impl Exporter {
    fn load(selected: Vec<(&'static str, LoadFn)>, cfg: LoadConfig) -> Result<Exporter> {
        let mut groups: Vec<Group> = selected
            .into_iter()
            .map(|(name, load)| Group {
                name,
                load,
                tracer: None,
                unavailable: None,
            })
            .collect();
        for g in &mut groups {
            match (g.load)(&cfg) {
                Ok(t) => g.tracer = Some(t),
                Err(e) => g.unavailable = Some(format!("{e:#}")),
            }
        }
        if groups.iter().all(|g| g.tracer.is_none()) {
            let g = &groups[0];
            bail!(
                "{}: {}",
                g.name,
                g.unavailable.as_deref().unwrap_or("not loaded")
            );
        }
        Ok(Exporter {
            groups,
            stats: RunStats::enable().ok(),
            scrape_errors: 0,
            kernel: crate::core::system::kernel_release(),
            cgroups: cfg.by_cgroup.map(CgroupLabels::new),
            cfg,
        })
    }

    /// SIGHUP: loaded groups are detached and attached again (their counters kept);
    /// groups that could not be loaded are tried again. Says what it did on stderr.
    fn reload(&mut self) {
        for g in &mut self.groups {
            match g.tracer.as_mut() {
                Some(t) => {
                    t.detach();
                    match t.attach() {
                        Ok(()) => {
                            eprintln!("btrace: serve: {} re-attached via {}", g.name, t.hook())
                        }
                        Err(e) => {
                            eprintln!("btrace: serve: {}: re-attaching failed: {e:#}", g.name)
                        }
                    }
                }
                None => match (g.load)(&self.cfg) {
                    Ok(t) => {
                        eprintln!("btrace: serve: {} loaded via {}", g.name, t.hook());
                        g.tracer = Some(t);
                        g.unavailable = None;
                    }
                    Err(e) => {
                        eprintln!("btrace: serve: {} still off: {e:#}", g.name);
                        g.unavailable = Some(format!("{e:#}"));
                    }
                },
            }
        }
    }

    fn collect(&mut self) -> Metrics {
        let started = Instant::now();
        let mut m = Metrics::default();
        m.family(
            "btrace_build_info",
            Kind::Gauge,
            "btrace's version and the kernel it runs on; always 1.",
        )
        .add(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("kernel", &self.kernel),
            ],
            Value::Int(1),
        );
        for g in &self.groups {
            let (hook, on) = match &g.tracer {
                Some(t) => (t.hook(), t.attached()),
                None => ("unavailable".to_string(), false),
            };
            // An info metric is 1 by convention (it is joined on, multiplied by);
            // whether the group is attached is a gauge of its own.
            m.family(
                "btrace_group_info",
                Kind::Gauge,
                "Each group and the hook it attached with (hook=\"unavailable\" when it could not be loaded); always 1.",
            )
            .add(&[("group", g.name), ("hook", &hook)], Value::Int(1));
            m.family(
                "btrace_group_attached",
                Kind::Gauge,
                "1 while the group's programs are attached, 0 when it could not be loaded or attached.",
            )
            .add(&[("group", g.name)], Value::Int(on as u64));
        }
        let mut errors = 0;
        for g in &mut self.groups {
            if let Some(t) = g.tracer.as_mut() {
                if t.metrics(&mut m, self.cgroups.as_mut()).is_err() {
                    errors += 1;
                }
            }
        }
        if let Some(c) = &self.cgroups {
            m.family(
                "btrace_cgroup_overflow",
                Kind::Counter,
                "Cgroups whose figures went to the cgroup=\"other\" series: beyond --max-cgroups (cap), or removed before a scrape saw them (removed).",
            )
            .add(&[("reason", "cap")], Value::Int(c.over_cap))
            .add(&[("reason", "removed")], Value::Int(c.removed_unseen));
            m.family(
                "btrace_cgroup_labels",
                Kind::Gauge,
                "Distinct cgroup label values given (at most --max-cgroups), other excluded.",
            )
            .add(&[], Value::Int(c.values() as u64));
        }
        for g in &self.groups {
            let Some(t) = &g.tracer else { continue };
            let lost = t.losses().unwrap_or_else(|_| {
                errors += 1;
                Losses::default()
            });
            let fam = m.family(
                "btrace_lost",
                Kind::Counter,
                "What a group's kernel programs could not record: ringbuf (events dropped, buffer full), map_full (a bounded store was full), no_entry (an exit without its recorded entry), missed (program runs the kernel skipped: the program was already running on that CPU).",
            );
            for (kind, v) in [
                ("ringbuf", lost.ringbuf),
                ("map_full", lost.map_full),
                ("no_entry", lost.no_entry),
                ("missed", lost.missed),
            ] {
                fam.add(&[("group", g.name), ("kind", kind)], Value::Int(v));
            }
        }
        m.family(
            "btrace_bpf_stats_enabled",
            Kind::Gauge,
            "1 when the kernel's BPF run-time statistics (BPF_ENABLE_STATS) are on, so btrace_bpf_program_* are served.",
        )
        .add(&[], Value::Int(self.stats.is_some() as u64));
        if self.stats.is_some() {
            for g in &self.groups {
                let Some(t) = &g.tracer else { continue };
                let names = t.program_names();
                for (i, fd) in t.programs().into_iter().enumerate() {
                    let Ok((kernel_name, run)) = runstats::prog_stats(fd) else {
                        errors += 1;
                        continue;
                    };
                    let prog = names.get(i).cloned().unwrap_or(kernel_name);
                    let labels = [("group", g.name), ("program", prog.as_str())];
                    m.family(
                        "btrace_bpf_program_run_seconds",
                        Kind::Counter,
                        "Time the kernel spent running each BPF program of btrace.",
                    )
                    .add(&labels, Value::Float(run.run_time_ns as f64 / 1e9));
                    m.family(
                        "btrace_bpf_program_runs",
                        Kind::Counter,
                        "Runs of each BPF program of btrace.",
                    )
                    .add(&labels, Value::Int(run.run_cnt));
                    m.family(
                        "btrace_bpf_program_recursion_misses",
                        Kind::Counter,
                        "Runs skipped because the program was already running on that CPU.",
                    )
                    .add(&labels, Value::Int(run.recursion_misses));
                }
            }
        }
        self.scrape_errors += errors;
        m.family(
            "btrace_scrape_errors",
            Kind::Counter,
            "Reads of a group's kernel maps that failed during scrapes (its figures are left out of that scrape).",
        )
        .add(&[], Value::Int(self.scrape_errors));
        m.family(
            "btrace_scrape_duration_seconds",
            Kind::Gauge,
            "Time this scrape took to read the kernel maps.",
        )
        .add(&[], Value::Float(started.elapsed().as_secs_f64()));
        m
    }

    fn render(&mut self, f: Format) -> Vec<u8> {
        exposition::encode(&self.collect(), f).into_bytes()
    }
}

/// `--textfile`'s target must be a regular file or not exist yet, in an existing
/// directory: it is replaced by a rename, which would turn a device node (/dev/null) into
/// a plain file, and a symbolic link there would be replaced by a file rather than its
/// target written (refused rather than followed or replaced without a word).
fn check_textfile(path: &Path) -> Result<()> {
    let shown = path.display();
    if path.file_name().is_none() {
        bail!("--textfile {shown}: not a file name; give a path like /var/lib/node_exporter/btrace.prom");
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => bail!(
            "--textfile {shown}: is a symbolic link, which btrace does not follow; give the file's real path"
        ),
        Ok(m) if !m.is_file() => bail!(
            "--textfile {shown}: is {}, not a regular file; give the path of a file for node_exporter's textfile directory",
            crate::resolve::file_kind(&m.file_type())
        ),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = textfile_dir(path);
            if !dir.is_dir() {
                bail!("--textfile {shown}: no directory {}", dir.display());
            }
            Ok(())
        }
        Err(e) => bail!("--textfile {shown}: {e}"),
    }
}

/// The directory the temporary file goes to: the target's own, so the rename is atomic.
fn textfile_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The textfile's temporary file: created exclusively (O_CREAT|O_EXCL, so no planted
/// file or link is opened) under a random name in the target's directory.
fn textfile_temp(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(textfile_dir(path))?;
    // node_exporter usually runs as another user: readable by all, whatever the umask
    // (the metrics are served to anyone who can reach /metrics anyway).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    Ok(tmp)
}

/// Writes `body` to `path` atomically: a temporary file beside it, written, synced and
/// renamed over it. The target is checked again each time (a target that became a
/// device node or a link since the start is not replaced).
fn write_atomically(path: &Path, body: &[u8]) -> Result<()> {
    use std::io::Write;
    check_textfile(path)?;
    let write = || -> std::io::Result<()> {
        let mut tmp = textfile_temp(path)?;
        tmp.write_all(body)?;
        tmp.as_file().sync_all()?;
        // On failure the temporary file is removed when the error drops it.
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))
}

const DEFAULT_TEXTFILE_INTERVAL_S: f64 = 15.0;

pub fn run(args: ServeArgs, sink: &OutputArgs) -> Result<i32> {
    sink.refuse(
        "serve",
        "its metrics are served on GET /metrics, or written with --textfile",
    )?;
    crate::core::system::preflight()?;
    let selected = select(&args.groups)?;
    if args.by.is_some() && crate::core::scope::cgroup2_mount().is_none() {
        bail!("--by cgroup: no cgroup v2 hierarchy is mounted here");
    }
    // Bad scope arguments fail here, once, before anything loads.
    crate::core::scope::Scope::filtered(&args.scope)?;
    let listen = match (args.listen, &args.textfile) {
        (Some(a), _) => Some(a),
        (None, None) => Some(DEFAULT_LISTEN.parse().expect("valid default")),
        (None, Some(_)) => None,
    };
    if let Some(path) = &args.textfile {
        check_textfile(path)?;
        // The directory must take a new file: tried now, before anything is attached.
        textfile_temp(path).with_context(|| {
            format!(
                "--textfile {}: cannot create a file beside it",
                path.display()
            )
        })?;
    }
    let web = args
        .web_config
        .as_deref()
        .map(webconfig::WebConfig::load)
        .transpose()?;
    if web.is_some() && listen.is_none() {
        bail!("--web-config: there is no HTTP server (--textfile without --listen)");
    }
    let listener = listen
        .map(|a| TcpListener::bind(a).with_context(|| format!("cannot listen on {a}")))
        .transpose()?;
    // What was bound: the port the kernel chose for port 0.
    let listen = listener.as_ref().map(|l| l.local_addr()).transpose()?;
    if let Some(a) = listen {
        if !a.ip().is_loopback()
            && web
                .as_ref()
                .is_none_or(|w| w.auth.is_none() && w.tls.is_none())
        {
            eprintln!(
                "btrace: serve: warning: listening on {a} without --web-config: anyone who \
                 can reach this port reads the metrics (no TLS, no authentication)"
            );
        } else if !a.ip().is_loopback()
            && web
                .as_ref()
                .is_some_and(|w| w.auth.is_some() && w.tls.is_none())
        {
            eprintln!(
                "btrace: serve: warning: listening on {a} with basic authentication but no TLS: \
                 passwords cross the network in clear (add tls_server_config to the \
                 --web-config file)"
            );
        }
    }
    let scheme = if web.as_ref().is_some_and(|w| w.tls.is_some()) {
        "https"
    } else {
        "http"
    };
    install_signals()?;
    let cfg = LoadConfig {
        filter: LiveFilter {
            pid: None,
            port: args.port,
            cgroup: None,
        },
        scope: args.scope.clone(),
        mode: Mode::Exporter,
        by_cgroup: args
            .by
            .map(|ServeBy::Cgroup| args.max_cgroups.unwrap_or(DEFAULT_MAX)),
    };
    let mut exporter = Exporter::load(selected, cfg)?;
    for g in &exporter.groups {
        if let Some(why) = &g.unavailable {
            eprintln!("btrace: serve: the {} group is off: {why}", g.name);
        }
    }
    if exporter.stats.is_none() {
        eprintln!("btrace: serve: BPF run-time statistics unavailable: btrace_bpf_program_* are not served");
    }
    // A file that cannot be written at all is a usage error, said before anything runs.
    let period = Duration::from_secs_f64(args.interval.unwrap_or(DEFAULT_TEXTFILE_INTERVAL_S));
    let mut next_file = Instant::now();
    if let Some(path) = &args.textfile {
        write_atomically(path, &exporter.render(Format::Prometheus))?;
        next_file += period;
    }
    // Scrapes waiting for the main thread: past that, 503 at once.
    let (scrape_tx, scrape_rx) = sync_channel::<http::Scrape>(16);
    let server = listener
        .map(|l| {
            let web = web.unwrap_or(webconfig::WebConfig {
                tls: None,
                auth: None,
            });
            http::Server::start(l, http::Limits::default(), web, scrape_tx, &STOP)
        })
        .transpose()
        .context("starting the HTTP server")?;
    let on: Vec<String> = exporter
        .groups
        .iter()
        .filter_map(|g| {
            g.tracer
                .as_ref()
                .map(|t| format!("{} ({})", g.name, t.hook()))
        })
        .collect();
    let mut line = format!("Tracing {}", on.join(", "));
    if let Some(a) = listen {
        line.push_str(&format!("; serving {scheme}://{a}/metrics"));
    }
    if let Some(f) = &args.textfile {
        line.push_str(&format!("; writing {}", f.display()));
    }
    eprintln!("{line}. SIGTERM or Ctrl-C to end, SIGHUP to re-attach.");
    while !STOP.load(Ordering::SeqCst) {
        if RELOAD.swap(false, Ordering::SeqCst) {
            exporter.reload();
        }
        // A --cgroup made again at its path (a restarted service) is traced again.
        crate::core::scope::follow_cgroups();
        if let Some(path) = &args.textfile {
            if Instant::now() >= next_file {
                // A daemon keeps serving when the file cannot be written (a full or
                // read-only file system): said on stderr, tried again next time.
                if let Err(e) = write_atomically(path, &exporter.render(Format::Prometheus)) {
                    eprintln!("btrace: serve: {e:#}");
                }
                next_file += period;
                if next_file < Instant::now() {
                    next_file = Instant::now() + period;
                }
            }
        }
        match scrape_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(s) => {
                s.reply.send(exporter.render(s.format));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // No HTTP server (textfile only): wait for the next file or signal.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    STOP.store(true, Ordering::SeqCst);
    drop(scrape_rx);
    if let Some(s) = server {
        // The server ends within a poll round (200 ms); the deadline is for what
        // nobody foresaw: a signal must end the process whatever the clients do.
        s.join(Instant::now() + Duration::from_millis(1500));
    }
    // Dropping the tracers detaches and unloads everything.
    drop(exporter);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_checked_against_the_registry() {
        let names = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = select(&names(&["tcp", "syscalls", "tcp"])).unwrap();
        assert_eq!(
            ok.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["tcp", "syscalls"]
        );
        let e = select(&names(&["syscalls", "nope"]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--groups: no group 'nope' (groups: syscalls, tcp, runq)");
        // Registry entries that cannot be kept loaded are not groups.
        assert!(select(&names(&["kprobe"])).is_err());
    }

    #[test]
    fn textfile_is_replaced_atomically() {
        let dir = crate::resolve::scratch_dir("textfile");
        let f = dir.join("btrace.prom");
        write_atomically(&f, b"a 1\n").unwrap();
        write_atomically(&f, b"a 2\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"a 2\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
