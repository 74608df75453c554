// SPDX-License-Identifier: Apache-2.0
//! Where results go: stdout (or the `-o` file), as text for people or NDJSON for
//! programs. A closed stdout (`| head`) surfaces as an io::ErrorKind::BrokenPipe error
//! that main turns into a quiet exit.
//!
//! Records are written into one buffer that goes out in a single write when it passes
//! [`SPILL`] bytes or at [`Output::flush`] (event streams flush once per batch of records
//! taken from the ring buffer, so a lone event is not held back).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use serde_json::Value;

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

    /// Results in `path` (created or truncated) when given, else on stdout.
    pub fn to(json: bool, path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Output::new(json));
        };
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Output::over(json, Box::new(file)))
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
}
