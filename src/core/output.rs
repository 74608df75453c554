// SPDX-License-Identifier: Apache-2.0
//! Where results go: stdout (or the `-o` file), as text for people or NDJSON for
//! programs. A closed stdout (`| head`) surfaces as an io::ErrorKind::BrokenPipe error
//! that main turns into a quiet exit.
//!
//! Records are written into one buffer that goes out in a single write when it passes
//! [`SPILL`] bytes or at [`Output::flush`] (event streams flush once per batch of records
//! taken from the ring buffer, so a lone event is not held back).
//!
//! Every file btrace writes results to (`-o`, `--svg`) is an [`OutputFile`], opened and
//! checked before anything is attached, so a file that cannot be written fails the
//! command before its `Tracing` line rather than after the run. Files btrace reads
//! ([`input`]: `--btf`, a probed binary, a `-c` program) are noted by identity, so an
//! output that is an input is refused before it is written.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde_json::Value;

/// Where results go and in which form: the one output sink of a run, chosen once from
/// these global flags (accepted before or after the subcommand).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Output NDJSON: one object per line, each with a "type", ending with a "summary"
    /// object (a -c command's own stdout then goes to btrace's stderr, unless -o is
    /// given)
    #[arg(long, global = true)]
    pub json: bool,
    /// Write results to FILE instead of stdout
    #[arg(short = 'o', long, global = true, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl OutputArgs {
    /// The `-o` file, opened and checked now (see [`OutputFile::create`]), if given.
    pub fn open(&self) -> Result<Option<OutputFile>> {
        self.output
            .as_deref()
            .map(|p| OutputFile::create(p, "-o"))
            .transpose()
    }

    /// The sink of a command that runs no session (doctor, verifier, `usdt --list`).
    pub fn sink(&self) -> Result<Output> {
        Ok(Output::into(self.json, self.open()?))
    }

    /// For a command that writes no results of its own (`serve`): `--json` and `-o`
    /// refused in one line, saying where its results go, rather than ignored.
    pub fn refuse(&self, command: &str, results: &str) -> Result<()> {
        let flag = match (self.json, &self.output) {
            (true, _) => "--json",
            (false, Some(_)) => "-o",
            (false, None) => return Ok(()),
        };
        bail!("{command} does not take {flag}: {results}")
    }
}

/// Whether results go to stdout (whose reader may go away) rather than a file.
static TO_STDOUT: AtomicBool = AtomicBool::new(false);

/// Bytes buffered before they are written out without waiting for a flush.
pub const SPILL: usize = 64 << 10;

pub struct Output {
    pub json: bool,
    buf: Vec<u8>,
    /// Where the line being written starts in `buf`.
    line_start: usize,
    sink: Box<dyn Write>,
}

impl Output {
    /// Results on stdout.
    pub fn new(json: bool) -> Self {
        TO_STDOUT.store(true, Ordering::SeqCst);
        Output::over(json, Box::new(io::stdout()))
    }

    /// Results in `file` (opened beforehand) when given, else on stdout.
    pub fn into(json: bool, file: Option<OutputFile>) -> Self {
        match file {
            Some(f) => Output::over(json, Box::new(f)),
            None => Output::new(json),
        }
    }

    /// Text on stderr: the notes and summary that must not mix with data on stdout
    /// (folded stacks, which other tools read).
    pub fn stderr() -> Self {
        Output::over(false, Box::new(io::stderr()))
    }

    fn over(json: bool, sink: Box<dyn Write>) -> Self {
        Output {
            json,
            buf: Vec::new(),
            line_start: 0,
            sink,
        }
    }

    /// One line of text (text mode).
    pub fn line(&mut self, s: &str) -> io::Result<()> {
        self.buf.extend_from_slice(s.as_bytes());
        self.end_line()
    }

