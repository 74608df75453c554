// SPDX-License-Identifier: Apache-2.0
//! The run every tracing command shares: the common flags, the traced target (see
//! [`target`]), Ctrl-C/SIGTERM, `--duration`, `--interval`, and the
//! closing record.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::core::losses::Losses;
use crate::core::output::{Output, OutputArgs, OutputFile};
use crate::core::target::{self, ExitStatus, Target};

/// Flags that mean the same in every tracing command (`--json`, `-o` and `-v` are
/// global: [`OutputArgs`], main).
#[derive(Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Trace this process and the processes it starts; stop when the last of them has
    /// exited (with --no-children: this process alone, until it exits)
    #[arg(short = 'p', long, value_name = "PID", conflicts_with = "cmd")]
    pub pid: Option<u32>,
    /// Run CMD once every probe is attached, trace it and the processes it starts, stop
    /// when the last of them has exited, daemons included (with --no-children: when CMD
    /// exits); btrace then exits with CMD's status
    #[arg(short = 'c', long = "cmd", value_name = "CMD")]
    pub cmd: Option<String>,
    /// Stop after SECS seconds
    #[arg(short = 'd', long, value_name = "SECS", value_parser = seconds)]
    pub duration: Option<f64>,
}

/// `-i`, for the commands that aggregate (and print per interval).
#[derive(Args, Debug, Clone, Default)]
pub struct IntervalArgs {
    /// Print (and start counting afresh) every SECS seconds
    #[arg(short = 'i', long, value_name = "SECS", value_parser = seconds)]
    pub interval: Option<f64>,
}

/// The longest `-d`/`-i` accepted: longer would overflow the clock arithmetic, and no
/// run lasts that long.
pub const MAX_SECS: f64 = 100_000_000.0;

pub fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= MAX_SECS => Ok(v),
        Ok(v) if v > MAX_SECS => Err(format!(
            "'{s}' seconds is too long: at most {MAX_SECS:.0} (about 3 years)"
        )),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicU32 = AtomicU32::new(0);
static HANDLER: OnceLock<()> = OnceLock::new();
/// An eventfd made readable by a stop, so that [`sleep_unless_stopped`] wakes at once
/// (-1 until the handler is installed).
static STOP_FD: AtomicI32 = AtomicI32::new(-1);

/// Makes [`STOP_FD`] readable. Async-signal-safe (one write).
fn signal_stop_fd() {
    let fd = STOP_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to a descriptor this process owns; an
        // eventfd takes exactly 8 bytes.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// Ctrl-C, SIGTERM and SIGHUP ask the loop to finish and print final results; a second
/// one ends btrace at once (with a `-c` command killed first), with the status a shell
/// gives a process that signal killed: 128 + its number (130 for SIGINT, 143 for
/// SIGTERM).
extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    signal_stop_fd();
    if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
        target::kill_child_now();
        // SAFETY: _exit is async-signal-safe; the kernel closes every descriptor, and
        // the programs and links go with them.
        unsafe { libc::_exit(128 + sig) };
    }
}

fn install_stop_handler() -> Result<()> {
    if HANDLER.get().is_some() {
        return Ok(());
    }
    target::note_inherited_ignored();
    // SAFETY: plain syscall; the descriptor is kept for the process's lifetime.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd >= 0 {
        STOP_FD.store(fd, Ordering::SeqCst);
    }
    let stop = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to atomics, sends a signal and calls _exit,
        // each async-signal-safe.
        unsafe { sigaction(sig, &stop) }
            .with_context(|| format!("installing the {sig} handler"))?;
    }
    let _ = HANDLER.set(());
    Ok(())
}

/// Asks the run loop to end as Ctrl-C would (e.g. a quit key in the dashboard).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
    signal_stop_fd();
}

