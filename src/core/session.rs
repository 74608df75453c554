//! The run loop every tracing command shares: common flags, the traced target
//! (`-p` an existing process, `-c` a command started once probes are attached),
//! Ctrl-C/SIGTERM, `--duration` and `--interval`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// Flags that mean the same in every command.
#[derive(Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Trace only this process; stop when it exits
    #[arg(short = 'p', long, value_name = "PID", conflicts_with = "cmd")]
    pub pid: Option<u32>,
    /// Run CMD once every probe is attached, trace only it, stop when it exits
    #[arg(short = 'c', long = "cmd", value_name = "CMD")]
    pub cmd: Option<String>,
    /// Stop after SECS seconds
    #[arg(short = 'd', long, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<f64>,
    /// Print (and reset) results every SECS seconds
    #[arg(short = 'i', long, value_name = "SECS", value_parser = positive_secs)]
    pub interval: Option<f64>,
    /// Output NDJSON: one object per line, ending with a "summary" object
    #[arg(long)]
    pub json: bool,
    /// Show libbpf's log on stderr
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds")),
    }
}

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: OnceLock<()> = OnceLock::new();

/// Ctrl-C, SIGTERM and SIGHUP ask the loop to finish and print final results.
fn install_stop_handler() -> Result<()> {
    if HANDLER.get().is_some() {
        return Ok(());
    }
    ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C/SIGTERM handler")?;
    let _ = HANDLER.set(());
    Ok(())
}

/// Asks the run loop to end as Ctrl-C would (e.g. a quit key in the dashboard).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The process being traced.
enum Target {
    Everything,
    /// An existing process, watched through a pidfd (readable once it has exited).
    Process {
        pid: u32,
        pidfd: OwnedFd,
    },
    /// A child forked at start, blocked until `release` writes to `gate`.
    Command {
        child: Pid,
        gate: Option<OwnedFd>,
        done: bool,
    },
}

/// What a command's closing record says (see [`Session::finish`]).
pub struct Closing<'a> {
    /// What was traced, for the text line ("syscalls", a function, a tracepoint).
    pub what: &'a str,
    /// The hook (and store) it attached with.
    pub hook: &'a str,
    /// How many of what were shown, e.g. ("events", 12); None for aggregating commands.
    pub counted: Option<(&'a str, u64)>,
    pub losses: crate::core::losses::Losses,
    /// The command's own JSON fields, first in the record.
    pub specific: serde_json::Value,
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

pub struct Session {
    target: Target,
    duration: Option<Duration>,
    interval: Option<Duration>,
    started: Instant,
}

impl Session {
    /// Validates the target (a `-p` that exists, a `-c` that can be found) and, for `-c`,
    /// forks the child now so its pid can be given to the kernel programs before load.
    pub fn new(args: &TraceArgs) -> Result<Self> {
        install_stop_handler()?;
        let target = match (&args.pid, &args.cmd) {
            (Some(pid), _) => watch_process(*pid)?,
            (None, Some(cmd)) => spawn_gated(cmd)?,
            (None, None) => Target::Everything,
        };
        Ok(Session {
            target,
            duration: args.duration.map(Duration::from_secs_f64),
            interval: args.interval.map(Duration::from_secs_f64),
            started: Instant::now(),
        })
    }

    /// The process id the kernel programs should filter on, if any.
    pub fn tgid(&self) -> Option<u32> {
        match &self.target {
            Target::Everything => None,
            Target::Process { pid, .. } => Some(*pid),
            Target::Command { child, .. } => Some(child.as_raw() as u32),
        }
    }

    /// Everything is attached: say so on stderr and let a `-c` command run. The line goes
    /// to stderr in JSON mode too, so scripts can wait for it without parsing stdout.
    pub fn attached(&mut self, what: &str) -> Result<()> {
        eprintln!("Tracing {what}... Hit Ctrl-C to end.");
        self.started = Instant::now();
        if let Target::Command { gate, .. } = &mut self.target {
            if let Some(fd) = gate.take() {
                nix::unistd::write(&fd, b"go").context("starting the traced command")?;
            }
        }
        Ok(())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The closing JSON record every tracing command ends with: the command's own fields
    /// (`specific`, a JSON object) between `type` and the common tail (how long, where,
    /// why it ended).
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
        serde_json::Value::Object(rec)
    }

    /// Writes the closing record every tracing command ends with, in JSON or text:
    /// `what` was traced via `hook` for the run's duration, `counted` says how many of what
    /// were shown (none for aggregating commands), then the losses. JSON carries
    /// `specific` (the command's own fields) before the common ones.
    pub fn finish(
        &self,
        out: &mut crate::core::output::Output,
        end: End,
        closing: Closing<'_>,
    ) -> Result<()> {
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
            out.line(&format!(
                "Traced {} via {} for {:.1} s{counted}. {}",
                closing.what,
                closing.hook,
                self.elapsed().as_secs_f64(),
                closing.losses.text()
            ))?;
        }
        out.flush()?;
        Ok(())
    }

    /// Runs until Ctrl-C/SIGTERM, `--duration`, or the target's exit. `step` consumes
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
                if self.target_exited() {
                    break End::TargetExited;
                }
                if crate::core::system::stdout_reader_gone() {
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
        Ok(end)
    }

    fn target_exited(&mut self) -> bool {
        match &mut self.target {
            Target::Everything => false,
            Target::Process { pidfd, .. } => {
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            }
            Target::Command { child, done, .. } => {
                if !*done {
                    *done = !matches!(
                        waitpid(*child, Some(WaitPidFlag::WNOHANG)),
                        Ok(WaitStatus::StillAlive) | Err(Errno::EINTR)
                    );
                }
                *done
            }
        }
    }
}

