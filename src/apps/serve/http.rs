// SPDX-License-Identifier: Apache-2.0
//! The exporter's HTTP side: HTTP/1.x GET only, small, bounded, over TCP or TLS.
//!
//! One thread serves every connection without blocking (poll): it accepts, reads request
//! heads (each within a deadline, so a client that sends nothing or sends slowly holds
//! nothing but a slot), asks the tracers' owner for a body, writes responses, and closes.
//! No client can delay another: nothing waits on a client's socket, and each stage has
//! its own deadline (the request head [`Limits::head_timeout`], the whole response
//! [`Limits::write_timeout`]); a client that reads too slowly is dropped. Bodies come
//! from the tracers' owner (the main thread) and bcrypt checks from a thread of their
//! own, each answering through a channel and a wake-up socket. At most
//! [`Limits::max_conns`] connections are open at once: past that, each new connection
//! closes the one that has waited longest for its request head or is closing (or, when
//! every open one is being answered, is itself closed at once).
//!
//! Every response closes its connection (`Connection: close`) with a lingering close:
//! the write side is shut, then what the client still sends is read and thrown away
//! (up to [`Limits::linger_bytes`], for up to [`Limits::linger_time`]) until it closes,
//! because closing a socket with unread data in it makes the kernel send a reset, which
//! makes the client's kernel throw away the end of the response it had not yet read.
//!
//! Answers: `GET /metrics` 200; `GET /` 200 (a link); other paths 404; other methods 405;
//! a request line or header that is not HTTP 400; a head over [`Limits::max_head`] 431; a
//! request with a body 413; a head not complete by its deadline 408; missing or wrong
//! credentials when `basic_auth_users` is configured 401.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::exposition::Format;
use super::webconfig::{BasicAuth, WebConfig};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once (being read, waiting for a body, being answered, closing).
    pub max_conns: usize,
    /// Time a client has to send its whole request head (and finish the TLS handshake).
    pub head_timeout: Duration,
    /// Time a whole response may take to be written: a client reading slower is dropped.
    pub write_timeout: Duration,
    /// Bytes of the request head (request line and headers).
    pub max_head: usize,
    /// Time a request waits for its body from the tracers' owner (or a bcrypt check).
    pub render_timeout: Duration,
    /// After a response: time and bytes read and thrown away before closing.
    pub linger_time: Duration,
    pub linger_bytes: usize,
    /// Bytes of responses held while they are written: past that, the response that has
    /// been written longest is dropped (a slow reader's: a scrape takes milliseconds),
    /// so slow clients asking for a large body cannot grow btrace without bound.
    pub max_held_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Each waiting connection costs a file descriptor and a few hundred bytes;
            // many slots make a flood of idle connections take long to push out a
            // scraper whose request is on its way.
            max_conns: 256,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_head: 8192,
            render_timeout: Duration::from_secs(5),
            linger_time: Duration::from_secs(5),
            linger_bytes: 16 << 20,
            max_held_bytes: 64 << 20,
        }
    }
}

/// A scrape asked of the tracers' owner: the format, and where to send the body.
pub struct Scrape {
    pub format: Format,
    pub reply: Reply,
}

/// Where the tracers' owner sends a body: a channel, and a wake-up for the server's poll.
pub struct Reply {
    tx: SyncSender<Vec<u8>>,
    waker: Waker,
}

impl Reply {
    pub fn send(self, body: Vec<u8>) {
        let _ = self.tx.try_send(body);
        self.waker.wake();
    }
}

/// One end of a socket pair whose other end is in the server's poll set.
#[derive(Clone)]
struct Waker(Arc<UnixStream>);

impl Waker {
    fn wake(&self) {
        // Non-blocking: a full socket is already readable, which is all a wake-up is.
        let _ = (&*self.0).write(&[1]);
    }
}

/// What a complete (or early-failed) request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A GET of this path (query string removed), with its `Accept` and `Authorization`
    /// headers.
    Get {
        path: String,
        accept: Option<String>,
        authorization: Option<String>,
    },
    /// An error status to answer with.
    Error(u16),
    /// Not complete yet.
    Partial,
}