    /// One NDJSON record.
    pub fn record(&mut self, v: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, v)?;
        self.end_line()
    }

    /// The buffer to write a line or record straight into, without its newline: call
    /// [`end_line`](Self::end_line) after it.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// A line of text with btrace's own terminal styling in it (escape sequences kept).
    pub fn styled_line(&mut self, s: &str) -> io::Result<()> {
        self.buf.extend_from_slice(s.as_bytes());
        self.finish_line()
    }

    /// Ends the line written into [`buf`](Self::buf). In text mode, a control character
    /// (or invalid UTF-8) a printer left in it is escaped here (see
    /// [`escape_line`](crate::model::bytes::escape_line)): whatever the traced system
    /// names itself, it cannot put an escape sequence or a line of its own into the
    /// output. The printers escape the fields they take from it already (backslashes
    /// too); this is the net under them.
    pub fn end_line(&mut self) -> io::Result<()> {
        if !self.json {
            let line = &self.buf[self.line_start..];
            if let Some(escaped) = crate::model::bytes::escape_line(line) {
                self.buf.truncate(self.line_start);
                self.buf.extend_from_slice(escaped.as_bytes());
            }
        }
        self.finish_line()
    }

    fn finish_line(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        self.line_start = self.buf.len();
        if self.buf.len() >= SPILL {
            self.write_out()?;
        }
        Ok(())
    }

    /// Everything buffered, in one write.
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.sink.write_all(&self.buf);
        self.buf.clear();
        self.line_start = 0;
        r
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.sink.flush()
    }
}

impl Drop for Output {
    /// What is still buffered is written, as a BufWriter does; an error then is ignored.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Whether results go to a stdout whose reader has gone (see
/// [`stdout_reader_gone`](crate::core::system::stdout_reader_gone)); never for a file.
pub fn reader_gone() -> bool {
    TO_STDOUT.load(Ordering::SeqCst) && crate::core::system::stdout_reader_gone()
}

/// True when the error (anywhere in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A file given for results, opened and checked before anything is attached:
///
/// - never opened so that it blocks: a FIFO is opened without waiting (O_NONBLOCK), and
///   one with no reader is refused ("start its reader first") rather than waited for
///   against every signal; with a reader it is written as a pipe (`-o /dev/stdout`,
///   named pipes into other tools work);
/// - not a directory, socket or block device (results are never written onto a disk);
/// - not a file btrace reads in the same run ([`input`]), nor another output;
/// - an existing file is emptied at the first write, not at open: a run that fails (or
///   writes nothing) leaves it as it was. Chosen over a temporary file renamed at the
///   end because the file keeps its inode, owner, mode and links, devices and pipes work
///   the same way, and event streams can be followed while they are written (`tail -f`);
/// - a write error names the file.
pub struct OutputFile {
    file: File,
    path: PathBuf,
    /// An existing regular file: emptied at the first write.
    empty_first: bool,
    written: bool,
    /// A pipe or device opened O_NONBLOCK: a full one is waited for with poll.
    nonblocking: bool,
}

/// How long a pipe whose reader does not read is waited for once btrace has been asked
/// to stop (Ctrl-C, SIGTERM): then its results are given up with one line.
const STALLED_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// A file btrace reads or writes in this run, by identity (device and inode).
struct Known {
    dev: u64,
    ino: u64,
    path: PathBuf,
    /// How the user gave it: "-o", "--svg", "--btf", "the probed binary".
    what: String,
    output: bool,
    /// Created by btrace (it did not exist), and nothing written to it yet.
    created_unwritten: bool,
}

static FILES: Mutex<Vec<Known>> = Mutex::new(Vec::new());

fn files() -> std::sync::MutexGuard<'static, Vec<Known>> {
    FILES.lock().unwrap_or_else(|e| e.into_inner())
}

