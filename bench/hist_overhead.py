#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Overhead of `btrace hist` per traced syscall, against the floors measured on the same
hooks and against bpftrace; plus time to attached and peak memory.

A tight getppid loop (tests/workload `loop N`) runs pinned to one CPU while the tracer
runs pinned to the other; each configuration is timed RUNS times and the best run kept.
Overhead = ns per call with the tracer - ns per call with nothing attached.
Figures are written into README.md between the bench:hist markers.
"""
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BTRACE = os.environ.get("BTRACE", os.path.join(ROOT, "target/release/btrace"))
WORKLOAD = os.environ.get("WORKLOAD", os.path.join(ROOT, "target/workload"))
CALLS = int(os.environ.get("CALLS", "2000000"))
RUNS = int(os.environ.get("RUNS", "5"))
STARTS = int(os.environ.get("STARTS", "7"))
LOOP_CPU, TRACER_CPU = "1", "0"

BPFTRACE_HIST = (
    "tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; } "
    "tracepoint:raw_syscalls:sys_exit /@start[tid]/ "
    "{ @us[args->id] = hist((nsecs - @start[tid]) / 1000); delete(@start[tid]); }"
)


def loop_ns():
    """Best ns per getppid over RUNS runs."""
    best = None
    for _ in range(RUNS):
        out = subprocess.run(
            ["taskset", "-c", LOOP_CPU, WORKLOAD, "loop", str(CALLS)],
            check=True, capture_output=True, text=True,
        ).stdout
        v = float(out.strip())
        best = v if best is None else min(best, v)
    return best


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
            return int(m.group(1)) if m else None
    except OSError:
        return None


def start(cmd, ready):
    """Starts cmd pinned to TRACER_CPU and waits for its line starting with `ready`.
    Returns (process, ms from spawn to that line)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        ["taskset", "-c", TRACER_CPU] + cmd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    while True:
        line = p.stdout.readline()
        if not line:
            p.wait()
            sys.exit(f"{' '.join(cmd)} exited before it was ready")
        if line.startswith(ready):
            return p, (time.perf_counter() - t0) * 1000


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()


def with_tracer(cmd, ready):
    """Median start-up over STARTS starts, then the loop under one running tracer.
    Returns (ns per call, median ms to ready, peak RSS kB)."""
    starts = []
    for _ in range(STARTS):
        p, ms = start(cmd, ready)
        starts.append(ms)
        stop(p)
    p, _ = start(cmd, ready)
    ns = loop_ns()
    rss = peak_rss_kb(p.pid)
    stop(p)
    return ns, statistics.median(starts), rss


