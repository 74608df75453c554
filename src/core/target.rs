// SPDX-License-Identifier: Apache-2.0
//! What a run traces: everything, an existing process (`-p`), or a command btrace starts
//! (`-c`), and the command's life: gated until every probe is attached, run exactly as
//! it would run without btrace, ended (SIGTERM, then SIGKILL after a grace period) when
//! btrace stops first, and its exit status passed on.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a command btrace ends gets to exit after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// The `-c` child's pid while it lives (0 when none): the signal handler kills it when a
/// second Ctrl-C ends btrace at once.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Kills the `-c` command, if one runs (from the signal handler's thread: a second
/// Ctrl-C ends btrace at once, and the command must not outlive it).
pub fn kill_child_now() {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// How a `-c` command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(Signal),
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s as i32,
        }
    }
}

pub enum Target {
    Everything,
    /// An existing process, watched through a pidfd (readable once it has exited).
    Process {
        pid: u32,
        pidfd: OwnedFd,
    },
    /// A child forked at start and held at a gate until [`Target::release`].
    Command(Child),
}

pub struct Child {
    pid: Pid,
    /// The write end of the gate: "go" starts the command; dropping it ends the child.
    gate: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Target {
    /// The process id the kernel programs filter on, if any.
    pub fn tgid(&self) -> Option<u32> {
        match self {
            Target::Everything => None,
            Target::Process { pid, .. } => Some(*pid),
            Target::Command(c) => Some(c.pid.as_raw() as u32),
        }
    }

    /// Lets a gated command run (everything is attached). A stop requested before this
    /// point never releases it: the command is killed before it ever runs untraced.
    pub fn release(&mut self, stopping: bool) -> Result<()> {
        let Target::Command(c) = self else {
            return Ok(());
        };
        let Some(gate) = c.gate.take() else {
            return Ok(());
        };
        if stopping {
            c.kill_unreleased();
            return Ok(());
        }
        nix::unistd::write(&gate, b"go").context("starting the traced command")?;
        Ok(())
    }

    /// Whether the target has exited (checked without blocking).
    pub fn exited(&mut self) -> bool {
        match self {
            Target::Everything => false,
            Target::Process { pidfd, .. } => {
                let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            }
            Target::Command(c) => c.reap(false),
        }
    }

    /// Ends a `-c` command that is still running (SIGTERM, SIGKILL after [`GRACE`]).
    pub fn end(&mut self) {
        if let Target::Command(c) = self {
            c.end();
        }
    }

    /// How the `-c` command ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self {
            Target::Command(c) => c.status,
            _ => None,
        }
    }
}