/// `path` is a file btrace reads as input (`what` says how it was given: "--btf", "the
/// probed binary"): refused when it is one of the run's outputs, noted otherwise so an
/// output given later cannot be it. A path that does not exist is left to the reader's
/// own error.
pub fn input(path: &Path, what: &str) -> Result<()> {
    let Ok(m) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mut known = files();
    if let Some(o) = known
        .iter()
        .find(|k| k.output && k.dev == m.dev() && k.ino == m.ino())
    {
        bail!(
            "{what} {} is also the output file ({} {}): btrace would overwrite what it reads; write the results elsewhere",
            path.display(),
            o.what,
            o.path.display()
        );
    }
    known.push(Known {
        dev: m.dev(),
        ino: m.ino(),
        path: path.to_path_buf(),
        what: what.to_string(),
        output: false,
        created_unwritten: false,
    });
    Ok(())
}

/// After a failed run: removes the output files btrace created and never wrote (the
/// same file still at that path), so a failure leaves no empty file behind.
pub fn discard_unwritten() {
    for k in files().iter().filter(|k| k.output && k.created_unwritten) {
        if std::fs::symlink_metadata(&k.path).is_ok_and(|m| m.dev() == k.dev && m.ino() == k.ino) {
            let _ = std::fs::remove_file(&k.path);
        }
    }
}