def bench_cgroup():
    """A cgroup v2 for this script and its children (the loops), or None."""
    with open("/proc/self/mounts") as f:
        roots = [l.split()[1] for l in f if l.split()[2] == "cgroup2"]
    if not roots:
        print("no cgroup v2 mounted: the --cgroup row is left out")
        return None
    global HOME_CGROUP
    with open("/proc/self/cgroup") as f:
        own = next(l.strip()[3:] for l in f if l.startswith("0::"))
    HOME_CGROUP = os.path.join(roots[0], own.lstrip("/"))
    path = os.path.join(roots[0], f"btrace-bench-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    return path


HOME_CGROUP = None


def leave_cgroup(path):
    """Moves this script back to the cgroup it came from and removes the bench cgroup."""
    if not path:
        return
    with open(os.path.join(HOME_CGROUP, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except OSError:
            time.sleep(0.05)


def main():
    for path in (BTRACE, WORKLOAD):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} missing: run `make build-release target/workload` first")
    print(f"btrace hist overhead: getppid loop of {CALLS} calls on CPU {LOOP_CPU}, "
          f"tracer on CPU {TRACER_CPU}, best of {RUNS} runs")
    base = loop_ns()
    # Scope: the loop processes are children of this script, so `-p <this pid>` traces
    # them through the process tree, and `--cgroup <a cgroup this script moved into>`
    # through the cgroup filter; `-p <an idle process>` leaves them out of scope.
    idle = subprocess.Popen(["sleep", "100000"])
    cgroup = bench_cgroup()
    configs = [
        ("empty floor (empty tp_btf programs)", [BTRACE, "floor", "empty"], "Tracing"),
        ("latency floor (clock + task storage)", [BTRACE, "floor", "latency"], "Tracing"),
        ("btrace hist", [BTRACE, "hist"], "Tracing"),
        ("btrace hist, bounded hash store", [BTRACE, "hist", "--max-threads", "32768"],
         "Tracing"),
        ("btrace hist -p (process tree; the loop in scope)",
         [BTRACE, "hist", "-p", str(os.getpid())], "Tracing"),
        ("btrace hist -p (the loop out of scope)",
         [BTRACE, "hist", "-p", str(idle.pid)], "Tracing"),
    ]
    if cgroup:
        configs.append(("btrace hist --cgroup (the loop in scope)",
                        [BTRACE, "hist", "--cgroup", cgroup], "Tracing"))
    if subprocess.run(["which", "bpftrace"], capture_output=True).returncode == 0:
        configs.append(("bpftrace latency hist script", ["bpftrace", "-e", BPFTRACE_HIST],
                        "Attaching"))
    else:
        print("bpftrace not installed: its row is left out")
    rows = []
    try:
        for name, cmd, ready in configs:
            ns, ready_ms, rss = with_tracer(cmd, ready)
            rows.append((name, ns - base, ready_ms, rss))
    finally:
        idle.kill()
        leave_cgroup(cgroup)
    floor = {r[0]: r[1] for r in rows}["latency floor (clock + task storage)"]
    lines = [
        f"Baseline getppid: {base:.0f} ns per call.",
        "",
        f"| configuration | overhead per syscall | x latency floor | start-up (median of {STARTS}, to ready line) | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for name, over, ready_ms, rss in rows:
        rss_s = f"{rss / 1024:.1f} MB" if rss else "n/a"
        lines.append(f"| {name} | +{over:.0f} ns | {over / floor:.2f}x | {ready_ms:.0f} ms | {rss_s} |")
    hist = {r[0]: r for r in rows}["btrace hist"]
    by = {r[0]: r[1] for r in rows}
    tree = by["btrace hist -p (process tree; the loop in scope)"]
    outside = by["btrace hist -p (the loop out of scope)"]
    empty = by["empty floor (empty tp_btf programs)"]
    empty_start = {r[0]: r[2] for r in rows}["empty floor (empty tp_btf programs)"]
    scope_line = (
        f"Scope: a process-tree filter adds {tree / hist[1] * 100 - 100:+.0f} % to hist's "
        f"overhead (goal: at most +10 %); a syscall out of scope costs +{outside:.0f} ns "
        f"against the empty floor's +{empty:.0f} ns (goal: at most the empty floor)"
    )
    if cgroup:
        cg = by["btrace hist --cgroup (the loop in scope)"]
        scope_line += f"; the cgroup filter adds {cg / hist[1] * 100 - 100:+.0f} %"
    lines += [
        "",
        scope_line + ".",
        "",
        f"Targets: btrace hist within 1.15x of the latency floor "
        f"({'met' if hist[1] <= 1.15 * floor else 'NOT met'}: {hist[1] / floor:.2f}x), "
        f"start-up under 20 ms ({'met' if hist[2] < 20 else 'NOT met'}: {hist[2]:.0f} ms), "
        f"RSS under 8 MB ({'met' if hist[3] and hist[3] < 8192 else 'NOT met'}: "
        f"{(hist[3] or 0) / 1024:.1f} MB). The empty floor, which only loads and attaches "
        f"two empty programs, starts in {empty_start:.0f} ms here: that much of any start-up "
        "is the kernel's and libbpf's load and attach on this machine.",
        f"Measured {time.strftime('%Y-%m-%d')} on kernel {os.uname().release}, "
        f"{os.cpu_count()} CPUs, one run of `make bench`.",
    ]
    text = "\n".join(lines)
    print(text)
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as f:
        doc = f.read()
    new = re.sub(r"(<!-- bench:hist -->\n).*?(<!-- /bench:hist -->)",
                 lambda m: m.group(1) + text + "\n" + m.group(2), doc, flags=re.S)
    if new != doc:
        with open(readme, "w") as f:
            f.write(new)
        print("(figures written into README.md)")


if __name__ == "__main__":
    main()
