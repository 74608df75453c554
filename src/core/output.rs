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

/// Whether results go to stdout (whose reader may go away) rather than a file.
static TO_STDOUT: AtomicBool = AtomicBool::new(false);

/// Bytes buffered before they are written out without waiting for a flush.
pub const SPILL: usize = 64 << 10;

pub struct Output {
    pub json: bool,
    buf: Vec<u8>,
    sink: Box<dyn Write>,
}

impl Output {
    /// Results on stdout.
    pub fn new(json: bool) -> Self {
        TO_STDOUT.store(true, Ordering::SeqCst);
        Output::over(json, Box::new(io::stdout()))
    }

    /// Results in `path` (see [`OutputFile::create`]) when given, else on stdout.
    pub fn to(json: bool, path: Option<&Path>) -> Result<Self> {
        let file = path.map(|p| OutputFile::create(p, "-o")).transpose()?;
        Ok(Output::into(json, file))
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

    /// Ends the line written into [`buf`](Self::buf).
    pub fn end_line(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
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
}

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
        // Writes block as they would on stdout (a slow reader slows btrace down).
        clear_nonblocking(&file)?;
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

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.written {
            self.first_write()?;
        }
        self.file.write(buf).map_err(|e| self.named(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().map_err(|e| self.named(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_is_emptied_at_the_first_write_only() {
        let dir = std::env::temp_dir().join(format!("btrace-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
