// SPDX-License-Identifier: Apache-2.0
//! One client connection: its stage, reading and writing over TCP or TLS without
//! blocking, and the reset that drops it.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use nix::poll::PollFlags;

use crate::apps::serve::exposition::Format;

/// Where a connection is.
pub(super) enum Stage {
    /// Reading the request head (and, over TLS, the handshake).
    Head(Vec<u8>),
    /// Waiting for the credentials' check.
    Auth {
        verdict: Receiver<bool>,
        path: String,
        format: Format,
    },
    /// Waiting for the body from the tracers' owner.
    Render {
        body: Receiver<Vec<u8>>,
        format: Format,
    },
    /// Writing the response: `sent` bytes of `head` then `body` gone; over TLS, then the
    /// close_notify alert.
    Write {
        head: Vec<u8>,
        body: Vec<u8>,
        sent: usize,
        closing: bool,
    },
    /// Response written, write side shut: reading and throwing away until the client
    /// closes.
    Linger(usize),
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) tls: Option<Box<rustls::ServerConnection>>,
    pub(super) stage: Stage,
    /// When the stage must be over.
    pub(super) deadline: Instant,
    /// When the connection was accepted (the oldest is pushed out first).
    pub(super) born: Instant,
}

impl Conn {
    /// Reads what arrived into `buf` (plaintext, past TLS), `max` bytes at most; true at
    /// the end of the client's stream.
    pub(super) fn receive(&mut self, buf: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
        let mut chunk = [0u8; 4096];
        let Some(tls) = self.tls.as_mut() else {
            while buf.len() <= max {
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Ok(true),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(false);
        };
        let mut eof = false;
        while buf.len() <= max && !eof {
            match tls.read_tls(&mut self.stream) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // The alert saying why, best effort.
                let _ = tls.write_tls(&mut self.stream);
                return Err(std::io::Error::new(ErrorKind::InvalidData, e));
            }
            loop {
                match tls.reader().read(&mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        self.flush_tls()?;
        Ok(eof)
    }

    /// Writes what TLS has ready (handshake messages, records); true when all of it went.
    fn flush_tls(&mut self) -> std::io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(true);
        };
        write_tls(tls, &mut self.stream)
    }

    /// Writes as much of the response as the socket takes; true when all of it went.
    pub(super) fn send(&mut self) -> std::io::Result<bool> {
        let Stage::Write {
            head,
            body,
            sent,
            closing,
        } = &mut self.stage
        else {
            return Ok(true);
        };
        let total = head.len() + body.len();
        let rest = |sent: usize| -> [&[u8]; 2] {
            if sent < head.len() {
                [&head[sent..], &body[..]]
            } else {
                [&[], &body[sent - head.len()..]]
            }
        };
        let Some(tls) = self.tls.as_mut() else {
            while *sent < total {
                let [a, b] = rest(*sent);
                match self
                    .stream
                    .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(true);
        };
        loop {
            if !write_tls(tls, &mut self.stream)? {
                return Ok(false);
            }
            if *sent < total {
                // Records are sealed as plaintext is handed over, a buffer's worth at a
                // time, so a large body is never copied whole into TLS's buffers.
                let [a, b] = rest(*sent);
                let piece = if a.is_empty() { b } else { a };
                let n = tls.writer().write(&piece[..piece.len().min(64 << 10)])?;
                if n == 0 {
                    return Err(ErrorKind::WriteZero.into());
                }
                *sent += n;
            } else if !*closing {
                tls.send_close_notify();
                *closing = true;
            } else {
                return Ok(true);
            }
        }
    }

    /// What the connection waits for in poll, None when it waits on no socket.
    pub(super) fn interest(&self) -> Option<PollFlags> {
        match self.stage {
            Stage::Head(_) => Some(if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
                PollFlags::POLLIN | PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            }),
            Stage::Auth { .. } | Stage::Render { .. } => None,
            Stage::Write { .. } => Some(PollFlags::POLLOUT),
            Stage::Linger(_) => Some(PollFlags::POLLIN),
        }
    }

    /// Waiting for a request head or closing: what a full server pushes out.
    pub(super) fn evictable(&self) -> bool {
        matches!(self.stage, Stage::Head(_) | Stage::Linger(_))
    }
}

/// Writes what `tls` has ready (handshake messages, records) to `stream`; true when all
/// of it went, false when the socket would block.
fn write_tls(tls: &mut rustls::ServerConnection, stream: &mut TcpStream) -> std::io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Makes the coming close send a reset and drop what is unsent (SO_LINGER of 0).
pub(super) fn abort(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is the open socket `stream` owns; the option's value is a
    // `linger` of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
