#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The shipped static binary beside a dynamic build of the same source: size, start-up,
the hot path and memory.

Static: target/TRIPLE/release/btrace (`make build-release`, what `make dist` ships).
Dynamic: target/release/btrace (`cargo build --release`, built here: the same profile
without crt-static, so glibc, libelf and zlib come from the system's shared libraries).
- size: the stripped files' bytes;
- start-up: `btrace --version`, wall time from spawn to exit, median of VERSION_RUNS
  interleaved runs (no loader and no shared libraries to map and relocate in the static
  one);
- hot path: `hist --json --syscalls getppid -c "workload syscalls N 0"`, wall time from
  spawn to exit, best of RUNS interleaved rounds; the count must be exactly N in every
  run (a faster run that lost events would not count);
- memory: the maximum RSS of that hist run (wait4's ru_maxrss), the median of the rounds.

Figures go into README.md between the bench:static markers.
Standalone: python3 bench/static_dynamic.py  (RUNS=7, VERSION_RUNS=70, N=1000000)
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from readme_block import write_block

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRIPLE = f"{platform.machine()}-unknown-linux-gnu"
STATIC = os.path.join(ROOT, f"target/{TRIPLE}/release/btrace")
DYNAMIC = os.path.join(ROOT, "target/release/btrace")
WORKLOAD = os.path.join(ROOT, "target/workload")
RUNS = int(os.environ.get("RUNS", "7"))
VERSION_RUNS = int(os.environ.get("VERSION_RUNS", "70"))
N = int(os.environ.get("N", "1000000"))


def timed(argv):
    """Wall seconds from spawn to exit."""
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t1 = time.perf_counter()
    if p.returncode != 0:
        sys.exit(f"{argv}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    return t1 - t0


def hist_run(binary):
    """Wall seconds from spawn to exit of a counted hist run, and its maximum RSS in KB
    (wait4's, of that process alone: RUSAGE_CHILDREN would be a maximum over all)."""
    argv = [binary, "hist", "--json", "--syscalls", "getppid", "-c",
            f"{WORKLOAD} syscalls {N} 0"]
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        out = os.open(f"/tmp/btrace-static-bench-{os.getppid()}.json",
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(devnull, 2)
        os.execv(binary, argv)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    path = f"/tmp/btrace-static-bench-{os.getpid()}.json"
    records = [json.loads(line) for line in open(path) if line.strip()]
    os.unlink(path)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv}: exit {os.waitstatus_to_exitcode(status)}")
    count = sum(r.get("count", 0) for r in records
                if r.get("type") == "hist" and r.get("syscall") == "getppid")
    if count != N:
        sys.exit(f"{binary}: counted {count} getppid calls, not {N}")
    return wall, usage.ru_maxrss


def main():
    for f in (STATIC, WORKLOAD):
        if not os.path.exists(f):
            sys.exit(f"{f} is missing: run `make build-release target/workload`")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    load = os.getloadavg()[0]

    version = {STATIC: [], DYNAMIC: []}
    for i in range(VERSION_RUNS):
        for b in ((STATIC, DYNAMIC) if i % 2 == 0 else (DYNAMIC, STATIC)):
            version[b].append(timed([b, "--version"]))
    hist = {STATIC: [], DYNAMIC: []}
    rss = {STATIC: [], DYNAMIC: []}
    for i in range(RUNS):
        for b in ((STATIC, DYNAMIC) if i % 2 == 0 else (DYNAMIC, STATIC)):
            wall, maxrss = hist_run(b)
            hist[b].append(wall)
            rss[b].append(maxrss)
    load_end = os.getloadavg()[0]

    def row(b):
        return (f"{os.path.getsize(b) / 1e6:.1f} MB",
                f"{statistics.median(version[b]) * 1e3:.2f} ms",
                f"{min(hist[b]) * 1e3:.0f} ms",
                f"{statistics.median(rss[b]) / 1024:.1f} MB")

    s, d = row(STATIC), row(DYNAMIC)
    ratio = [
        os.path.getsize(STATIC) / os.path.getsize(DYNAMIC),
        statistics.median(version[STATIC]) / statistics.median(version[DYNAMIC]),
        min(hist[STATIC]) / min(hist[DYNAMIC]),
        statistics.median(rss[STATIC]) / statistics.median(rss[DYNAMIC]),
    ]
    date = time.strftime("%Y-%m-%d")
    block = "\n".join([
        "<!-- bench:static -->",
        "| build | size | `--version` | `hist -c` of a million `getppid` | maximum RSS of that run |",
        "|---|---|---|---|---|",
        f"| static (shipped) | {' | '.join(s)} |",
        f"| dynamic | {' | '.join(d)} |",
        f"| static / dynamic | {' | '.join(f'{r:.2f}' for r in ratio)} |",
        "",
        f"`--version`: median of {VERSION_RUNS} runs, spawn to exit; `hist --json --syscalls "
        f"getppid -c \"workload syscalls {N} 0\"`: best of {RUNS} rounds, spawn to exit, "
        f"the count exactly {N} in each; RSS: median of those rounds (wait4). The two "
        f"binaries alternate within every round. Measured {date} by `python3 "
        f"bench/static_dynamic.py` on kernel {os.uname().release}, {platform.machine()}, "
        f"{os.cpu_count()} vCPUs shared with other jobs (load average {load:.2f} at the "
        f"start, {load_end:.2f} at the end).",
        "<!-- /bench:static -->",
    ])
    print(block)
    write_block("static", block)


if __name__ == "__main__":
    sys.exit(main())
