// SPDX-License-Identifier: Apache-2.0
//! `btrace serve` against the real kernel and a real Prometheus server (Debian's
//! `prometheus`, installed by `make deps`): exact syscall and TCP counts through
//! Prometheus's query API, promtool on the exposition, bad clients while Prometheus
//! scrapes, memory over hundreds of scrapes, signals.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::net::{free_port, run_workload};
use common::*;
use serde_json::Value;

/// A `btrace serve` on a free loopback port, stopped (SIGTERM, exit 0, every program
/// unloaded) by [`Serve::stop`], killed when dropped otherwise (a failed test).
struct Serve {
    run: Option<Running>,
    ids: Vec<u32>,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(r) = self.run.as_mut() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

impl Serve {
    fn start(extra: &[&str]) -> Serve {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let listen = addr.to_string();
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(extra);
        let mut run = Running::start(&args);
        let ids = run.wait_attached();
        Serve {
            run: Some(run),
            ids,
            addr,
        }
    }

    fn running(&mut self) -> &mut Running {
        self.run.as_mut().expect("running")
    }

    fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        http_get(self.addr, path, accept)
    }

    /// The value of one sample line (`name{labels}`) in a scrape.
    fn sample(&self, series: &str) -> Option<f64> {
        let (status, _, body) = self.get("/metrics", None);
        assert_eq!(status, 200);
        sample_in(&body, series)
    }

