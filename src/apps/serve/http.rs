// SPDX-License-Identifier: Apache-2.0
//! The exporter's HTTP side: HTTP/1.x GET only, small, synchronous and bounded.
//!
//! One thread accepts and reads requests without blocking (poll), each connection with a
//! deadline for its whole request head, so a client that sends nothing or sends slowly
//! (slowloris) holds no worker; complete requests go to a fixed pool of workers, which
//! get the body from the tracers' owner and write it with a write timeout. At most
//! [`Limits::max_conns`] connections are open at once: past that, each new connection
//! closes the one that has waited longest for its request head (or, when every open one is
//! being answered, is itself closed at once). Every response closes its connection
//! (`Connection: close`).
//!
//! Answers: `GET /metrics` 200; `GET /` 200 (a link); other paths 404; other methods 405;
//! a request line or header that is not HTTP 400; a head over [`Limits::max_head`] 431; a
//! request with a body 413; a head not complete by its deadline 408.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::exposition::Format;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once (being read, waiting for a worker, being answered).
    pub max_conns: usize,
    pub workers: usize,
    /// Time a client has to send its whole request head.
    pub head_timeout: Duration,
    /// Time a response may take to be written.
    pub write_timeout: Duration,
    /// Bytes of the request head (request line and headers).
    pub max_head: usize,
    /// Time a worker waits for the body from the tracers' owner.
    pub render_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 64,
            workers: 2,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_head: 8192,
            render_timeout: Duration::from_secs(5),
        }
    }
}

/// A scrape asked of the tracers' owner: the format, and where to send the body.
pub struct Scrape {
    pub format: Format,
    pub reply: SyncSender<Vec<u8>>,
}

/// An open connection, counted while it lives.
struct Conn {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection whose request head is being read.
struct Reading {
    conn: Conn,
    buf: Vec<u8>,
    deadline: Instant,
}

struct Job {
    conn: Conn,
    path: String,
    format: Format,
}

/// What a complete (or early-failed) request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A GET of this path (query string removed), with its `Accept` header.
    Get {
        path: String,
        accept: Option<String>,
    },
    /// An error status to answer with.
    Error(u16),
    /// Not complete yet.
    Partial,
}

/// Parses what arrived of a request head. A bad request line is answered as soon as it
/// is complete; headers once the head is.
pub fn parse(buf: &[u8], max_head: usize) -> Parsed {
    let Some(line_end) = find(buf, b"\r\n") else {
        return if buf.len() > max_head {
            Parsed::Error(431)
        } else {
            Parsed::Partial
        };
    };
    let Ok(line) = std::str::from_utf8(&buf[..line_end]) else {
        return Parsed::Error(400);
    };
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
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > max_head {
            Parsed::Error(431)
        } else {
            Parsed::Partial
        };
    };
    if head_end + 4 > max_head {
        return Parsed::Error(431);
    }
    // No headers: the request line's CRLF is the blank line's first half.
    let headers = buf.get(line_end + 2..head_end).unwrap_or_default();
    let Ok(head) = std::str::from_utf8(headers) else {
        return Parsed::Error(400);
    };
    let mut accept = None;
    for h in head.split("\r\n").filter(|h| !h.is_empty()) {
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
        }
    }
    if method != "GET" {
        return Parsed::Error(405);
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    Parsed::Get { path, accept }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
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
    out.push_str("\r\n");
    out.into_bytes()
}

