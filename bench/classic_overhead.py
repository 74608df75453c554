#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Cost of `btrace exec`, `open`, `biolatency` and `runqlat` on their hot paths, beside
libbpf-tools' execsnoop, opensnoop, biolatency and runqlat on the same workloads, in one
run; plus each tool's start-up (to attached) and peak RSS.

Workloads (tests/workload, each printing its own ns per operation), pinned to CPU 1:
  exec: `workload execs N`        fork + execve of a tiny static program, waited for
  open: `workload openloop F N`   openat(F, O_RDONLY) + close
  bio:  `workload dio DEV N`      O_DIRECT 4 KiB I/Os, alternately write and read, on a
                                  loop device this script makes over a file in /dev/shm
                                  (memory: the device is fast, so the tracer's share shows)
  runq: `workload pingpong N`     one byte back and forth between two processes over
                                  pipes, both on CPU 1 (two wake-ups and two switches a
                                  round trip)
Tracers run pinned to CPU 0 (this script too), their output into a pseudo-terminal that
is read and thrown away (the peers' stdout is then line-buffered, as in a terminal;
btrace prints its text output there too). Each round runs the workload with nothing
attached, then under each tracer in turn; cost per operation = median over the rounds of
(ns per operation with the tracer - ns per operation of the same round's bare run), for
the workload's own clock (wall) and for its CPU time (user + system, its children's too).
Start-up: from spawning the tool to its line saying it is attached (btrace's and
biolatency/runqlat's "Tracing ...", execsnoop's and opensnoop's column header, printed
after attaching), median over the rounds. RSS: the tool's VmHWM after the workload.

Figures go into README.md between the bench:classic-exec, -open, -biolatency and -runqlat
markers. Standalone: python3 bench/classic_overhead.py  (RUNS=5 by default)
"""
import os
import pty
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BTRACE = os.environ.get("BTRACE", os.path.join(ROOT, "target/release/btrace"))
WORKLOAD = os.environ.get("WORKLOAD", os.path.join(ROOT, "target/workload"))
RUNS = int(os.environ.get("RUNS", "5"))
EXECS = int(os.environ.get("EXECS", "300"))
OPENS = int(os.environ.get("OPENS", "100000"))
DIOS = int(os.environ.get("DIOS", "20000"))
PINGS = int(os.environ.get("PINGS", "50000"))
LOOP_CPU, TRACER_CPU = "1", "0"
SBIN = "/usr/sbin"


def has_bpf_link(pid):
    """Whether process pid holds a BPF link (attached programs): the ready sign of a tool
    that prints nothing when it is attached."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:bpf_link"
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


class Tool:
    """A tracer running in a pseudo-terminal, its output drained by a thread. `ready`: the
    start of the line it prints once attached, or a function of its pid."""

    def __init__(self, cmd, ready):
        self.cmd = cmd
        t0 = time.perf_counter()
        master, slave = pty.openpty()
        self.p = subprocess.Popen(
            ["taskset", "-c", TRACER_CPU] + cmd,
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, start_new_session=True,
        )
        os.close(slave)
        self.master = master
        buf = b""
        deadline = time.monotonic() + 120
        while True:
            if callable(ready) and ready(self.p.pid):
                break
            r, _, _ = select.select([master], [], [], 0.01 if callable(ready) else 1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    sys.exit(f"{' '.join(cmd)} ended before it was attached: {buf[-300:]!r}")
                buf += chunk
                if not callable(ready) and any(
                        l.lstrip().startswith(ready.encode()) for l in buf.split(b"\n")):
                    break
            if self.p.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{' '.join(cmd)} not attached: {buf[-300:]!r}")
        self.start_ms = (time.perf_counter() - t0) * 1000
        self.stop_drain = False
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()

    def _drain(self):
        while not self.stop_drain:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if r:
                try:
                    if not os.read(self.master, 1 << 20):
                        return
                except OSError:
                    return

    def rss_kb(self):
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
                return int(m.group(1)) if m else None
        except OSError:
            return None

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.stop_drain = True
        self.drain.join()
        os.close(self.master)


def run_workload(args):
    """(ns per operation as the workload timed it, CPU ns per operation of the workload and
    its children, from wait4)."""
    p = subprocess.Popen(["taskset", "-c", LOOP_CPU, WORKLOAD] + args,
                         stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = 0
    if status != 0:
        sys.exit(f"workload {' '.join(args)} failed ({status})")
    n = int(args[-1])
    return float(out.split()[-1]), (ru.ru_utime + ru.ru_stime) * 1e9 / n


def make_loop():
    backing = tempfile.NamedTemporaryFile(dir="/dev/shm", prefix="btrace-bench-", delete=False)
    backing.truncate(16 << 20)
    backing.close()
    dev = subprocess.run(
        ["losetup", "-f", "--show", backing.name], check=True, capture_output=True, text=True
    ).stdout.strip()
    return dev, backing.name


def fmt_ns(ns):
    return f"{ns / 1000:.1f} us" if abs(ns) >= 10000 else f"{ns:.0f} ns"


def main():
    os.sched_setaffinity(0, {int(TRACER_CPU)})
    for path in (BTRACE, WORKLOAD):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} missing: run `make build-release target/workload` first")
    missing = [t for t in ("execsnoop", "opensnoop", "biolatency", "runqlat")
               if not os.access(os.path.join(SBIN, t), os.X_OK)]
    if missing:
        sys.exit(f"libbpf-tools missing ({', '.join(missing)}): apt-get install libbpf-tools")
    load = open("/proc/loadavg").read().split()[0]
    tmp = tempfile.mkdtemp(prefix="btrace-bench-")
    target = os.path.join(tmp, "target")
    open(target, "w").close()
    dev, backing = make_loop()
    try:
        parts = {
            "exec": (["execs", str(EXECS)], "exec", [
                ("btrace exec", [BTRACE, "exec"], "Tracing"),
                ("execsnoop (libbpf-tools)", [f"{SBIN}/execsnoop"], "PCOMM"),
            ]),
            "open": (["openloop", target, str(OPENS)], "openat", [
                ("btrace open", [BTRACE, "open"], "Tracing"),
                ("opensnoop (libbpf-tools)", [f"{SBIN}/opensnoop"], "PID"),
            ]),
            "biolatency": (["dio", dev, str(DIOS)], "4 KiB O_DIRECT I/O", [
                ("btrace biolatency", [BTRACE, "biolatency"], "Tracing"),
                ("biolatency (libbpf-tools)", [f"{SBIN}/biolatency"], "Tracing"),
            ]),
            "runqlat": (["pingpong", str(PINGS)], "pipe round trip", [
                ("btrace runqlat", [BTRACE, "runqlat"], "Tracing"),
                ("runqlat (libbpf-tools)", [f"{SBIN}/runqlat"], "Tracing"),
            ]),
        }
        res = {k: {"base": [], "cpu": [],
                   "tools": {n: {"d": [], "cpu": [], "start": [], "rss": []} for n, _, _ in t}}
               for k, (_, _, t) in parts.items()}
        for r in range(RUNS):
            for key, (wl, _, tools) in parts.items():
                base, base_cpu = run_workload(wl)
                res[key]["base"].append(base)
                res[key]["cpu"].append(base_cpu)
                for name, cmd, ready in tools:
                    t = Tool(cmd, ready)
                    try:
                        v, cpu = run_workload(wl)
                        rss = t.rss_kb()
                    finally:
                        t.stop()
                    e = res[key]["tools"][name]
                    e["d"].append(v - base)
                    e["cpu"].append(cpu - base_cpu)
                    e["start"].append(t.start_ms)
                    e["rss"].append(rss or 0)
                    print(f"round {r + 1} {key}: bare {fmt_ns(base)} (CPU {fmt_ns(base_cpu)}), "
                          f"{name} {fmt_ns(v)} (CPU {fmt_ns(cpu)}) "
                          f"(start-up {t.start_ms:.0f} ms, RSS {rss} kB)", flush=True)
    finally:
        subprocess.run(["losetup", "-d", dev])
        os.unlink(backing)
        shutil.rmtree(tmp, ignore_errors=True)

    date = time.strftime("%Y-%m-%d")
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    for key, (wl, what, tools) in parts.items():
        base = statistics.median(res[key]["base"])
        base_cpu = statistics.median(res[key]["cpu"])
        rows = [f"| nothing attached | {fmt_ns(base)} | | {fmt_ns(base_cpu)} | | | |"]

        def signed(v):
            return ("+" if v >= 0 else "-") + fmt_ns(abs(v))

        for name, _, _ in tools:
            e = res[key]["tools"][name]
            d = statistics.median(e["d"])
            c = statistics.median(e["cpu"])
            rows.append(
                f"| {name} | {fmt_ns(base + d)} | {signed(d)} ({d / base * 100:+.1f} %; "
                f"rounds {signed(min(e['d']))} to {signed(max(e['d']))}) | {fmt_ns(base_cpu + c)} "
                f"| {signed(c)} | {statistics.median(e['start']):.0f} ms "
                f"| {max(e['rss']) / 1024:.1f} MiB |"
            )
        runq_note = (" Both tracers see every scheduler event of the machine; a round trip"
                     " is two wake-ups and two switches." if key == "runqlat" else "")
        block = "\n".join([
            f"<!-- bench:classic-{key} -->",
            f"| tracer | per {what} (wall) | added | CPU per {what} | added CPU "
            "| start-up (to attached) | peak RSS |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"`workload {' '.join(wl[:1])}` on CPU {LOOP_CPU} ({wl[-1]} operations a run), the "
            f"tracer on CPU {TRACER_CPU}, every tracer system-wide with its defaults and its "
            f"text output read from a pseudo-terminal; wall: the workload's own clock; CPU: "
            f"its user + system time and its children's (what runs in its context: the "
            f"probes on its syscalls, not the completions of I/O in interrupts or kworkers); "
            f"added = median over {RUNS} rounds of (with tracer - bare run of the same "
            f"round).{runq_note} Measured {date} by "
            f"`python3 bench/classic_overhead.py` on kernel {os.uname().release}, "
            f"{os.cpu_count()} vCPUs shared with other jobs (load average {load} at the "
            "start; on a loaded machine the wall figures vary by more than a tracer's cost, "
            "see the range of the rounds; the CPU columns are steadier).",
            f"<!-- /bench:classic-{key} -->",
        ])
        print(block)
        text = re.sub(rf"<!-- bench:classic-{key} -->.*?<!-- /bench:classic-{key} -->",
                      lambda m: block, text, flags=re.S)
    open(readme, "w").write(text)


if __name__ == "__main__":
    sys.exit(main())