    fn rss_kb(&self) -> u64 {
        let pid = self.run.as_ref().expect("running").pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn stop(self) -> Vec<String> {
        self.stop_with(libc::SIGTERM)
    }

    fn stop_with(mut self, sig: i32) -> Vec<String> {
        let run = self.run.take().expect("running");
        run.signal(sig);
        let ids = self.ids.clone();
        let (_, code, err) = run.finish();
        assert_eq!(code, 0, "btrace serve exit code; stderr: {err:?}");
        assert_unloaded(&ids);
        err
    }
}

fn sample_in(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// One HTTP/1.1 GET; (status, headers, body).
fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{accept}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// Sends `req` raw and returns what came back (empty when the server just closed).
fn raw_exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(resp: &str) -> Option<u16> {
    resp.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The workload under a name nobody else runs (`tag` tells apart the tests of this
/// process, which run at the same time), so a `--comm` scope counts only it.
fn private_workload(dir: &Path, tag: char) -> (PathBuf, String) {
    let comm = format!("bsrv{}{tag}", std::process::id() % 100_000);
    let path = dir.join(&comm);
    std::fs::copy(workload(), &path).unwrap();
    (path, comm)
}

/// A fresh directory of this test process; each call its own (tests run in parallel
/// threads, and two Prometheus servers sharing one directory fight over its database).
fn tmpdir(tag: &str) -> PathBuf {
    static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("btrace-serve-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A real Prometheus server on loopback scraping `targets` every second; killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Prometheus {
        Prometheus::start_with(targets, "")
    }

    /// With `job` added to the scrape job's configuration (YAML indented 4 spaces).
    fn start_with(targets: &[SocketAddr], job: &str) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(
            bin.exists(),
            "/usr/bin/prometheus is missing: `make deps` installs Debian's prometheus package"
        );
        let dir = tmpdir("prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: btrace\n{job}    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let p = Prometheus { child, addr, dir };
        let t0 = Instant::now();
        loop {
            if TcpStream::connect(addr).is_ok() && http_get(addr, "/-/ready", None).0 == 200 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "prometheus not ready: {}",
                std::fs::read_to_string(p.dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// An instant query: the vector's (labels, value) pairs.
    fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let (status, _, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", urlencode(expr)),
            None,
        );
        assert_eq!(status, 200, "{expr}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{expr}: {body}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// The single value of `expr`, None while it has no result.
    fn value(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr);
        assert!(r.len() <= 1, "{expr}: more than one series: {r:?}");
        r.first().map(|(_, v)| *v)
    }

    /// Waits (up to 30 s) for `expr` to be exactly `want`; fails at once if it goes past.
    fn wait_exact(&self, expr: &str, want: f64) {
        let t0 = Instant::now();
        loop {
            let v = self.value(expr);
            if v == Some(want) {
                return;
            }
            if let Some(v) = v {
                assert!(v <= want, "{expr} = {v}, more than the {want} expected");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{expr} = {v:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` on a text-format body: (clean, what it said).
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // No complaint at all: promtool's lint (the naming guide's units, _total, _info)
    // prints a line per problem.
    (out.status.success() && said.trim().is_empty(), said)
}

/// The whole path: two exporters (syscalls and runq scoped to a private workload name;
/// tcp on one port), a real Prometheus scraping both every second, exact counts read back
/// through its query API; bad clients while it scrapes; SIGTERM leaves nothing loaded.
#[test]
fn prometheus_reads_exact_counts_and_scrapes_survive_bad_clients() {
    let dir = tmpdir("wl");
    let (wl, comm) = private_workload(&dir, 'p');
    let port = free_port();
    let port_s = port.to_string();
    let sys = Serve::start(&["--comm", &comm]);
    let tcp = Serve::start(&["--groups", "tcp", "--port", &port_s]);
    let prom = Prometheus::start(&[sys.addr, tcp.addr]);
    let up = |s: &Serve| format!("up{{instance=\"{}\"}}", s.addr);
    prom.wait_exact(&up(&sys), 1.0);
    prom.wait_exact(&up(&tcp), 1.0);

    // Syscalls: exactly 1000, then 2345 more, getppid calls by the private workload.
    let count = "btrace_syscall_latency_seconds_count{syscall=\"getppid\"}";
    let run = |n: &str| {
        let st = Command::new(&wl)
            .args(["syscalls", n, "0"])
            .status()
            .unwrap();
        assert!(st.success());
    };
    run("1000");
    prom.wait_exact(count, 1000.0);
    run("2345");
    prom.wait_exact(count, 3345.0);
    let inf = "btrace_syscall_latency_seconds_bucket{syscall=\"getppid\",le=\"+Inf\"}";
    assert_eq!(prom.value(inf), Some(3345.0));
    // Nothing else of this workload's: getppid is its only syscall made in thousands.
    let sum = prom
        .value("btrace_syscall_latency_seconds_sum{syscall=\"getppid\"}")
        .unwrap();
    assert!(sum > 0.0 && sum < 3345.0 * 0.01, "sum {sum} s");
    let p50 = prom
        .value(
            "histogram_quantile(0.5, btrace_syscall_latency_seconds_bucket{syscall=\"getppid\"})",
        )
        .unwrap();
    assert!(p50 > 0.0 && p50 <= 0.01, "median getppid latency {p50} s");
    // The runq group counted the private workload's wake-ups only; it did run.
    assert!(prom
        .value("btrace_runqueue_latency_seconds_count")
        .is_some());

    // TCP on one port: 5 connections without payload, 1 with 1000 bytes one way and
    // 2000 the other; both ends are on this host, so each connection counts twice.
    let addr = "127.0.0.1";
    run_workload(&["tcp-many", addr, &port_s, "5"]);
    run_workload(&["tcp-pair", addr, &port_s, "0", "1000", "2000"]);
    let ti = format!("instance=\"{}\"", tcp.addr);
    let q = |name: &str| format!("{name}{{{ti}}}");
    let opened = |d: &str| format!("btrace_tcp_connections_opened_total{{{ti},direction=\"{d}\"}}");
    prom.wait_exact(&q("btrace_tcp_connections_closed_total"), 12.0);
    assert_eq!(prom.value(&opened("active")), Some(6.0));
    assert_eq!(prom.value(&opened("passive")), Some(6.0));
    assert_eq!(prom.value(&q("btrace_tcp_sent_bytes_total")), Some(3000.0));
    assert_eq!(
        prom.value(&q("btrace_tcp_received_bytes_total")),
        Some(3000.0)
    );
    assert_eq!(prom.value(&q("btrace_tcp_resets_total")), Some(0.0));
    assert_eq!(
        prom.value(&q("btrace_tcp_connect_failures_total")),
        Some(0.0)
    );
    assert_eq!(
        prom.value(&q("btrace_tcp_connection_duration_seconds_count")),
        Some(12.0)
    );
    // Health: hooks, nothing lost, run counts.
    let groups = prom.query("btrace_group_info == 1");
    let mut names: Vec<String> = groups
        .iter()
        .map(|(m, _)| m["group"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["runq", "syscalls", "tcp", "tcp"]);
    assert!(groups
        .iter()
        .all(|(m, _)| !m["hook"].as_str().unwrap().is_empty()));
    let attached = prom.query("btrace_group_attached == 1");
    assert_eq!(attached.len(), 4, "{attached:?}");
    assert_eq!(
        prom.value("sum(btrace_lost_total{kind!=\"no_entry\"})"),
        Some(0.0)
    );
    assert!(prom.value("sum(btrace_bpf_program_runs_total)").unwrap() > 0.0);

    // promtool accepts the text format; the OpenMetrics body ends with # EOF.
    let (status, head, text) = sys.get("/metrics", None);
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (ok, why) = promtool_check(&text);
    assert!(ok, "promtool check metrics: {why}");
    let (status, head, om) = sys.get(
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE btrace_lost counter\n"));

    // Bad clients for about 8 s while Prometheus keeps scraping `sys` every second.
    let attack_start = Instant::now();
    let a = sys.addr;
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let garbage = raw_exchange(
        a,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert_eq!(status_of(&garbage), Some(400), "{garbage:?}");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let r = raw_exchange(a, huge.as_bytes());
    assert_eq!(status_of(&r), Some(431), "{r:?}");
    let r = raw_exchange(
        a,
        b"GET /metrics HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
    );
    assert_eq!(status_of(&r), Some(413), "{r:?}");
    assert_eq!(sys.get("/nothing", None).0, 404);
    assert_eq!(
        status_of(&raw_exchange(a, b"DELETE /metrics HTTP/1.1\r\n\r\n")),
        Some(405)
    );
    // 1000 connections at once, held 3 s, sending nothing.
    raise_nofile(4096);
    let flood: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(a).ok())
        .collect();
    assert!(flood.len() >= 900, "only {} connections made", flood.len());
    std::thread::sleep(Duration::from_secs(3));
    drop(flood);
    // The slowloris ones were cut off (the head deadline, or room made for others).
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    while attack_start.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exporter alive and answering; Prometheus missed no scrape during the attack.
    assert_eq!(sys.get("/metrics", None).0, 200);
    std::thread::sleep(Duration::from_secs(2));
    let window = format!("{}s", attack_start.elapsed().as_secs() + 1);
    let target = format!("instance=\"{}\"", sys.addr);
    assert_eq!(
        prom.value(&format!("min_over_time(up{{{target}}}[{window}])")),
        Some(1.0),
        "a scrape failed during the bad clients"
    );
    let scrapes = prom
        .value(&format!("count_over_time(up{{{target}}}[{window}])"))
        .unwrap();
    let secs = attack_start.elapsed().as_secs_f64();
    assert!(scrapes >= secs * 0.6, "{scrapes} scrapes in {secs} s");
    assert!(
        prom.value(&format!(
            "min_over_time(scrape_samples_scraped{{{target}}}[{window}])"
        ))
        .unwrap()
            > 50.0
    );
    assert_eq!(
        prom.value(count),
        Some(3345.0),
        "counts survived the bad clients"
    );

    drop(prom);
    sys.stop();
    tcp.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit fill or read one rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < n {
            lim.rlim_cur = n.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Hundreds of scrapes do not make btrace grow: RSS after 400 scrapes within 1 MiB of
/// RSS after the first 100.
#[test]
fn memory_stays_flat_over_scrapes() {
    let s = Serve::start(&[]);
    for _ in 0..100 {
        assert_eq!(s.get("/metrics", None).0, 200);
    }
    let warm = s.rss_kb();
    for i in 0..300 {
        let accept = (i % 2 == 0).then_some("application/openmetrics-text");
        assert_eq!(s.get("/metrics", accept).0, 200);
    }
    let end = s.rss_kb();
    assert!(
        end <= warm + 1024,
        "RSS grew from {warm} kB to {end} kB over 300 scrapes"
    );
    s.stop_with(libc::SIGINT);
}

/// SIGHUP re-attaches every group (said on stderr) and counting goes on exactly.
#[test]
fn sighup_reattaches_and_counts_go_on() {
    let dir = tmpdir("hup");
    let (wl, comm) = private_workload(&dir, 'h');
    let mut s = Serve::start(&["--groups", "syscalls,runq", "--comm", &comm]);
    let count = "btrace_syscall_latency_seconds_count{syscall=\"getppid\"}";
    let run = |n: &str| {
        assert!(Command::new(&wl)
            .args(["syscalls", n, "0"])
            .status()
            .unwrap()
            .success())
    };
    run("700");
    assert_eq!(s.sample(count), Some(700.0));
    s.running().signal(libc::SIGHUP);
    // Re-attached when both lines are out.
    let t0 = Instant::now();
    loop {
        let r = s.running();
        if r.stderr_seen
            .iter()
            .filter(|l| l.contains("re-attached"))
            .count()
            >= 2
        {
            break;
        }
        r.collect_stderr(Duration::from_millis(200));
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{:?}",
            r.stderr_seen
        );
    }
    run("300");
    assert_eq!(s.sample(count), Some(1000.0));
    let err = s.stop();
    assert!(
        err.iter()
            .any(|l| l.starts_with("btrace: serve: syscalls re-attached via ")),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// --textfile: written every -i seconds, atomically (no temporary file left), in the
/// text format promtool accepts; no port is opened unless --listen is given.
#[test]
fn textfile_for_node_exporter() {
    let dir = tmpdir("textfile");
    let file = dir.join("btrace.prom");
    let f = file.to_string_lossy().into_owned();
    let mut run = Running::start(&["serve", "--groups", "runq", "--textfile", &f, "-i", "0.2"]);
    let ids = run.wait_attached();
    assert!(
        run.stderr_seen.iter().all(|l| !l.contains("serving http")),
        "{:?}",
        run.stderr_seen
    );
    let t0 = Instant::now();
    let mut contents = Vec::new();
    while contents.len() < 3 && t0.elapsed() < Duration::from_secs(20) {
        if let Ok(c) = std::fs::read_to_string(&file) {
            if contents.last() != Some(&c) {
                contents.push(c);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(contents.len() >= 3, "the file was not rewritten");
    for c in &contents {
        assert!(c.starts_with("# HELP btrace_build_info"), "{c}");
        assert!(c.contains("btrace_runqueue_latency_seconds_count "), "{c}");
    }
    let (ok, why) = promtool_check(&contents[0]);
    assert!(ok, "{why}");
    run.signal(libc::SIGTERM);
    let (_, code, _) = run.finish();
    assert_eq!(code, 0);
    assert_unloaded(&ids);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["btrace.prom"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// --textfile replaces its file by a rename, so it must never be pointed at something
/// else: a device node (/dev/full became a regular file), a symbolic link (planted by
/// whoever can write the directory, to make root's btrace replace a root-only file), a
/// directory or a FIFO. Each is refused with one line before anything is attached, and
/// stays as it was.
#[test]
fn textfile_refuses_devices_links_and_other_non_files() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let dir = tmpdir("textfile-refused");
    let refused = |target: &Path, why: &str| {
        let t = target.to_string_lossy().into_owned();
        let out = btrace_within(
            &["serve", "--groups", "runq", "--textfile", &t, "-i", "0.2"],
            Duration::from_secs(10),
        );
        let e = one_line_error(&out);
        assert!(!e.starts_with("Tracing"), "{e}");
        assert!(
            e.starts_with(&format!("btrace: --textfile {t}: is {why}")),
            "{e}"
        );
    };
    // A /dev/full of its own: character device 1,7.
    let node = dir.join("full");
    let dev = libc::makedev(1, 7);
    let c = std::ffi::CString::new(node.to_string_lossy().as_bytes()).unwrap();
    assert_eq!(
        // SAFETY: a NUL-terminated path; mknod reads nothing else.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, dev) },
        0
    );
    refused(&node, "a character device");
    let m = std::fs::symlink_metadata(&node).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == dev, "{m:?}");

    // A link planted at the target's name, to a file only root may read.
    let secret = dir.join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("btrace.prom");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    refused(&link, "a symbolic link");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");

    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    refused(&sub, "a directory");
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    refused(&fifo, "a FIFO");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    // Nothing was created beside them (no temporary file left).
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["btrace.prom", "fifo", "full", "secret", "sub"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_groups_and_addresses_are_one_line_errors() {
    let out = btrace(&["serve", "--groups", "syscalls,nope"]);
    assert_eq!(
        one_line_error(&out).trim_end(),
        "btrace: --groups: no group 'nope' (groups: syscalls, tcp, runq)"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = taken.local_addr().unwrap().to_string();
    let out = btrace(&["serve", "--listen", &a]);
    let e = one_line_error(&out);
    assert!(
        e.starts_with(&format!("btrace: cannot listen on {a}: ")),
        "{e}"
    );
}

/// Runs `workload ARGS` inside cgroup `cg`: the shell moves itself in, then becomes the
/// workload, so every call the workload makes is the cgroup's.
fn run_in_cgroup(cg: &Path, args: &str) {
    let cmd = format!(
        "echo $$ > {}/cgroup.procs && exec {} {args}",
        cg.display(),
        workload()
    );
    let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// Removes test cgroups (their processes have ended; the kernel may take a moment).
struct CgroupDirs(Vec<PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn remove_cgroup(d: &Path) {
    for _ in 0..100 {
        if std::fs::remove_dir(d).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("cannot remove {}", d.display());
}

/// --by cgroup through a real Prometheus: three cgroups made by the test under one parent
/// (the exporters' --cgroup scope, so no other cgroup of the machine takes a label), an
/// exact number of getppid calls in each; one exporter with the default cap labels each
/// exactly, one with --max-cgroups 2 labels two exactly and puts the third's calls in
/// cgroup="other" exactly, counting the overflow. A removed cgroup keeps its series, and
/// a cgroup made again at its path continues it.
#[test]
fn by_cgroup_labels_exact_counts_and_caps_the_rest() {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let parent = root.join(format!("btrace-serve-cg-{}", std::process::id()));
    let names = ["a", "b", "c"];
    let cgs: Vec<PathBuf> = names.iter().map(|n| parent.join(n)).collect();
    for d in &cgs {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut dirs = vec![parent.clone()];
    dirs.extend(cgs.iter().cloned());
    let _cleanup = CgroupDirs(dirs);
    let rel = |d: &Path| format!("/{}", d.strip_prefix(&root).unwrap().display());
    let scope = parent.to_str().unwrap();
    let all = Serve::start(&[
        "--groups",
        "syscalls,runq",
        "--by",
        "cgroup",
        "--cgroup",
        scope,
    ]);
    let capped = Serve::start(&[
        "--groups",
        "syscalls",
        "--by",
        "cgroup",
        "--max-cgroups",
        "2",
        "--cgroup",
        scope,
    ]);
    let prom = Prometheus::start(&[all.addr, capped.addr]);
    prom.wait_exact(&format!("up{{instance=\"{}\"}}", all.addr), 1.0);
    prom.wait_exact(&format!("up{{instance=\"{}\"}}", capped.addr), 1.0);

    let want = [1000.0, 2000.0, 3000.0];
    for (d, n) in cgs.iter().zip(want) {
        run_in_cgroup(d, &format!("syscalls {n} 0"));
    }
    let getppid = |s: &Serve, cgroup: &str| {
        format!(
            "btrace_syscall_latency_seconds_count{{instance=\"{}\",cgroup=\"{cgroup}\",syscall=\"getppid\"}}",
            s.addr
        )
    };
    // Default cap: each cgroup exactly, and nothing else (no other series).
    for (d, n) in cgs.iter().zip(want) {
        prom.wait_exact(&getppid(&all, &rel(d)), n);
    }
    let series = prom.query(&format!(
        "btrace_syscall_latency_seconds_count{{instance=\"{}\",syscall=\"getppid\"}}",
        all.addr
    ));
    assert_eq!(series.len(), 3, "{series:?}");
    let bucket = format!(
        "btrace_syscall_latency_seconds_bucket{{instance=\"{}\",cgroup=\"{}\",syscall=\"getppid\",le=\"+Inf\"}}",
        all.addr,
        rel(&cgs[1])
    );
    assert_eq!(prom.value(&bucket), Some(2000.0));
    // The run-queue histogram is labelled too; every series is one of the test's cgroups
    // (or other), and they add up to the group's count.
    for (m, _) in prom.query(&format!(
        "btrace_runqueue_latency_seconds_count{{instance=\"{}\"}}",
        all.addr
    )) {
        let c = m["cgroup"].as_str().unwrap_or_default().to_string();
        assert!(
            c == "other" || cgs.iter().any(|d| rel(d) == c),
            "runq series {m}"
        );
    }

    // Cap 2: two cgroups labelled with their exact counts, the third's calls in other.
    let t0 = Instant::now();
    let (labelled, other) = loop {
        let got: Vec<(String, f64)> = prom
            .query(&format!(
                "btrace_syscall_latency_seconds_count{{instance=\"{}\",syscall=\"getppid\"}}",
                capped.addr
            ))
            .into_iter()
            .map(|(m, v)| (m["cgroup"].as_str().unwrap().to_string(), v))
            .collect();
        let total: f64 = got.iter().map(|(_, v)| v).sum();
        if total == 6000.0 || t0.elapsed() > Duration::from_secs(30) {
            let other = got.iter().find(|(c, _)| c == "other").map(|(_, v)| *v);
            let labelled: Vec<(String, f64)> =
                got.into_iter().filter(|(c, _)| c != "other").collect();
            break (labelled, other);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(labelled.len(), 2, "{labelled:?} other {other:?}");
    let mut left = 6000.0;
    for (c, v) in &labelled {
        let i = cgs
            .iter()
            .position(|d| rel(d) == *c)
            .expect("a test cgroup");
        assert_eq!(*v, want[i], "{c}");
        left -= want[i];
    }
    assert_eq!(other, Some(left), "other holds the third cgroup exactly");
    let overflow = format!(
        "btrace_cgroup_overflow_total{{instance=\"{}\",reason=\"cap\"}}",
        capped.addr
    );
    assert_eq!(prom.value(&overflow), Some(1.0));
    assert_eq!(
        prom.value(&format!(
            "btrace_cgroup_labels{{instance=\"{}\"}}",
            capped.addr
        )),
        Some(2.0)
    );
    // The default cap gave all three their label: nothing overflowed there.
    assert_eq!(
        prom.value(&format!(
            "btrace_cgroup_overflow_total{{instance=\"{}\",reason=\"cap\"}}",
            all.addr
        )),
        Some(0.0)
    );
    for s in [&all, &capped] {
        let (status, _, body) = s.get("/metrics", None);
        assert_eq!(status, 200);
        let (ok, why) = promtool_check(&body);
        assert!(ok, "promtool check metrics: {why}");
    }

    // A removed cgroup keeps its series (checked for removal every 10 s: wait past it);
    // one made again at the same path continues that series.
    remove_cgroup(&cgs[0]);
    std::thread::sleep(Duration::from_secs(11));
    let a = format!(
        "btrace_syscall_latency_seconds_count{{cgroup=\"{}\",syscall=\"getppid\"}}",
        rel(&cgs[0])
    );
    assert_eq!(all.sample(&a), Some(1000.0));
    assert_eq!(all.sample(&a), Some(1000.0));
    std::fs::create_dir(&cgs[0]).unwrap();
    run_in_cgroup(&cgs[0], "syscalls 500 0");
    assert_eq!(all.sample(&a), Some(1500.0));
    prom.wait_exact(&getppid(&all, &rel(&cgs[0])), 1500.0);
    assert_eq!(
        prom.value(&format!(
            "min_over_time(up{{instance=\"{}\"}}[1m])",
            all.addr
        )),
        Some(1.0)
    );

    drop(prom);
    all.stop();
    capped.stop();
}

/// `serve --cgroup PATH` of a cgroup that is removed and made again at the same path (a
/// service restarted): the new cgroup is traced within a second, said on stderr, and
/// the counts go on exactly (1000 before, 500 in the new cgroup).
#[test]
fn a_cgroup_made_again_is_counted_again() {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let cg = root.join(format!("btrace-serve-again-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let _cleanup = CgroupDirs(vec![cg.clone()]);
    let mut s = Serve::start(&[
        "--groups",
        "syscalls,runq",
        "--cgroup",
        cg.to_str().unwrap(),
    ]);
    let count = "btrace_syscall_latency_seconds_count{syscall=\"getppid\"}";
    run_in_cgroup(&cg, "syscalls 1000 0");
    assert_eq!(s.sample(count), Some(1000.0));
    remove_cgroup(&cg);
    std::fs::create_dir(&cg).unwrap();
    let t0 = Instant::now();
    loop {
        let r = s.running();
        if r.stderr_seen.iter().any(|l| l.contains("was made again")) {
            break;
        }
        r.collect_stderr(Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", r.stderr_seen);
    }
    run_in_cgroup(&cg, "syscalls 500 0");
    assert_eq!(s.sample(count), Some(1500.0));
    let err = s.stop();
    let said: Vec<_> = err
        .iter()
        .filter(|l| l.contains("was made again"))
        .collect();
    assert_eq!(said.len(), 1, "one line, once: {err:?}");
}

/// `python3 -c CODE` inside cgroup `cg` (the shell moves itself in, then becomes python).
fn python_in_cgroup(cg: &Path, code: &str) -> Command {
    let mut c = Command::new("sh");
    c.args([
        "-c",
        &format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
            cg.display()
        ),
        code,
    ]);
    c
}

/// --by cgroup labels the tcp families by the socket's cgroup: a listener in one test
/// cgroup accepts 3 connections from a client in another, each carrying exactly 1500
/// bytes client to server. The passive opens, which complete in softirq before any
/// process owns the socket, go to the listener's cgroup; the active ones, the sent bytes
/// and the client's ends to the client's; nothing is counted under any other label.
#[test]
fn by_cgroup_labels_tcp_by_the_socket_s_cgroup() {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let parent = root.join(format!("btrace-serve-tcpcg-{}", std::process::id()));
    let (client, server) = (parent.join("client"), parent.join("server"));
    for d in [&client, &server] {
        std::fs::create_dir_all(d).unwrap();
    }
    let _cleanup = CgroupDirs(vec![parent.clone(), client.clone(), server.clone()]);
    let rel = |d: &Path| format!("/{}", d.strip_prefix(&root).unwrap().display());
    let port = free_port();
    let exporter = Serve::start(&[
        "--groups",
        "tcp",
        "--by",
        "cgroup",
        "--port",
        &port.to_string(),
    ]);
    let prom = Prometheus::start(&[exporter.addr]);
    prom.wait_exact(&format!("up{{instance=\"{}\"}}", exporter.addr), 1.0);

    let mut listener = python_in_cgroup(
        &server,
        &format!(
            "import socket\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {port}))\n\
             s.listen(8)\n\
             print('ready', flush=True)\n\
             for _ in range(3):\n    \
                 c, _ = s.accept()\n    \
                 while c.recv(65536):\n        \
                     pass\n    \
                 c.close()\n"
        ),
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut ready = [0u8; 6];
    listener
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    assert_eq!(&ready, b"ready\n");
    let st = python_in_cgroup(
        &client,
        &format!(
            "import socket\n\
             for _ in range(3):\n    \
                 c = socket.create_connection(('127.0.0.1', {port}))\n    \
                 c.sendall(b'x' * 1500)\n    \
                 c.close()\n"
        ),
    )
    .status()
    .unwrap();
    assert!(st.success());
    assert!(listener.wait().unwrap().success());

    let series = |name: &str, cg: &Path, extra: &str| {
        format!(
            "{name}{{instance=\"{}\",cgroup=\"{}\"{extra}}}",
            exporter.addr,
            rel(cg)
        )
    };
    let closed = "btrace_tcp_connections_closed_total";
    prom.wait_exact(&series(closed, &client, ""), 3.0);
    prom.wait_exact(&series(closed, &server, ""), 3.0);
    let opened = "btrace_tcp_connections_opened_total";
    let want = [
        (series(opened, &client, ",direction=\"active\""), 3.0),
        (series(opened, &client, ",direction=\"passive\""), 0.0),
        (series(opened, &server, ",direction=\"active\""), 0.0),
        (series(opened, &server, ",direction=\"passive\""), 3.0),
        (series("btrace_tcp_sent_bytes_total", &client, ""), 4500.0),
        (series("btrace_tcp_received_bytes_total", &client, ""), 0.0),
        (series("btrace_tcp_sent_bytes_total", &server, ""), 0.0),
        (
            series("btrace_tcp_received_bytes_total", &server, ""),
            4500.0,
        ),
        (
            series("btrace_tcp_connection_duration_seconds_count", &client, ""),
            3.0,
        ),
        (
            series("btrace_tcp_connection_duration_seconds_count", &server, ""),
            3.0,
        ),
    ];
    for (expr, v) in want {
        assert_eq!(prom.value(&expr), Some(v), "{expr}");
    }
    // Only the two test cgroups: the port filter let nothing else in.
    let labels: Vec<String> = prom
        .query(&format!("{closed}{{instance=\"{}\"}}", exporter.addr))
        .into_iter()
        .map(|(m, _)| m["cgroup"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    let (status, _, body) = exporter.get("/metrics", None);
    assert_eq!(status, 200);
    let (ok, why) = promtool_check(&body);
    assert!(ok, "promtool check metrics: {why}");
}

/// Reads a whole response from `s`: (status, Content-Length, body bytes received), or
/// what went wrong with how many bytes had come.
fn read_response(s: &mut TcpStream) -> Result<(u16, usize, usize), String> {
    read_response_after(s, Vec::new())
}

/// The same, the response's first bytes already read into `raw`.
fn read_response_after(s: &mut TcpStream, mut raw: Vec<u8>) -> Result<(u16, usize, usize), String> {
    if let Err(e) = s.read_to_end(&mut raw) {
        return Err(format!("{e} after {} bytes", raw.len()));
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no response head in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = status_of(&head).ok_or_else(|| format!("no status: {head:?}"))?;
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Content-Length: {head:?}"))?;
    Ok((status, len, raw.len() - end - 4))
}

/// Cgroups under one parent, each holding the syscalls of one short `ls` run: with
/// `--by cgroup`, a body of about 80 KB per cgroup. Removed when dropped.
fn busy_cgroups(tag: &str, n: usize) -> (PathBuf, CgroupDirs) {
    let root = btrace::core::scope::cgroup2_mount().expect("cgroup v2 mounted");
    let parent = root.join(format!("btrace-serve-{tag}-{}", std::process::id()));
    let mut dirs = vec![parent.clone()];
    for i in 0..n {
        let d = parent.join(format!("c{i}"));
        std::fs::create_dir_all(&d).unwrap();
        dirs.push(d);
    }
    (parent, CgroupDirs(dirs))
}

fn fill_cgroups(parent: &Path, n: usize) {
    for i in 0..n {
        let cmd = format!(
            "echo $$ > {}/c{i}/cgroup.procs && exec ls / > /dev/null",
            parent.display()
        );
        let st = Command::new("sh").args(["-c", &cmd]).status().unwrap();
        assert!(st.success(), "{cmd}");
    }
}

/// A client that sends more than its request (a trailing CRLF, as some clients do) still
/// gets the whole response, every time: the server reads what is left before closing
/// (closing with unread data would send a reset, which throws away the end of the
/// response at the client). A 1 MB request gets its whole 431 response, not a reset.
/// (Before the lingering close: 19 of 20 responses cut off, and a reset for 1 MB.)
#[test]
fn responses_arrive_whole_when_clients_send_more() {
    let (parent, _dirs) = busy_cgroups("linger", 8);
    let s = Serve::start(&[
        "--groups",
        "syscalls",
        "--by",
        "cgroup",
        "--cgroup",
        parent.to_str().unwrap(),
    ]);
    fill_cgroups(&parent, 8);
    let mut sizes = Vec::new();
    for i in 0..20 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // The trailing CRLF comes once the response has begun, so the server has read
        // the request before it (what a single write would let it read together).
        let mut first = [0u8; 1];
        c.read_exact(&mut first).unwrap();
        c.write_all(b"\r\n").unwrap();
        let (status, len, got) =
            read_response_after(&mut c, first.to_vec()).unwrap_or_else(|e| panic!("try {i}: {e}"));
        assert_eq!(status, 200);
        assert_eq!(got, len, "try {i}: {got} of {len} body bytes");
        sizes.push(len);
    }
    assert!(sizes[0] > 200_000, "a body of {} bytes only", sizes[0]);

    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
    req.resize(1 << 20, b'a');
    req.extend_from_slice(b"\r\n\r\n");
    c.write_all(&req).expect("the 1 MB request written");
    let (status, len, got) = read_response(&mut c).expect("a whole 431 response");
    assert_eq!((status, got), (431, len));
    s.stop();
}

/// Two clients that read a large body slowly hold nothing anybody else needs: normal
/// scrapes keep answering within their timeout, a slow reader is dropped once its
/// response has taken 10 s, and SIGTERM ends btrace within 2 s whatever they do.
/// (Before: two slow readers held both workers, every scrape timed out, and SIGTERM
/// waited for them.)
#[test]
fn slow_readers_delay_no_scrape_and_sigterm_ends_promptly() {
    let n = 70;
    let (parent, _dirs) = busy_cgroups("slow", n);
    let s = Serve::start(&[
        "--groups",
        "syscalls",
        "--by",
        "cgroup",
        "--cgroup",
        parent.to_str().unwrap(),
    ]);
    fill_cgroups(&parent, n);
    let (status, _, body) = s.get("/metrics", None);
    assert_eq!(status, 200);
    // More than the kernel's send buffer holds (4 MB at most by default), so the server
    // is still writing when its deadline comes.
    assert!(
        body.len() > 5_000_000,
        "a body of {} bytes only",
        body.len()
    );

    // Reads 8 KB every 100 ms (80 KB/s: a body of MBs takes a minute) until the server
    // closes; returns when that was, from its start, and the bytes it read.
    let slow_reader = |addr: SocketAddr| {
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut c = TcpStream::connect(addr).unwrap();
            // A small receive buffer, so what is in flight is mostly the server's.
            let size: libc::c_int = 64 << 10;
            // SAFETY: an option of the open socket `c`, an int of the size passed.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&c),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 8192];
            let mut total = 0;
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return (t0.elapsed(), total),
                    Ok(n) => total += n,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let slow: Vec<_> = (0..2).map(|_| slow_reader(s.addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let mut scrapes = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let started = Instant::now();
        let (status, len, got) = read_response(&mut c)
            .unwrap_or_else(|e| panic!("scrape {scrapes} with slow readers: {e}"));
        assert_eq!((status, got), (200, len));
        assert!(started.elapsed() < Duration::from_secs(5));
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(scrapes >= 5, "{scrapes} scrapes in 5 s");
    // The slow readers are dropped 10 s into their responses, not served for a minute.
    for h in slow {
        let (took, got) = h.join().unwrap();
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_secs(15),
            "a slow reader was served {took:?} ({got} bytes)"
        );
        assert!(got < body.len(), "a slow reader read the whole body");
    }
    // 24 clients that ask and never read would hold 24 bodies (130 MB) for 10 s: the
    // responses held are capped (64 MiB), the longest-written dropped first, and a
    // normal scrape still answers.
    let before = s.rss_kb();
    let idle: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let grown_mb = s.rss_kb().saturating_sub(before) / 1024;
    eprintln!("RSS grew by {grown_mb} MB with 24 clients not reading");
    let (status, _, _) = s.get("/metrics", None);
    assert_eq!(status, 200);
    assert!(
        grown_mb < 90,
        "btrace grew by {grown_mb} MB with 24 clients not reading"
    );
    drop(idle);
    // SIGTERM while two slow readers are being answered: out within 2 s.
    let _slow: Vec<_> = (0..2).map(|_| slow_reader(s.addr)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    s.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "SIGTERM took {:?} with slow readers connected",
        t.elapsed()
    );
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (ca.crt) and a server certificate for 127.0.0.1 signed by it (server.crt,
/// server.key) in `dir`, and a second CA that signed nothing (other-ca.crt).
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, cn) in [("ca", "btrace test CA"), ("other-ca", "another CA")] {
        let (key, crt, subj) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subj];
        args.extend_from_slice(&ec);
        args.extend_from_slice(&["-keyout", &key, "-out", &crt]);
        openssl(dir, &args);
    }
    let mut args = vec!["req", "-subj", "/CN=127.0.0.1"];
    args.extend_from_slice(&ec);
    args.extend_from_slice(&["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &args);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// curl with `args`: (exit code, HTTP status curl saw, 0 when none).
fn curl(args: &[&str]) -> (i32, u16) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("running curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (out.status.code().unwrap_or(-1), code)
}

/// `--web-config` with TLS and basic auth (exporter-toolkit's file, relative paths):
/// a real Prometheus scraping over HTTPS with a user and password sees the exact
/// increase of a workload's getppid calls; without credentials or with a wrong password
/// 401 with `WWW-Authenticate: Basic`; a client trusting another CA cannot connect.
#[test]
fn tls_and_basic_auth_from_web_config() {
    let dir = tmpdir("tls");
    make_certs(&dir);
    let hash = bcrypt::hash("s3cret pass", 6).unwrap();
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prom: '{hash}'\n"
        ),
    )
    .unwrap();
    let (wl, comm) = private_workload(&dir, 't');
    let web = dir.join("web.yml");
    let s = Serve::start(&[
        "--groups",
        "syscalls",
        "--comm",
        &comm,
        "--web-config",
        web.to_str().unwrap(),
    ]);
    let url = format!("https://{}/metrics", s.addr);
    let ca = dir.join("ca.crt");
    let ca = ca.to_str().unwrap();
    let job = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      \
         username: prom\n      password: 's3cret pass'\n"
    );
    let prom = Prometheus::start_with(&[s.addr], &job);
    prom.wait_exact(&format!("up{{instance=\"{}\"}}", s.addr), 1.0);
    let count = "btrace_syscall_latency_seconds_count{syscall=\"getppid\"}";
    let run = |n: &str| {
        let st = Command::new(&wl)
            .args(["syscalls", n, "0"])
            .status()
            .unwrap();
        assert!(st.success());
    };
    run("1000");
    prom.wait_exact(count, 1000.0);
    run("2345");
    prom.wait_exact(count, 3345.0);
    drop(prom);

    assert_eq!(
        curl(&["--cacert", ca, "-u", "prom:s3cret pass", &url]),
        (0, 200)
    );
    assert_eq!(curl(&["--cacert", ca, &url]), (0, 401));
    assert_eq!(curl(&["--cacert", ca, "-u", "prom:wrong", &url]), (0, 401));
    assert_eq!(
        curl(&["--cacert", ca, "-u", "nobody:s3cret pass", &url]),
        (0, 401)
    );
    let head = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert", ca, &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).into_owned();
    assert!(head.contains("WWW-Authenticate: Basic"), "{head}");
    // Another CA: curl refuses the certificate (60: peer certificate cannot be
    // authenticated), nothing is served.
    let other = dir.join("other-ca.crt");
    let (code, status) = curl(&[
        "--cacert",
        other.to_str().unwrap(),
        "-u",
        "prom:s3cret pass",
        &url,
    ]);
    assert_eq!((code, status), (60, 0));
    // Plain HTTP on the TLS port gets no metrics.
    let (_, status) = curl(&[
        "-u",
        "prom:s3cret pass",
        &format!("http://{}/metrics", s.addr),
    ]);
    assert_ne!(status, 200);
    let addr = s.addr;
    let err = s.stop();
    assert!(
        err.iter()
            .any(|l| l.contains(&format!("serving https://{addr}/metrics"))),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad --web-config is one line on stderr, before anything is attached.
#[test]
fn bad_web_config_is_a_one_line_error() {
    let dir = tmpdir("badweb");
    let f = dir.join("web.yml");
    let f_s = f.to_str().unwrap();
    for (text, says) in [
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
            "missing.crt",
        ),
        (
            "basic_auth_users:\n  prom: plaintext\n",
            "not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n",
            "min_version",
        ),
        ("basic_auth_users: [\n", "--web-config"),
    ] {
        std::fs::write(&f, text).unwrap();
        let out = btrace(&["serve", "--listen", "127.0.0.1:0", "--web-config", f_s]);
        let e = one_line_error(&out);
        assert!(
            e.starts_with(&format!("btrace: --web-config {f_s}")) && e.contains(says),
            "{text:?}: {e}"
        );
    }
    let out = btrace(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--web-config",
        "/nonexistent/web.yml",
    ]);
    let e = one_line_error(&out);
    assert!(e.contains("/nonexistent/web.yml: No such file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `Tracing` line names the address bound (the port the kernel chose for port 0,
/// IPv6 too); listening beyond loopback without --web-config says so once.
#[test]
fn the_bound_address_is_printed_and_open_listening_warned() {
    for (listen, open) in [("[::1]:0", false), ("0.0.0.0:0", true)] {
        let mut r = Running::start(&["serve", "--groups", "syscalls", "--listen", listen]);
        let ids = r.wait_attached();
        let (_, code, err) = {
            r.signal(libc::SIGTERM);
            r.finish()
        };
        assert_eq!(code, 0, "{err:?}");
        assert_unloaded(&ids);
        let tracing = err.iter().find(|l| l.starts_with("Tracing")).unwrap();
        let addr: SocketAddr = tracing
            .split("serving http://")
            .nth(1)
            .and_then(|r| r.split("/metrics").next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {tracing:?}"));
        assert_ne!(addr.port(), 0, "{tracing}");
        assert_eq!(addr.ip().is_loopback(), !open, "{tracing}");
        let warnings: Vec<_> = err.iter().filter(|l| l.contains("warning")).collect();
        if open {
            assert_eq!(warnings.len(), 1, "{err:?}");
            assert!(warnings[0].contains("without --web-config"), "{err:?}");
        } else {
            assert!(warnings.is_empty(), "{err:?}");
        }
    }
    // Basic authentication without TLS beyond loopback: the passwords cross in clear.
    let dir = tmpdir("auth-no-tls");
    let hash = bcrypt::hash("pw", 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prom: '{hash}'\n")).unwrap();
    let web = web.to_string_lossy().into_owned();
    let mut r = Running::start(&[
        "serve",
        "--groups",
        "syscalls",
        "--listen",
        "0.0.0.0:0",
        "--web-config",
        &web,
    ]);
    r.wait_attached();
    let (_, code, err) = {
        r.signal(libc::SIGTERM);
        r.finish()
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{err:?}");
    let warnings: Vec<_> = err.iter().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err:?}");
    assert!(warnings[0].contains("but no TLS"), "{err:?}");
}

/// A request whose lines end in a bare LF is answered at once (it waited 5 s for a 408),
/// and `serve --help` lists no flag serve rejects (it listed --no-children).
#[test]
fn bare_lf_requests_are_answered_and_help_lists_only_accepted_flags() {
    let s = Serve::start(&["--groups", "syscalls"]);
    let t = Instant::now();
    let r = raw_exchange(s.addr, b"GET /metrics HTTP/1.1\nHost: x\n\n");
    assert_eq!(status_of(&r), Some(200), "{:?}", r.get(..200));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(r.contains("btrace_build_info"));
    s.stop();
    let help = btrace(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(help.contains("--web-config"), "{help}");
    assert!(!help.contains("--no-children"), "{help}");
}

/// Out of file descriptors, connections wait in the listener's queue, which stays
/// readable: btrace must not spin on it (it did, at 100% of a CPU), and serves them once
/// descriptors are free.
#[test]
fn out_of_descriptors_does_not_spin() {
    let s = Serve::start(&["--groups", "syscalls"]);
    let pid = s.run.as_ref().unwrap().pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let limit = |n: usize| {
        let st = Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={n}:")])
            .status()
            .unwrap();
        assert!(st.success());
    };
    // The soft limit only (lowering the hard one could not be undone without
    // CAP_SYS_RESOURCE).
    limit(open + 2);
    let waiting: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<u64> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    std::thread::sleep(Duration::from_millis(500));
    let t0 = ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks() - t0;
    // SAFETY: sysconf only reads a system setting.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        used * 100 < 2 * hz * 10,
        "{used} ticks of CPU in 2 s out of descriptors"
    );
    drop(waiting);
    limit(1024);
    assert_eq!(s.get("/metrics", None).0, 200);
    s.stop();
}

/// `client_auth_type: RequireAndVerifyClientCert`: a client without a certificate, or
/// with one its CA did not sign, gets nothing; one with a certificate of the CA gets
/// the metrics.
#[test]
fn client_certificates_required_by_web_config() {
    let dir = tmpdir("mtls");
    make_certs(&dir);
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    // An extension makes the certificate X.509 v3 (OpenSSL 3.0 makes v1 without one,
    // which webpki refuses).
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ca) in [("client", "ca"), ("stranger", "other-ca")] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let mut args = vec!["req", "-subj", "/CN=scraper"];
        args.extend_from_slice(&ec);
        args.extend_from_slice(&["-keyout", &key, "-out", &csr]);
        openssl(&dir, &args);
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-extfile",
                "client.ext",
                "-out",
                &crt,
            ],
        );
    }
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    .unwrap();
    let web = dir.join("web.yml");
    let s = Serve::start(&[
        "--groups",
        "syscalls",
        "--web-config",
        web.to_str().unwrap(),
    ]);
    let url = format!("https://{}/metrics", s.addr);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let ca = p("ca.crt");
    let with = |name: &str| {
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &p(&format!("{name}.crt")),
            "--key",
            &p(&format!("{name}.key")),
            &url,
        ])
    };
    assert_eq!(with("client"), (0, 200));
    let (code, status) = with("stranger");
    assert!(
        code != 0 && status == 0,
        "another CA's client: {code} {status}"
    );
    let (code, status) = curl(&["--cacert", &ca, &url]);
    assert!(
        code != 0 && status == 0,
        "no client certificate: {code} {status}"
    );
    s.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