/// Sleeps for `wait`, or less when a stop is asked for (Ctrl-C, SIGTERM, SIGHUP,
/// [`request_stop`]): `std::thread::sleep` resumes after a signal, which made a command
/// that only sleeps between prints exit up to a whole poll tick (100 ms) after Ctrl-C.
pub fn sleep_unless_stopped(wait: Duration) {
    let fd = STOP_FD.load(Ordering::SeqCst);
    if fd < 0 {
        std::thread::sleep(wait);
        return;
    }
    if stop_requested() {
        return;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one pollfd and a timespec, both live for the call; no signal mask change.
    // A stop that came after the check above left the eventfd readable: no wake-up is
    // lost. An early return (EINTR) only shortens one tick of the caller's loop.
    unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Interrupted,
    DurationElapsed,
    TargetExited,
}

/// What the loop asks of the command.
pub enum Step {
    /// Consume events, waiting at most this long.
    Poll(Duration),
    /// An interval ended: print and reset.
    Interval,
}

/// What a command's closing record says (see [`Session::finish`]).
pub struct Closing<'a> {
    /// What was traced, for the text line ("syscalls", a function, a tracepoint).
    pub what: &'a str,
    /// The hook (and store) it attached with.
    pub hook: &'a str,
    /// How many of what were shown, e.g. ("events", 12); None for aggregating commands.
    pub counted: Option<(&'a str, u64)>,
    pub losses: Losses,
    /// The command's own JSON fields, first in the record.
    pub specific: serde_json::Value,
}

pub struct Session {
    target: Target,
    duration: Option<Duration>,
    interval: Option<Duration>,
    started: Instant,
    end: Option<End>,
    /// Whether the -p/-c process has exited (the run may go on while its tree does).
    root_exited: bool,
    /// How many processes of the followed tree still ran when the -p/-c process exited
    /// (None: no tree followed, or the process has not exited).
    outlived: Option<usize>,
    /// `--json`: the form of every result.
    json: bool,
    /// `-o`, opened when the session starts (before anything is attached), until the
    /// command takes it with [`Session::output`].
    output: Option<OutputFile>,
}

impl Session {
    /// Validates the target (a `-p` that exists, a `-c` that can run) and, for `-c`,
    /// forks the child now so its pid can be given to the kernel programs before load;
    /// `stdio` gives the `-c` command's streams (default: inherited, or stdout to
    /// stderr when NDJSON goes to stdout). Reached through
    /// [`Checked::start`](crate::core::run::Checked::start): after the system checks.
    pub(in crate::core) fn start(
        args: &TraceArgs,
        sink: &OutputArgs,
        interval: Option<f64>,
        stdio: Option<target::Stdio>,
    ) -> Result<Self> {
        // In JSON mode btrace's stdout is the record stream: the command's own output goes
        // to stderr, unless the records go to a file.
        let stdio = stdio.unwrap_or(if sink.json && sink.output.is_none() {
            target::Stdio::StdoutToStderr
        } else {
            target::Stdio::Inherit
        });
        install_stop_handler()?;
        crate::core::scope::forget_followed_tree();
        crate::core::scope::forget_cgroups();
        // Before the target: a file that cannot be written fails before a -c command
        // is started, and the command's program is then checked against it.
        let output = sink.open()?;
        let target = match (&args.pid, &args.cmd) {
            (Some(pid), _) => target::watch_process(*pid)?,
            (None, Some(cmd)) => target::spawn_gated(cmd, stdio)?,
            (None, None) => Target::Everything,
        };
        Ok(Session {
            target,
            duration: args.duration.map(Duration::from_secs_f64),
            interval: interval.map(Duration::from_secs_f64),
            started: Instant::now(),
            end: None,
            root_exited: false,
            outlived: None,
            json: sink.json,
            output,
        })
    }

    /// Where results go, as chosen once at the start: the `-o` file opened then, or
    /// stdout; NDJSON or text.
    pub fn output(&mut self) -> Output {
        Output::into(self.json, self.output.take())
    }

    /// Whether results are NDJSON.
    pub fn json(&self) -> bool {
        self.json
    }

    /// The process id the kernel programs should filter on, if any.
    pub fn tgid(&self) -> Option<u32> {
        self.target.tgid()
    }

    /// Everything is attached: say so on stderr and let a `-c` command run. The line goes
    /// to stderr in JSON mode too, so scripts can wait for it without parsing stdout.
    pub fn attached(&mut self, what: &str) -> Result<()> {
        self.target.release(stop_requested())?;
        if !stop_requested() {
            eprintln!("Tracing {what}... Hit Ctrl-C to end.");
        }
        self.started = Instant::now();
        Ok(())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The interval length, when the command prints per interval.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// When the run started (after everything was attached).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The closing JSON record every tracing command ends with: the command's own fields
    /// (`specific`, a JSON object) between `type` and the common tail (how long, where,
    /// why it ended, and how a `-c` command exited).
    pub fn summary(&self, end: End, specific: serde_json::Value) -> serde_json::Value {
        let mut rec = serde_json::Map::new();
        rec.insert("type".into(), "summary".into());
        if let serde_json::Value::Object(fields) = specific {
            rec.extend(fields);
        }
        rec.insert("duration_s".into(), self.elapsed().as_secs_f64().into());
        rec.insert(
            "kernel".into(),
            crate::core::system::kernel_release().into(),
        );
        rec.insert("end".into(), format!("{end:?}").into());
        if let Target::Command(_) = self.target {
            let status = self.target.exit_status();
            let code = match status {
                Some(ExitStatus::Code(c)) => serde_json::Value::from(c),
                _ => serde_json::Value::Null,
            };
            let signal = match status {
                Some(ExitStatus::Signal(s)) => serde_json::Value::from(s.as_str()),
                _ => serde_json::Value::Null,
            };
            rec.insert("exit_status".into(), code);
            rec.insert("exit_signal".into(), signal);
        }
        if let Some(n) = self.outlived {
            rec.insert("outlived_processes".into(), n.into());
        }
        serde_json::Value::Object(rec)
    }

    /// What btrace should exit with: the `-c` command's status when the command ended
    /// on its own (a shell's convention: 128 + signal when killed), also when the run
    /// then went on for the processes it left running and was stopped early; else 0.
    pub fn exit_code(&self) -> i32 {
        match (self.end, self.target.exit_status()) {
            (Some(End::TargetExited), Some(s)) => s.shell_code(),
            (Some(_), Some(s)) if self.root_exited => s.shell_code(),
            _ => 0,
        }
    }

    /// Whether the run's target is over: the -p/-c process has exited and, unless
    /// --no-children, so has every process of its tree (a daemon it double-forked too).
    fn target_done(&mut self) -> bool {
        if self.root_exited {
            return crate::core::scope::followed_tree_running().unwrap_or(0) == 0;
        }
        if !self.target.exited() {
            return false;
        }
        self.root_exited = true;
        let running = crate::core::scope::followed_tree_running();
        self.outlived = running;
        match running {
            Some(n) if n > 0 => {
                let who = match &self.target {
                    Target::Command(_) => "command",
                    _ => "process",
                };
                eprintln!(
                    "btrace: the traced {who} exited; following the {n} process{} it left running until {} (Ctrl-C to stop)",
                    if n == 1 { "" } else { "es" },
                    if n == 1 { "it exits" } else { "the last exits" }
                );
                false
            }
            _ => true,
        }
    }

    /// Writes the closing record every tracing command ends with, in JSON or text:
    /// `what` was traced via `hook` for the run's duration, `counted` says how many of what
    /// were shown (none for aggregating commands), then the losses. JSON carries
    /// `specific` (the command's own fields) before the common ones. Returns btrace's exit
    /// code ([`Session::exit_code`]).
    pub fn finish(&mut self, out: &mut Output, end: End, closing: Closing<'_>) -> Result<i32> {
        // A -c command still running is ended first, so the record can say how it ended.
        self.target.end();
        if out.json {
            let mut fields = match closing.specific {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            fields.insert("hook".into(), closing.hook.into());
            if let Some((noun, n)) = closing.counted {
                fields.insert(noun.into(), n.into());
            }
            fields.insert("lost".into(), closing.losses.to_json());
            out.record(&self.summary(end, serde_json::Value::Object(fields)))?;
        } else {
            let counted = closing
                .counted
                .map(|(noun, n)| format!(": {n} {noun}"))
                .unwrap_or_default();
            let outlived = match self.outlived {
                Some(n) if n > 0 => format!(
                    " {n} process{} outlived the traced one and {} followed.",
                    if n == 1 { "" } else { "es" },
                    if n == 1 { "was" } else { "were" }
                ),
                _ => String::new(),
            };
            out.line(&format!(
                "Traced {} via {} for {:.1} s{counted}.{outlived} {}",
                closing.what,
                closing.hook,
                self.elapsed().as_secs_f64(),
                closing.losses.text()
            ))?;
        }
        out.flush()?;
        Ok(self.exit_code())
    }

    /// Runs until Ctrl-C/SIGTERM, `--duration`, or the target's end (the -p/-c process's
    /// exit and, unless --no-children, that of every process of its tree). `step` consumes
    /// events and prints intervals; after the loop one last `Poll(0)` drains what is left.
    pub fn run(&mut self, mut step: impl FnMut(Step) -> Result<()>) -> Result<End> {
        const TICK: Duration = Duration::from_millis(100);
        let mut next_interval = self.interval.map(|i| self.started + i);
        let deadline = self.duration.map(|d| self.started + d);
        // The checks that cost a syscall run once a tick, not once per batch of events.
        let mut next_check = self.started;
        let end = loop {
            if stop_requested() {
                break End::Interrupted;
            }
            let now = Instant::now();
            if now >= next_check {
                if self.target_done() {
                    break End::TargetExited;
                }
                crate::core::scope::follow_cgroups();
                if crate::core::output::reader_gone() {
                    // Same ending as a failed write to a closed pipe: quiet, exit 0.
                    return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
                }
                next_check = now + TICK;
            }
            if deadline.is_some_and(|d| now >= d) {
                break End::DurationElapsed;
            }
            if let (Some(due), Some(every)) = (next_interval, self.interval) {
                if now >= due {
                    step(Step::Interval)?;
                    next_interval = Some(due + every);
                    continue;
                }
            }
            let mut wait = TICK;
            for t in [deadline, next_interval].into_iter().flatten() {
                wait = wait.min(t.saturating_duration_since(now));
            }
            step(Step::Poll(wait))?;
        };
        step(Step::Poll(Duration::ZERO))?;
        self.end = Some(end);
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(seconds("1.5"), Ok(1.5));
        assert!(seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds("nan").is_err());
        let e = seconds("1e19").unwrap_err();
        assert!(e.contains("at most 100000000"), "{e}");
        assert!(seconds("1e300").is_err());
        assert!(seconds("inf").is_err());
    }
}
