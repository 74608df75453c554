// SPDX-License-Identifier: Apache-2.0
//! Where results go: stdout (or the `-o` file), as text for people or NDJSON for
//! programs. A closed stdout (`| head`) surfaces as an io::ErrorKind::BrokenPipe error
//! that main turns into a quiet exit.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use serde_json::Value;

/// Whether results go to stdout (whose reader may go away) rather than a file.
static TO_STDOUT: AtomicBool = AtomicBool::new(false);

pub struct Output {
    pub json: bool,
    out: io::BufWriter<Box<dyn Write>>,
}

impl Output {
    /// Results on stdout.
    pub fn new(json: bool) -> Self {
        TO_STDOUT.store(true, Ordering::SeqCst);
        Output {
            json,
            out: io::BufWriter::new(Box::new(io::stdout())),
        }
    }

    /// Results in `path` (created or truncated) when given, else on stdout.
    pub fn to(json: bool, path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Output::new(json));
        };
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Output {
            json,
            out: io::BufWriter::new(Box::new(file)),
        })
    }

    /// Text on stderr: the notes and summary that must not mix with data on stdout
    /// (folded stacks, which other tools read).
    pub fn stderr() -> Self {
        Output {
            json: false,
            out: io::BufWriter::new(Box::new(io::stderr())),
        }
    }

    /// One line of text (text mode).
    pub fn line(&mut self, s: &str) -> io::Result<()> {
        self.out.write_all(s.as_bytes())?;
        self.out.write_all(b"\n")
    }

    /// One NDJSON record.
    pub fn record(&mut self, v: &Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
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