impl OutputFile {
    /// Opens `path` for results given with `flag` ("-o", "--svg"), as the type says.
    pub fn create(path: &Path, flag: &str) -> Result<OutputFile> {
        let shown = path.display();
        // Links followed: a dangling link's target is created by btrace.
        let existed = std::fs::metadata(path).is_ok();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            // No O_TRUNC: emptied at the first write. O_NONBLOCK: a FIFO without a reader
            // fails at once (ENXIO) rather than waiting for one.
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .mode(0o666)
            .open(path);
        let file = match file {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                match std::fs::metadata(path).map(|m| m.file_type()) {
                    Ok(t) if t.is_fifo() => bail!(
                        "{flag} {shown}: a FIFO with no reader; start its reader first (e.g. `cat {shown} &`)"
                    ),
                    Ok(t) => bail!(
                        "{flag} {shown}: is {}, which btrace cannot write results to",
                        crate::resolve::file_kind(&t)
                    ),
                    Err(_) => bail!("{flag} {shown}: cannot write: {e}"),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                bail!("{flag} {shown}: is a directory; give a file name")
            }
            Err(e) => bail!("{flag} {shown}: cannot write: {e}"),
        };
        let m = file.metadata()?;
        let created = !existed && m.is_file();
        let refuse = |why: String| -> Result<OutputFile> {
            if created {
                let _ = std::fs::remove_file(path);
            }
            bail!("{flag} {shown}: {why}")
        };
        let t = m.file_type();
        if t.is_block_device() || t.is_socket() || t.is_dir() {
            return refuse(format!(
                "is {}, which btrace does not write results to",
                crate::resolve::file_kind(&t)
            ));
        }
        // A regular file's writes block as they would on stdout. A pipe or device stays
        // non-blocking: a full pipe is waited for in [`OutputFile::wait_writable`], which
        // gives up once btrace has been asked to stop and the reader still does not read
        // (a blocked write would otherwise hold the signal path: Ctrl-C would not end it).
        let nonblocking = !m.is_file();
        if !nonblocking {
            clear_nonblocking(&file)?;
        }
        let mut known = files();
        // Devices (/dev/null, a terminal) and pipes may be given more than once; a file
        // btrace reads, or writes under another flag, may not.
        let clash = known
            .iter()
            .find(|k| m.is_file() && k.dev == m.dev() && k.ino == m.ino())
            .map(|k| {
                if k.output {
                    format!(
                        "is also the output of {} {}; give each output its own file",
                        k.what,
                        k.path.display()
                    )
                } else {
                    format!(
                        "is {} ({}), which btrace reads: writing the results there would overwrite it; write them elsewhere",
                        k.what,
                        k.path.display()
                    )
                }
            });
        if let Some(why) = clash {
            drop(known);
            return refuse(why);
        }
        known.push(Known {
            dev: m.dev(),
            ino: m.ino(),
            path: path.to_path_buf(),
            what: flag.to_string(),
            output: true,
            created_unwritten: created,
        });
        Ok(OutputFile {
            file,
            path: path.to_path_buf(),
            empty_first: existed && m.is_file(),
            written: false,
            nonblocking,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The error `e` of writing this file, naming it (the kind kept: a closed pipe is
    /// still a quiet end).
    fn named(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
    }

    fn first_write(&mut self) -> io::Result<()> {
        if self.empty_first {
            self.file.set_len(0).map_err(|e| self.named(e))?;
        }
        self.written = true;
        let (dev, ino) = match self.file.metadata() {
            Ok(m) => (m.dev(), m.ino()),
            Err(_) => return Ok(()),
        };
        for k in files()
            .iter_mut()
            .filter(|k| k.output && k.dev == dev && k.ino == ino)
        {
            k.created_unwritten = false;
        }
        Ok(())
    }
}

fn clear_nonblocking(file: &File) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let fd = file.as_raw_fd();
    let flags = fcntl(fd, FcntlArg::F_GETFL)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

impl OutputFile {
    /// Waits until the pipe or device takes more; an error once btrace has been asked to
    /// stop and it has taken nothing for [`STALLED_AFTER_STOP`].
    fn wait_writable(&self) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut stalled_since: Option<std::time::Instant> = None;
        loop {
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(self.named(io::Error::from(e))),
            }
            if crate::core::session::stop_requested() {
                let since = *stalled_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() >= STALLED_AFTER_STOP {
                    return Err(self.named(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "its reader has stopped reading; the rest of the results are not written",
                    )));
                }
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.written {
            self.first_write()?;
        }
        loop {
            match self.file.write(buf) {
                Err(e) if self.nonblocking && e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_writable()?
                }
                r => return r.map_err(|e| self.named(e)),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().map_err(|e| self.named(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Text lines cannot carry a control character out, whichever way they were written;
    /// JSON and btrace's own styled lines are left as they are.
    #[test]
    fn text_lines_carry_no_control_characters() {
        let sink = Shared::default();
        let mut out = Output::over(false, Box::new(sink.clone()));
        out.line("a\x1b[31mb\nc \\ d").unwrap();
        out.buf().extend_from_slice(b"e\rf\xff");
        out.end_line().unwrap();
        out.styled_line("\x1b[1mbold\x1b[0m").unwrap();
        out.flush().unwrap();
        let text = sink.0.lock().unwrap().clone();
        assert_eq!(
            String::from_utf8_lossy(&text),
            "a\\x1b[31mb\\nc \\ d\ne\\rf\\xff\n\x1b[1mbold\x1b[0m\n"
        );
        let sink = Shared::default();
        let mut out = Output::over(true, Box::new(sink.clone()));
        out.record(&serde_json::json!({"comm": "a\x1bb\n"}))
            .unwrap();
        out.flush().unwrap();
        let text = sink.0.lock().unwrap().clone();
        assert_eq!(
            String::from_utf8_lossy(&text),
            "{\"comm\":\"a\\u001bb\\n\"}\n"
        );
    }

    #[test]
    fn an_existing_file_is_emptied_at_the_first_write_only() {
        let dir = crate::resolve::scratch_dir("output");
        let f = dir.join("keep.txt");
        std::fs::write(&f, "old contents\n").unwrap();
        let mut out = OutputFile::create(&f, "-o").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "old contents\n");
        out.write_all(b"new\n").unwrap();
        out.write_all(b"more\n").unwrap();
        drop(out);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new\nmore\n");
        // Created and never written: removed after a failure; written: kept.
        let fresh = dir.join("fresh.txt");
        let unwritten = OutputFile::create(&fresh, "--svg").unwrap();
        drop(unwritten);
        assert!(fresh.exists());
        discard_unwritten();
        assert!(!fresh.exists());
        assert!(f.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