impl Drop for Session {
    /// A `-c` command still running when btrace stops early is ended too, not orphaned.
    fn drop(&mut self) {
        if let Target::Command { child, gate, done } = &mut self.target {
            if !*done {
                gate.take();
                let _ = kill(*child, Signal::SIGTERM);
                let _ = waitpid(*child, None);
            }
        }
    }
}

fn watch_process(pid: u32) -> Result<Target> {
    if pid == 0 || pid > i32::MAX as u32 {
        bail!("invalid pid {pid}");
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ESRCH) {
            bail!("no process with pid {pid}");
        }
        return Err(err).with_context(|| format!("watching pid {pid}"));
    }
    // SAFETY: fd is a fresh pidfd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    Ok(Target::Process { pid, pidfd })
}

/// Splits a command line into words, honouring single and double quotes (no shell:
/// the traced process is the command itself, not a shell around it).
pub fn split_words(cmd: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unbalanced quote in command: {cmd}");
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The path execvp would run for `prog`, if any.
fn resolve_program(prog: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if prog.contains('/') {
        let p = std::path::PathBuf::from(prog);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| is_exec(p))
}

fn spawn_gated(cmd: &str) -> Result<Target> {
    let words = split_words(cmd)?;
    let Some(prog) = words.first() else {
        bail!("-c needs a command to run");
    };
    let Some(path) = resolve_program(prog) else {
        bail!("command not found: {prog}");
    };
    let path = CString::new(path.as_os_str().as_encoded_bytes()).context("command path")?;
    let argv: Vec<CString> = words
        .iter()
        .map(|w| CString::new(w.as_str()))
        .collect::<Result<_, _>>()
        .context("command contains a NUL byte")?;
    let (gate_read, gate_write) = pipe().context("creating the start gate for -c")?;
    // SAFETY: the child only calls async-signal-safe functions (read, close, execv, _exit).
    match unsafe { fork() }.context("fork for -c")? {
        ForkResult::Child => {
            drop(gate_write);
            let mut buf = [0u8; 2];
            // Blocks until the parent has attached every probe (or exits: read gives 0).
            // SAFETY: read into a 2-byte buffer of our own from a descriptor we own.
            let n = unsafe { libc::read(gate_read.as_raw_fd(), buf.as_mut_ptr().cast(), 2) };
            if n != 2 {
                // SAFETY: _exit ends this forked child without running the parent's
                // atexit handlers or destructors (async-signal-safe).
                unsafe { libc::_exit(0) };
            }
            drop(gate_read);
            let _ = nix::unistd::execv(&path, &argv);
            let msg = b"btrace: could not execute the -c command\n";
            // SAFETY: write of a static buffer to stderr, then _exit (both async-signal-safe).
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            };
        }
        ForkResult::Parent { child } => Ok(Target::Command {
            child,
            gate: Some(gate_write),
            done: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::split_words;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"a  'b c' "d'e" f"#).unwrap(),
            vec!["a", "b c", "d'e", "f"]
        );
        assert!(split_words("a 'b").is_err());
        assert_eq!(split_words("x ''").unwrap(), vec!["x", ""]);
    }
}
