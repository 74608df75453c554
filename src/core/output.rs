//! Where results go: stdout, as text for people or NDJSON for programs.
//! A closed stdout (`| head`) surfaces as an io::ErrorKind::BrokenPipe error that main
//! turns into a quiet exit.

use std::io::{self, Write};

use serde_json::Value;

pub struct Output {
    pub json: bool,
    out: io::BufWriter<io::Stdout>,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output {
            json,
            out: io::BufWriter::new(io::stdout()),
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

/// True when the error (anywhere in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}