/// `head` then `body`, in as few writes as the socket takes (one `writev` for a body that
/// fits its buffer), without copying a scrape's megabytes into one buffer first.
fn write_response(w: &mut impl Write, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() || !body.is_empty() {
        let n = w.write_vectored(&[IoSlice::new(head), IoSlice::new(body)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    Ok(())
}

fn error_response(status: u16) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    response(status, "text/plain; charset=utf-8", body.as_bytes())
}

const INDEX: &str = "<html><head><title>btrace</title></head><body><h1>btrace serve</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

/// The running server: the accepting thread and the workers.
pub struct Server {
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves on `listener` until `stop` is set; scrapes go to `scrapes` (the tracers'
    /// owner answers them).
    pub fn start(
        listener: TcpListener,
        limits: Limits,
        scrapes: SyncSender<Scrape>,
        stop: &'static AtomicBool,
    ) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(limits.max_conns);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut threads = Vec::new();
        for i in 0..limits.workers {
            let rx = jobs_rx.clone();
            let scrapes = scrapes.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("http-worker-{i}"))
                    .spawn(move || worker(rx, scrapes, limits))?,
            );
        }
        threads.push(
            std::thread::Builder::new()
                .name("http-accept".into())
                .spawn(move || accept_loop(listener, limits, jobs_tx, stop))?,
        );
        Ok(Server { threads })
    }

    /// Waits for the threads to end (after `stop` was set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Best effort, without blocking: an error answer to a client that may not read it.
fn answer_now(conn: &mut Conn, status: u16) {
    let _ = conn.stream.write(&error_response(status));
}

/// Connections accepted per round of the accepting loop.
const ACCEPT_BATCH: usize = 16;

fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    jobs: SyncSender<Job>,
    stop: &'static AtomicBool,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut reading: Vec<Reading> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = reading
            .iter()
            .map(|r| r.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(200))
            .min(Duration::from_millis(200));
        let ready: Vec<bool> = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                reading
                    .iter()
                    .map(|r| PollFd::new(r.conn.stream.as_fd(), PollFlags::POLLIN)),
            );
            let ms =
                PollTimeout::try_from(wait.as_millis().max(1) as i32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(_) => fds
                    .iter()
                    .map(|f| !f.revents().unwrap_or(PollFlags::empty()).is_empty())
                    .collect(),
                Err(_) => vec![false; fds.len()],
            }
        };
        // Read what arrived; settle every connection whose head is complete or bad.
        let mut still = Vec::with_capacity(reading.len());
        for (mut r, ready) in reading.drain(..).zip(ready[1..].iter().copied()) {
            if ready {
                let mut chunk = [0u8; 4096];
                match r.conn.stream.read(&mut chunk) {
                    Ok(0) => continue,
                    Ok(n) => r.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => continue,
                }
            }
            match parse(&r.buf, limits.max_head) {
                Parsed::Partial if Instant::now() >= r.deadline => answer_now(&mut r.conn, 408),
                Parsed::Partial => still.push(r),
                Parsed::Error(status) => answer_now(&mut r.conn, status),
                Parsed::Get { path, accept } => {
                    let job = Job {
                        conn: r.conn,
                        path,
                        format: Format::from_accept(accept.as_deref()),
                    };
                    if let Err(e) = jobs.try_send(job) {
                        let mut job = match e {
                            std::sync::mpsc::TrySendError::Full(j)
                            | std::sync::mpsc::TrySendError::Disconnected(j) => j,
                        };
                        answer_now(&mut job.conn, 503);
                    }
                }
            }
        }
        reading = still;
        if ready[0] {
            // A few at a time, so requests that arrived are read between batches.
            for _ in 0..ACCEPT_BATCH {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if open.load(Ordering::SeqCst) >= limits.max_conns {
                            if reading.is_empty() {
                                // Every open connection is being answered: closed at once.
                                drop(stream);
                                continue;
                            }
                            // Make room by closing the connection that has waited longest
                            // for its request head (an idle or slow client), so a flood of
                            // connections that send nothing cannot lock a scraper out.
                            reading.remove(0);
                        }
                        open.fetch_add(1, Ordering::SeqCst);
                        let conn = Conn {
                            stream,
                            open: open.clone(),
                        };
                        if conn.stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        reading.push(Reading {
                            conn,
                            buf: Vec::new(),
                            deadline: Instant::now() + limits.head_timeout,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // Out of file descriptors and the like: try again at the next round.
                    Err(_) => break,
                }
            }
        }
    }
    // Dropping `jobs` ends the workers once they are idle.
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>, scrapes: SyncSender<Scrape>, limits: Limits) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        let Job {
            mut conn,
            path,
            format,
        } = job;
        let (head, body) = match path.as_str() {
            "/metrics" => {
                let (tx, rx) = sync_channel(1);
                let sent = scrapes.try_send(Scrape { format, reply: tx }).is_ok();
                match sent.then(|| rx.recv_timeout(limits.render_timeout).ok()) {
                    Some(Some(body)) => {
                        (response_head(200, format.content_type(), body.len()), body)
                    }
                    _ => (error_response(503), Vec::new()),
                }
            }
            "/" => (
                response(200, "text/html; charset=utf-8", INDEX.as_bytes()),
                Vec::new(),
            ),
            _ => (error_response(404), Vec::new()),
        };
        if conn.stream.set_nonblocking(false).is_ok()
            && conn
                .stream
                .set_write_timeout(Some(limits.write_timeout))
                .is_ok()
        {
            let _ = write_response(&mut conn.stream, &head, &body);
            let _ = conn.stream.flush();
        }
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
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
                accept: Some("text/plain".into())
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
                accept: None
            }
        );
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Parsed::Error(413)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(p(&big), Parsed::Error(431));
        assert_eq!(parse(&[b'a'; 9000], 8192), Parsed::Error(431));
    }
}