/// Parses what arrived of a request head. A bad request line is answered as soon as it
/// is complete; headers once the head is. Lines end with CRLF or a bare LF (RFC 9112
/// 2.2 lets a server take a bare LF as a line end, and clients typed by hand send them).
pub fn parse(buf: &[u8], max_head: usize) -> Parsed {
    let too_long = || {
        if buf.len() > max_head {
            Parsed::Error(431)
        } else {
            Parsed::Partial
        }
    };
    let Some(line_end) = buf.iter().position(|&b| b == b'\n') else {
        return too_long();
    };
    let Ok(line) = std::str::from_utf8(&buf[..line_end]) else {
        return Parsed::Error(400);
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Parsed::Error(400);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method)
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
        || !(version == "HTTP/1.1" || version == "HTTP/1.0")
    {
        return Parsed::Error(400);
    }
    // The head ends at the first empty line after the request line.
    let mut headers = Vec::new();
    let mut at = line_end + 1;
    let head_end = loop {
        let Some(n) = buf[at..].iter().position(|&b| b == b'\n') else {
            return too_long();
        };
        let h = &buf[at..at + n];
        let h = h.strip_suffix(b"\r").unwrap_or(h);
        at += n + 1;
        if h.is_empty() {
            break at;
        }
        headers.push(h);
    };
    if head_end > max_head {
        return Parsed::Error(431);
    }
    let mut accept = None;
    let mut authorization = None;
    for h in headers {
        let Ok(h) = std::str::from_utf8(h) else {
            return Parsed::Error(400);
        };
        let Some((name, value)) = h.split_once(':') else {
            return Parsed::Error(400);
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Parsed::Error(400);
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(0) => {}
                Ok(_) => return Parsed::Error(413),
                Err(_) => return Parsed::Error(400),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Error(413);
        } else if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        }
    }
    if method != "GET" {
        return Parsed::Error(405);
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    Parsed::Get {
        path,
        accept,
        authorization,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = response_head(status, content_type, body.len());
    bytes.extend_from_slice(body);
    bytes
}

/// The status line and headers of a response whose body is `len` bytes.
fn response_head(status: u16, content_type: &str, len: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        len
    );
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    if status == 401 {
        out.push_str("WWW-Authenticate: Basic realm=\"btrace\", charset=\"UTF-8\"\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn error_response(status: u16) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    response(status, "text/plain; charset=utf-8", body.as_bytes())
}

const INDEX: &str = "<html><head><title>btrace</title></head><body><h1>btrace serve</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

/// The running server: the serving thread and the bcrypt checker.
pub struct Server {
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves on `listener` until `stop` is set; scrapes go to `scrapes` (the tracers'
    /// owner answers them); TLS and credentials as `web` asks.
    pub fn start(
        listener: TcpListener,
        limits: Limits,
        web: WebConfig,
        scrapes: SyncSender<Scrape>,
        stop: &'static AtomicBool,
    ) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let waker = Waker(Arc::new(wake_tx));
        let mut threads = Vec::new();
        let checks = match web.auth.clone() {
            Some(auth) => {
                // A few waiting checks; more are answered 503 rather than queued behind
                // a client trying passwords.
                let (tx, rx) = sync_channel::<AuthCheck>(8);
                threads.push(std::thread::Builder::new().name("http-auth".into()).spawn(
                    move || {
                        for c in rx {
                            let ok = auth.check(c.authorization.as_deref());
                            let _ = c.reply.try_send(ok);
                            c.waker.wake();
                        }
                    },
                )?);
                Some(tx)
            }
            None => None,
        };
        let server = Serving {
            listener,
            limits,
            tls: web.tls,
            auth: web.auth,
            checks,
            scrapes,
            wake_rx,
            waker,
            conns: Vec::new(),
            accept_rest_until: None,
        };
        threads.insert(
            0,
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || server.run(stop))?,
        );
        Ok(Server { threads })
    }

    /// Waits for the threads to end (after `stop` was set), `deadline` at most: past it,
    /// the process ends without them (they hold nothing that must be released).
    pub fn join(self, deadline: Instant) {
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// A bcrypt check asked of the checker thread.
struct AuthCheck {
    authorization: Option<String>,
    reply: SyncSender<bool>,
    waker: Waker,
}

/// Where a connection is.
enum Stage {
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

struct Conn {
    stream: TcpStream,
    tls: Option<Box<rustls::ServerConnection>>,
    stage: Stage,
    /// When the stage must be over.
    deadline: Instant,
    /// When the connection was accepted (the oldest is pushed out first).
    born: Instant,
}

impl Conn {
    /// Reads what arrived into `buf` (plaintext, past TLS), `max` bytes at most; true at
    /// the end of the client's stream.
    fn receive(&mut self, buf: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
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
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes as much of the response as the socket takes; true when all of it went.
    fn send(&mut self) -> std::io::Result<bool> {
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
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
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
    fn interest(&self) -> Option<PollFlags> {
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
    fn evictable(&self) -> bool {
        matches!(self.stage, Stage::Head(_) | Stage::Linger(_))
    }
}

/// Makes the coming close send a reset and drop what is unsent (SO_LINGER of 0).
fn abort(stream: &TcpStream) {
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

/// The serving thread's state.
struct Serving {
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
    checks: Option<SyncSender<AuthCheck>>,
    scrapes: SyncSender<Scrape>,
    wake_rx: UnixStream,
    waker: Waker,
    conns: Vec<Conn>,
    /// Accepting failed (out of file descriptors): not before then.
    accept_rest_until: Option<Instant>,
}

/// Connections accepted per round of the loop.
const ACCEPT_BATCH: usize = 16;

impl Serving {
    fn run(mut self, stop: &'static AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let wait = self
                .conns
                .iter()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(200))
                .min(Duration::from_millis(200));
            let polled: Vec<usize> = (0..self.conns.len())
                .filter(|&i| self.conns[i].interest().is_some())
                .collect();
            let ready: Vec<bool> = {
                let resting = self.accept_rest_until.is_some_and(|t| now < t);
                let listen = if resting {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLIN
                };
                let mut fds = vec![
                    PollFd::new(self.listener.as_fd(), listen),
                    PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(polled.iter().map(|&i| {
                    let c = &self.conns[i];
                    PollFd::new(c.stream.as_fd(), c.interest().unwrap_or(PollFlags::empty()))
                }));
                let ms = PollTimeout::try_from(wait.as_millis().max(1) as i32)
                    .unwrap_or(PollTimeout::MAX);
                match poll(&mut fds, ms) {
                    Ok(_) => fds
                        .iter()
                        .map(|f| !f.revents().unwrap_or(PollFlags::empty()).is_empty())
                        .collect(),
                    Err(_) => vec![false; fds.len()],
                }
            };
            if ready[1] {
                let mut sink = [0u8; 256];
                while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            }
            let mut is_ready = vec![false; self.conns.len()];
            for (k, &i) in polled.iter().enumerate() {
                is_ready[i] = ready[2 + k];
            }
            // Every connection moves on as far as it can; those done are dropped.
            let conns = std::mem::take(&mut self.conns);
            for (mut c, r) in conns.into_iter().zip(is_ready) {
                if self.advance(&mut c, r) {
                    self.conns.push(c);
                }
            }
            self.cap_held_bytes();
            if ready[0] {
                self.accept_some();
            }
        }
        // Dropping the connections closes them: shutdown does not wait for any client.
    }

    fn accept_some(&mut self) {
        // A few at a time, so requests that arrived are read between batches.
        for _ in 0..ACCEPT_BATCH {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    // Out of file descriptors and the like: the connection stays in the
                    // listener's queue, which stays readable, so poll would return at
                    // once, round after round: the listener rests 100 ms instead.
                    self.accept_rest_until = Some(Instant::now() + Duration::from_millis(100));
                    break;
                }
            };
            if self.conns.len() >= self.limits.max_conns && !self.make_room() {
                // Every open connection is being answered: this one is closed at once.
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let tls = match &self.tls {
                Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                    Ok(t) => Some(Box::new(t)),
                    Err(_) => continue,
                },
                None => None,
            };
            let now = Instant::now();
            self.conns.push(Conn {
                stream,
                tls,
                stage: Stage::Head(Vec::new()),
                deadline: now + self.limits.head_timeout,
                born: now,
            });
        }
    }

    /// Closes one connection to make room for a new one: one that is closing, else the
    /// one that has waited longest for its request head, so a flood of connections that
    /// send nothing cannot lock a scraper out. A request already in a socket is read
    /// first (and goes on to be answered) rather than thrown away. False when nothing
    /// can be closed.
    fn make_room(&mut self) -> bool {
        if let Some(i) = self
            .conns
            .iter()
            .position(|c| matches!(c.stage, Stage::Linger(_)))
        {
            self.conns.swap_remove(i);
            return true;
        }
        loop {
            let oldest = self
                .conns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.evictable())
                .min_by_key(|(_, c)| c.born)
                .map(|(i, _)| i);
            let Some(i) = oldest else { return false };
            let mut c = self.conns.swap_remove(i);
            if self.advance(&mut c, true) && !c.evictable() {
                // Its request was there: it is being answered; look again.
                self.conns.push(c);
                continue;
            }
            return true;
        }
    }

    /// Drops responses being written, the longest-written first, while they hold more
    /// than [`Limits::max_held_bytes`] (one is always kept, whatever its size).
    fn cap_held_bytes(&mut self) {
        let held = |c: &Conn| match &c.stage {
            Stage::Write { head, body, .. } => head.len() + body.len(),
            _ => 0,
        };
        let mut total: usize = self.conns.iter().map(held).sum();
        while total > self.limits.max_held_bytes {
            let writing = self.conns.iter().filter(|c| held(c) > 0).count();
            // The same write timeout for all: the earliest deadline began first.
            let oldest = self
                .conns
                .iter()
                .enumerate()
                .filter(|(_, c)| held(c) > 0)
                .min_by_key(|(_, c)| c.deadline)
                .map(|(i, _)| i);
            let (Some(i), true) = (oldest, writing > 1) else {
                return;
            };
            let c = self.conns.swap_remove(i);
            total -= held(&c);
            abort(&c.stream);
        }
    }

    /// Starts writing `head` and `body`.
    fn respond(&self, c: &mut Conn, head: Vec<u8>, body: Vec<u8>) {
        c.stage = Stage::Write {
            head,
            body,
            sent: 0,
            closing: false,
        };
        c.deadline = Instant::now() + self.limits.write_timeout;
    }

    /// The answer to an authorized GET.
    fn route(&self, c: &mut Conn, path: &str, format: Format) {
        match path {
            "/metrics" => {
                let (tx, rx) = sync_channel(1);
                let scrape = Scrape {
                    format,
                    reply: Reply {
                        tx,
                        waker: self.waker.clone(),
                    },
                };
                if self.scrapes.try_send(scrape).is_ok() {
                    c.stage = Stage::Render { body: rx, format };
                    c.deadline = Instant::now() + self.limits.render_timeout;
                } else {
                    self.respond(c, error_response(503), Vec::new());
                }
            }
            "/" => self.respond(
                c,
                response(200, "text/html; charset=utf-8", INDEX.as_bytes()),
                Vec::new(),
            ),
            _ => self.respond(c, error_response(404), Vec::new()),
        }
    }

    /// Moves `c` on as far as it goes now (`ready`: its socket is ready for what it
    /// waits for). False when it is done with and must be closed.
    fn advance(&mut self, c: &mut Conn, ready: bool) -> bool {
        let mut ready = ready;
        loop {
            let now = Instant::now();
            match &mut c.stage {
                Stage::Head(buf) => {
                    let mut buf = std::mem::take(buf);
                    let mut eof = false;
                    if ready {
                        match c.receive(&mut buf, self.limits.max_head) {
                            Ok(e) => eof = e,
                            Err(_) => return false,
                        }
                    }
                    match parse(&buf, self.limits.max_head) {
                        Parsed::Partial if eof => return false,
                        Parsed::Partial if now >= c.deadline => {
                            self.respond(c, error_response(408), Vec::new())
                        }
                        Parsed::Partial => {
                            c.stage = Stage::Head(buf);
                            return true;
                        }
                        Parsed::Error(status) => {
                            self.respond(c, error_response(status), Vec::new())
                        }
                        Parsed::Get {
                            path,
                            accept,
                            authorization,
                        } => {
                            let format = Format::from_accept(accept.as_deref());
                            match self
                                .auth
                                .as_ref()
                                .map(|a| a.quick(authorization.as_deref()))
                            {
                                None | Some(Some(true)) => self.route(c, &path, format),
                                Some(Some(false)) => {
                                    self.respond(c, error_response(401), Vec::new())
                                }
                                Some(None) => {
                                    let (tx, rx) = sync_channel(1);
                                    let check = AuthCheck {
                                        authorization,
                                        reply: tx,
                                        waker: self.waker.clone(),
                                    };
                                    let asked = self
                                        .checks
                                        .as_ref()
                                        .is_some_and(|q| q.try_send(check).is_ok());
                                    if asked {
                                        c.stage = Stage::Auth {
                                            verdict: rx,
                                            path,
                                            format,
                                        };
                                        c.deadline = now + self.limits.render_timeout;
                                    } else {
                                        self.respond(c, error_response(503), Vec::new());
                                    }
                                }
                            }
                        }
                    }
                }
                Stage::Auth {
                    verdict,
                    path,
                    format,
                } => match verdict.try_recv() {
                    Ok(true) => {
                        let (path, format) = (std::mem::take(path), *format);
                        self.route(c, &path, format);
                    }
                    Ok(false) => self.respond(c, error_response(401), Vec::new()),
                    Err(TryRecvError::Empty) if now < c.deadline => return true,
                    Err(_) => self.respond(c, error_response(503), Vec::new()),
                },
                Stage::Render { body, format } => match body.try_recv() {
                    Ok(body) => {
                        let head = response_head(200, format.content_type(), body.len());
                        self.respond(c, head, body);
                    }
                    Err(TryRecvError::Empty) if now < c.deadline => return true,
                    Err(_) => self.respond(c, error_response(503), Vec::new()),
                },
                Stage::Write { .. } => {
                    if now >= c.deadline {
                        // Too slow a reader: dropped, so it holds nothing for longer,
                        // and reset, so the megabytes still in the kernel's buffers
                        // are thrown away rather than delivered at its pace.
                        abort(&c.stream);
                        return false;
                    }
                    match c.send() {
                        Ok(true) => {
                            let _ = c.stream.shutdown(Shutdown::Write);
                            c.stage = Stage::Linger(0);
                            c.deadline = now + self.limits.linger_time;
                            ready = true;
                            continue;
                        }
                        Ok(false) => return true,
                        Err(_) => return false,
                    }
                }
                Stage::Linger(discarded) => {
                    if now >= c.deadline || *discarded > self.limits.linger_bytes {
                        return false;
                    }
                    if !ready {
                        return true;
                    }
                    let mut sink = [0u8; 16 << 10];
                    loop {
                        match c.stream.read(&mut sink) {
                            Ok(0) => return false,
                            Ok(n) => {
                                *discarded += n;
                                if *discarded > self.limits.linger_bytes {
                                    return false;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => return false,
                        }
                    }
                }
            }
            // A new stage: try its work at once.
            ready = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Parsed {
        parse(s.as_bytes(), 8192)
    }

    #[test]
    fn requests() {
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n"),
            Parsed::Get {
                path: "/metrics".into(),
                accept: Some("text/plain".into()),
                authorization: None
            }
        );
        assert_eq!(p("GET /metrics HTTP/1.1\r\nHost: a"), Parsed::Partial);
        assert_eq!(p("\x16\x03\x01garbage\r\n"), Parsed::Error(400));
        assert_eq!(p("hello\r\n\r\n"), Parsed::Error(400));
        assert_eq!(p("GET metrics HTTP/1.1\r\n\r\n"), Parsed::Error(400));
        assert_eq!(p("GET / HTTP/1.1\r\nno colon\r\n\r\n"), Parsed::Error(400));
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n"), Parsed::Error(405));
        assert_eq!(
            p("GET / HTTP/1.0\r\n\r\n"),
            Parsed::Get {
                path: "/".into(),
                accept: None,
                authorization: None
            }
        );
        // Bare LF line ends are taken as CRLF.
        assert_eq!(
            p("GET /metrics HTTP/1.1\nHost: a\nAuthorization: Basic eDp5\n\n"),
            Parsed::Get {
                path: "/metrics".into(),
                accept: None,
                authorization: Some("Basic eDp5".into())
            }
        );
        assert_eq!(p("GET /metrics HTTP/1.1\nHost: a\n"), Parsed::Partial);
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Parsed::Error(413)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(p(&big), Parsed::Error(431));
        assert_eq!(parse(&[b'a'; 9000], 8192), Parsed::Error(431));
    }
}
