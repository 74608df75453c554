#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Start-up and exit of every btrace command that has a libbpf-tools peer, side by side.

Pairs: btrace open / opensnoop, exec / execsnoop, biolatency / biolatency, runqlat /
runqlat, offcpu / offcputime, tcp --life / tcplife; each tool system-wide with its
defaults. Each round starts every tool once, the pairs interleaved and the order within a
pair alternating from round to round, so that the machine's load falls on both alike.

Start-up: from spawning the tool to the moment it is attached. A tool runs in a
pseudo-terminal (the peers then line-buffer their output as in a terminal; through a pipe
they would hold their header back) and its output is read as it comes. Attached = its
line saying so: btrace's "Tracing ...", biolatency's and runqlat's "Tracing ...",
execsnoop's, opensnoop's and tcplife's column header (printed after attaching). offcputime
prints nothing when attached, so for that pair (both sides alike) attached = the moment
the process's count of BPF links and perf events (/proc/PID/fd) last grew, polled every
millisecond until it has stayed the same for HOLD_MS.
Exit: from SIGINT (after the tool has run RUN_MS attached) to the end of the process,
as waitpid sees it: what a script running the tool in a loop waits for. Both print their
results at SIGINT; the output is read and thrown away.

Figures go into README.md between the bench:startup markers.
Standalone: python3 bench/startup.py  (RUNS=7 by default; BTRACE=path of the binary)
"""
import os
import pty
import select
import signal
import statistics
import subprocess
import sys
import threading
import time

from readme_block import write_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BTRACE = os.environ.get("BTRACE", os.path.join(ROOT, "target/release/btrace"))
RUNS = int(os.environ.get("RUNS", "7"))
RUN_MS = int(os.environ.get("RUN_MS", "300"))
HOLD_MS = int(os.environ.get("HOLD_MS", "300"))
SBIN = "/usr/sbin"

# (btrace's arguments, peer, how each shows it is attached: a line's start or LINKS)
LINKS = None
PAIRS = [
    (["open"], "opensnoop", "Tracing", "PID"),
    (["exec"], "execsnoop", "Tracing", "PCOMM"),
    (["biolatency"], "biolatency", "Tracing", "Tracing"),
    (["runqlat"], "runqlat", "Tracing", "Tracing"),
    (["offcpu"], "offcputime", LINKS, LINKS),
    (["tcp", "--life"], "tcplife", "Tracing", "PID"),
]


def attach_fds(pid):
    """How many BPF links and perf events process pid holds."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in ("anon_inode:bpf_link", "anon_inode:[perf_event]"):
                n += 1
    except OSError:
        pass
    return n


def run_once(cmd, ready):
    """(ms from spawn to attached, ms from SIGINT to exit) of one run of cmd."""
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    buf = b""
    deadline = t0 + 60
    links, last_growth = 0, None
    attached = None
    while attached is None:
        now = time.perf_counter()
        if ready is LINKS:
            n = attach_fds(p.pid)
            if n > links:
                links, last_growth = n, now
            elif links and (now - last_growth) * 1000 >= HOLD_MS:
                attached = last_growth
                break
        r, _, _ = select.select([master], [], [], 0.001 if ready is LINKS else 1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if ready is not LINKS and chunk:
                seen = time.perf_counter()
                buf += chunk
                if any(l.lstrip().startswith(ready.encode()) for l in buf.split(b"\n")):
                    attached = seen
            elif ready is not LINKS:
                sys.exit(f"{' '.join(cmd)} ended before it was attached: {buf[-300:]!r}")
        if p.poll() is not None or time.perf_counter() > deadline:
            p.kill()
            sys.exit(f"{' '.join(cmd)} not attached: {buf[-300:]!r}")
    start_ms = (attached - t0) * 1000
    if ready is not LINKS and attach_fds(p.pid) == 0:
        sys.exit(f"{' '.join(cmd)} printed {ready!r} holding no BPF link or perf event")

    stop = threading.Event()

    def drain():
        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    if not os.read(master, 1 << 20):
                        return
                except OSError:
                    return

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    time.sleep(RUN_MS / 1000)
    t1 = time.perf_counter()
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        sys.exit(f"{' '.join(cmd)} did not end within 120 s of SIGINT")
    exit_ms = (time.perf_counter() - t1) * 1000
    stop.set()
    drainer.join()
    os.close(master)
    return start_ms, exit_ms


def main():
    if not os.access(BTRACE, os.X_OK):
        sys.exit(f"{BTRACE} missing: run `cargo build --release` first")
    missing = [peer for _, peer, _, _ in PAIRS if not os.access(f"{SBIN}/{peer}", os.X_OK)]
    if missing:
        sys.exit(f"libbpf-tools missing ({', '.join(missing)}): apt-get install libbpf-tools")
    load = open("/proc/loadavg").read().split()[0]
    res = {}
    for r in range(RUNS):
        for args, peer, b_ready, p_ready in PAIRS:
            sides = [("btrace " + " ".join(args), [BTRACE] + args, b_ready),
                     (peer, [f"{SBIN}/{peer}"], p_ready)]
            if r % 2:
                sides.reverse()
            for name, cmd, ready in sides:
                s, e = run_once(cmd, ready)
                res.setdefault(name, ([], []))
                res[name][0].append(s)
                res[name][1].append(e)
                print(f"round {r + 1}: {name}: attached after {s:.0f} ms, "
                      f"exited {e:.0f} ms after SIGINT", flush=True)
    load_end = open("/proc/loadavg").read().split()[0]

    def cell(v):
        return f"{statistics.median(v):.0f} ms ({min(v):.0f})"

    rows = []
    for args, peer, _, _ in PAIRS:
        b, p = res["btrace " + " ".join(args)], res[peer]
        rows.append(
            f"| `{' '.join(args)}` / {peer} | {cell(b[0])} | {cell(p[0])} "
            f"| {statistics.median(b[0]) / statistics.median(p[0]):.2f} "
            f"| {cell(b[1])} | {cell(p[1])} "
            f"| {statistics.median(b[1]) / statistics.median(p[1]):.2f} |")
    date = time.strftime("%Y-%m-%d")
    block = "\n".join([
        "<!-- bench:startup -->",
        "| btrace / libbpf-tools peer | btrace start-up | peer start-up | ratio "
        "| btrace exit | peer exit | ratio |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Median (min) over {RUNS} interleaved rounds; start-up: spawn to attached (its "
        "`Tracing` line or the peer's header, read from a pseudo-terminal; offcpu and "
        "offcputime: their last BPF link); exit: SIGINT to the process's end, after "
        f"{RUN_MS} ms attached; ratio of the medians, btrace / peer. Measured {date} by "
        f"`python3 bench/startup.py` on kernel {os.uname().release}, {os.cpu_count()} "
        f"vCPUs shared with other jobs (load average {load} at the start, {load_end} at "
        "the end).",
        "<!-- /bench:startup -->",
    ])
    print(block)
    write_block("startup", block)


if __name__ == "__main__":
    sys.exit(main())