impl Child {
    /// Collects the child's status if it has ended (`block`: wait for it).
    fn reap(&mut self, block: bool) -> bool {
        if self.status.is_some() {
            return true;
        }
        let flags = (!block).then_some(WaitPidFlag::WNOHANG);
        loop {
            match waitpid(self.pid, flags) {
                Ok(WaitStatus::Exited(_, code)) => self.status = Some(ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => self.status = Some(ExitStatus::Signal(sig)),
                Err(Errno::EINTR) => continue,
                // Not our child any more (cannot happen) or still alive.
                Err(Errno::ECHILD) => self.status = Some(ExitStatus::Code(0)),
                _ => {}
            }
            break;
        }
        if self.status.is_some() {
            CHILD.store(0, Ordering::SeqCst);
        }
        self.status.is_some()
    }

    /// The child never got past the gate: nothing of the command ran.
    fn kill_unreleased(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        self.reap(true);
    }

    /// Ends a command that is still running: SIGTERM, then SIGKILL after [`GRACE`].
    fn end(&mut self) {
        if self.reap(false) {
            return;
        }
        if self.gate.take().is_some() {
            self.kill_unreleased();
            return;
        }
        let _ = kill(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if self.reap(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = kill(self.pid, Signal::SIGKILL);
        self.reap(true);
    }
}

impl Drop for Target {
    /// A `-c` command still running when btrace stops early is ended too, not orphaned.
    fn drop(&mut self) {
        self.end();
    }
}

/// What /proc says of a task: its thread group, whether it is a kernel thread, its state.
pub struct TaskInfo {
    pub tgid: u32,
    pub kernel_thread: bool,
    pub zombie: bool,
}

/// Reads /proc/ID/stat and /proc/ID/status; None when there is no such task (threads are
/// reachable at /proc/TID too, though not listed).
pub fn task_info(id: u32) -> Option<TaskInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{id}/stat")).ok()?;
    // Fields after the comm, which may hold spaces and parentheses: state is the first,
    // flags the seventh.
    let rest: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let state = *rest.first()?;
    let flags: u64 = rest.get(6)?.parse().ok()?;
    const PF_KTHREAD: u64 = 0x0020_0000;
    let status = std::fs::read_to_string(format!("/proc/{id}/status")).ok()?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()?;
    Some(TaskInfo {
        tgid,
        kernel_thread: flags & PF_KTHREAD != 0,
        zombie: state == "Z" || state == "X",
    })
}

/// Why `/proc` cannot answer, when it cannot: btrace resolves every pid through it.
pub fn proc_unreadable() -> Option<String> {
    match std::fs::read_to_string("/proc/self/stat") {
        Ok(_) => None,
        Err(e) => Some(format!(
            "/proc is not readable ({e}): btrace needs a mounted, visible /proc (mount -t proc proc /proc)"
        )),
    }
}

/// `-p PID`: a live user-space process, named by its process id.
pub fn watch_process(pid: u32) -> Result<Target> {
    if pid == 0 || pid > i32::MAX as u32 {
        bail!("invalid pid {pid}");
    }
    if let Some(why) = proc_unreadable() {
        bail!("{why}");
    }
    match task_info(pid) {
        None => bail!("no process with pid {pid}"),
        Some(t) if t.tgid != pid => bail!(
            "pid {pid} is a thread of process {}: use -p {} for the whole process, or --tid {pid} for this thread",
            t.tgid,
            t.tgid
        ),
        Some(t) if t.kernel_thread => bail!(
            "pid {pid} is a kernel thread: it makes no syscalls and owns no sockets; trace it by name with --comm, or the whole system"
        ),
        Some(t) if t.zombie => bail!("process {pid} has exited (a zombie): nothing is left to trace"),
        Some(_) => {}
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

/// Why `path` cannot be run, if it cannot.
fn not_runnable(path: &Path) -> Option<&'static str> {
    match path.metadata() {
        Err(_) => Some("does not exist"),
        Ok(m) if m.is_dir() => Some("is a directory, not a program"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Some("is not executable (no execute permission)")
        }
        Ok(_) => None,
    }
}

/// The path execvp would run for `prog`, or the one clear reason there is none.
fn resolve_program(prog: &str) -> Result<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return match not_runnable(&p) {
            None => Ok(p),
            Some("does not exist") => bail!("command not found: {prog}"),
            Some(why) => bail!("cannot run {prog}: it {why}"),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    let mut found_unrunnable = None;
    for p in std::env::split_paths(&path).map(|d| d.join(prog)) {
        match not_runnable(&p) {
            None => return Ok(p),
            Some("does not exist") => {}
            Some(why) => {
                found_unrunnable.get_or_insert((p, why));
            }
        }
    }
    match found_unrunnable {
        Some((p, why)) => bail!("cannot run {prog}: {} {why}", p.display()),
        None => bail!("command not found: {prog}"),
    }
}

/// Where the `-c` command's standard streams go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// btrace's own, as a shell would pass them.
    Inherit,
    /// stdout to btrace's stderr: btrace's stdout carries the JSON records.
    StdoutToStderr,
    /// All three to /dev/null: the dashboard owns the terminal while it draws.
    Null,
}

/// Forks the `-c` command, held at a gate until [`Target::release`]. Every syscall the
/// child makes of its own before `execve` happens before the gate, and the parent waits
/// until the child sits in the gate's read before it goes on to attach anything: tracing
/// sees only that read's return (counted as an exit without entry), then the command.
pub fn spawn_gated(cmd: &str, stdio: Stdio) -> Result<Target> {
    let words = split_words(cmd)?;
    let Some(prog) = words.first() else {
        bail!("-c needs a command to run");
    };
    let path = resolve_program(prog)?;
    crate::core::output::input(&path, "the -c program")?;
    let path = CString::new(path.as_os_str().as_encoded_bytes()).context("command path")?;
    let argv: Vec<CString> = words
        .iter()
        .map(|w| CString::new(w.as_str()))
        .collect::<Result<_, _>>()
        .context("command contains a NUL byte")?;
    // Everything the child needs is prepared here: after fork, in a process with other
    // threads (the signal handler's), only async-signal-safe calls are allowed.
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two descriptors; close-on-exec, so the command never sees the
    // gate and execve closes it without a traced close().
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("creating the start gate for -c");
    }
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (gate_read, gate_write) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let null = match stdio {
        Stdio::Null => Some(
            std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .context("opening /dev/null for the -c command")?,
        ),
        _ => None,
    };
    let null_fd = null.as_ref().map_or(-1, |f| f.as_raw_fd());
    let system_mnt = crate::core::system::system_mount_ns().unwrap_or(-1);
    // SAFETY: fork; the child runs only async-signal-safe libc calls until execv/_exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error()).context("fork for -c");
    }
    if pid == 0 {
        // SAFETY: in the child: raw async-signal-safe calls on our own descriptors and
        // the argv prepared before the fork; it never returns (execv or _exit).
        unsafe {
            child_until_exec(
                gate_read.as_raw_fd(),
                parent,
                stdio,
                null_fd,
                system_mnt,
                &path,
                &argv_ptrs,
            )
        };
    }
    drop(gate_read);
    drop(null);
    CHILD.store(pid, Ordering::SeqCst);
    wait_at_gate(pid, fds[0]);
    Ok(Target::Command(Child {
        pid: Pid::from_raw(pid),
        gate: Some(gate_write),
        status: None,
    }))
}

