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

mod conn;
mod message;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::exposition::Format;
use super::webconfig::{BasicAuth, WebConfig};

use conn::{abort, Conn, Stage};
use message::{error_response, response_head, INDEX};
pub use message::{parse, response, Parsed};

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