/// Waits (at most a second) until the child is blocked in its read of the gate, as
/// /proc/PID/syscall shows it (`0 0x<fd> ...`: read on that descriptor), so nothing it does
/// before the gate can be traced even when it is slow to get there. Without that file
/// (other architectures) this returns at once.
fn wait_at_gate(pid: i32, gate_fd: i32) {
    let want = format!("0 0x{gate_fd:x} ");
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            Ok(s) if s.starts_with(&want) => return,
            Ok(_) => std::thread::sleep(Duration::from_micros(200)),
            Err(_) => return,
        }
    }
}

/// Signals btrace itself inherited as ignored (bit `sig - 1`; `nohup`, a shell's
/// background job), noted before btrace installs its handlers: the command inherits them
/// ignored again, as it would started beside btrace.
static INHERITED_IGNORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes which signals are ignored now; call before installing any handler.
pub fn note_inherited_ignored() {
    let mut bits = 0u64;
    for sig in 1..=libc::SIGRTMAX().min(64) {
        // SAFETY: a query of this process's disposition into a zeroed struct.
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        };
        if ignored {
            bits |= 1 << (sig - 1);
        }
    }
    INHERITED_IGNORED.store(bits, std::sync::atomic::Ordering::SeqCst);
}

/// Whether btrace inherited `sig` ignored (async-signal-safe: one atomic load).
fn inherited_ignored(sig: i32) -> bool {
    (1..=64).contains(&sig)
        && INHERITED_IGNORED.load(std::sync::atomic::Ordering::SeqCst) & (1 << (sig - 1)) != 0
}

/// The forked child: made to run exactly as it would without btrace, as a shell starts a
/// command: empty signal mask; signals btrace catches (its Ctrl-C handler) back to their
/// default, now rather than at execve, so a SIGTERM at the gate ends the child; SIGPIPE,
/// which btrace's runtime ignores, back to its default; what btrace inherited as ignored
/// stays ignored, as it would for a command started beside it. Killed if btrace dies,
/// then held at the gate.
///
/// # Safety
/// Only in a freshly forked child; `path` and `argv` (NULL-terminated) stay valid.
unsafe fn child_until_exec(
    gate: i32,
    parent: libc::pid_t,
    stdio: Stdio,
    null_fd: i32,
    system_mnt: i32,
    path: &CString,
    argv: &[*const libc::c_char],
) -> ! {
    // SAFETY: each call below is async-signal-safe and works on this process only.
    unsafe {
        // Back in the system's mount namespace when btrace left it for a tracefs of its
        // own: the command sees the mounts it would see without btrace. (A failure
        // leaves it where it is: the same mounts but tracefs.)
        if system_mnt >= 0 {
            libc::setns(system_mnt, libc::CLONE_NEWNS);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..=libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let caught = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if caught || sig == libc::SIGPIPE {
                let mut to: libc::sigaction = std::mem::zeroed();
                to.sa_sigaction = if sig != libc::SIGPIPE && inherited_ignored(sig) {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                };
                libc::sigaction(sig, &to, std::ptr::null_mut());
            }
        }
        // btrace killed (even with SIGKILL) must not leave the command running; a parent
        // that died before this line is caught by the check after it.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        match stdio {
            Stdio::Inherit => {}
            Stdio::StdoutToStderr => {
                libc::dup2(2, 1);
            }
            Stdio::Null => {
                libc::dup2(null_fd, 0);
                libc::dup2(null_fd, 1);
                libc::dup2(null_fd, 2);
            }
        }
        // Blocks until every probe is attached ("go"), or btrace is gone (end of file).
        let mut buf = [0u8; 2];
        if libc::read(gate, buf.as_mut_ptr().cast(), 2) != 2 {
            libc::_exit(0);
        }
        libc::execv(path.as_ptr(), argv.as_ptr());
        let msg = b"btrace: could not execute the -c command\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"a  'b c' "d'e" f"#).unwrap(),
            vec!["a", "b c", "d'e", "f"]
        );
        assert!(split_words("a 'b").is_err());
        assert_eq!(split_words("x ''").unwrap(), vec!["x", ""]);
    }

    #[test]
    fn unrunnable_programs_say_why() {
        let plain = std::env::temp_dir().join(format!("btrace-noexec-{}", std::process::id()));
        std::fs::write(&plain, "data").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = resolve_program(plain.to_str().unwrap())
            .unwrap_err()
            .to_string();
        std::fs::remove_file(&plain).ok();
        assert!(e.contains("not executable"), "{e}");
        let e = resolve_program("/tmp").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = resolve_program("no-such-btrace-program")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "command not found: no-such-btrace-program");
        assert!(resolve_program("sh").is_ok());
    }
}
