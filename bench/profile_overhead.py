#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Overhead of `btrace profile` on a CPU-bound workload, beside `perf record` at the same
rates (libbpf-tools `profile` is not packaged by Debian: not measured); and (the
bench:profile-peers markers) `btrace offcpu` beside libbpf-tools `offcputime`, the time to
symbolize the stacks of a real workload beside `perf report` on the same workload's
perf.data, and the start-up (to attached) of `profile` and `offcpu`.

The workload (tests/workload/stackload `work N`) does a fixed amount of work; its cost is
its CPU time (user + system, from wait4), which includes the sampling interrupts that hit
it (this kernel has no IRQ_TIME_ACCOUNTING: interrupt time is charged to the interrupted
task), and is less disturbed than wall time by other load on a shared machine. Each
configuration is run RUNS times, interleaved with baseline runs; overhead = median of
(CPU time with the profiler / CPU time of the neighbouring baseline) - 1.
Figures are written into README.md between the bench:profile markers.

offcpu: `workload pingpong N` (one byte back and forth between two processes over pipes,
on CPU 1: each round trip blocks each side once) with nothing attached, under `btrace
offcpu` and under `offcputime` (both system-wide, default minimum block 1 us, tracer on
CPU 0), RUNS rounds interleaved; added = median of (with - bare of the same round), per
round trip, by the workload's clock and by its CPU time. Start-up: to btrace's "Tracing"
line; offcputime prints nothing when attached: to its first BPF link (/proc/PID/fd).
Symbolization: SYM_CMD (git and python3 at work: many distinct stacks) profiled at 999 Hz,
once by `btrace profile -c` (the summary's report_s: from the end of collection to the
report written) and once by `perf record -g -F 999 --` (then `perf report --stdio` timed,
median of 3, output to /dev/null).
PARTS (default "overhead,peers") chooses the parts.
"""
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BTRACE = os.environ.get("BTRACE", os.path.join(ROOT, "target/release/btrace"))
STACKLOAD = os.environ.get("STACKLOAD", os.path.join(ROOT, "target/stackload"))
ROUNDS = int(os.environ.get("ROUNDS", "60000"))
RUNS = int(os.environ.get("RUNS", "5"))
PARTS = os.environ.get("PARTS", "overhead,peers").split(",")
WORKLOAD = os.environ.get("WORKLOAD", os.path.join(ROOT, "target/workload"))
PINGS = int(os.environ.get("PINGS", "50000"))
SYM_CMD = os.environ.get(
    "SYM_CMD",
    f"for i in 1 2 3; do git -C {ROOT} log -p -n 400 >/dev/null; git -C {ROOT} grep -c e >/dev/null;"
    f" python3 -m compileall -q -f {ROOT}/bench {ROOT}/tests/common >/dev/null; done",
)


def work_cpu():
    """CPU seconds of one fixed-work run."""
    p = subprocess.Popen([STACKLOAD, "work", str(ROUNDS)])
    _, status, ru = os.wait4(p.pid, 0)
    assert status == 0
    return ru.ru_utime + ru.ru_stime


def start_profiler(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if cmd[0] == BTRACE:
        # attached once it says Tracing
        for line in p.stderr:
            if line.startswith("Tracing"):
                break
    else:
        time.sleep(2)
    return p


def stop_profiler(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def measure(cmd):
    ratios = []
    for _ in range(RUNS):
        base = work_cpu()
        p = start_profiler(cmd)
        try:
            with_p = work_cpu()
        finally:
            stop_profiler(p)
        ratios.append(with_p / base)
    return statistics.median(ratios) - 1.0, ratios


def fmt_ns(ns):
    return f"{ns / 1000:.1f} us" if abs(ns) >= 10000 else f"{ns:.0f} ns"


def signed(v):
    return ("+" if v >= 0 else "-") + fmt_ns(abs(v))


def offcpu_rows():
    """btrace offcpu beside offcputime on the pipe ping-pong: table rows."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from classic_overhead import Tool, has_bpf_link, run_workload, TRACER_CPU

    os.sched_setaffinity(0, {int(TRACER_CPU)})
    wl = ["pingpong", str(PINGS)]
    tools = [
        ("btrace offcpu", [BTRACE, "offcpu"], "Tracing"),
        ("offcputime (libbpf-tools)", ["/usr/sbin/offcputime"], has_bpf_link),
    ]
    base, base_cpu, res = [], [], {n: {"d": [], "c": [], "start": [], "rss": []} for n, _, _ in tools}
    for r in range(RUNS):
        b, bc = run_workload(wl)
        base.append(b)
        base_cpu.append(bc)
        for name, cmd, ready in tools:
            t = Tool(cmd, ready)
            try:
                v, c = run_workload(wl)
                rss = t.rss_kb()
            finally:
                t.stop()
            e = res[name]
            e["d"].append(v - b)
            e["c"].append(c - bc)
            e["start"].append(t.start_ms)
            e["rss"].append(rss or 0)
            print(f"round {r + 1} offcpu: bare {fmt_ns(b)} (CPU {fmt_ns(bc)}), {name} {fmt_ns(v)} "
                  f"(CPU {fmt_ns(c)}, start-up {t.start_ms:.0f} ms, RSS {rss} kB)", flush=True)
    mb, mc = statistics.median(base), statistics.median(base_cpu)
    rows = [f"| nothing attached | {fmt_ns(mb)} | | {fmt_ns(mc)} | | | |"]
    for name, _, _ in tools:
        e = res[name]
        d, c = statistics.median(e["d"]), statistics.median(e["c"])
        rows.append(f"| {name} | {fmt_ns(mb + d)} | {signed(d)} ({d / mb * 100:+.1f} %) "
                    f"| {fmt_ns(mc + c)} | {signed(c)} | {statistics.median(e['start']):.0f} ms "
                    f"| {max(e['rss']) / 1024:.1f} MiB |")
    return rows


def symbolize_rows():
    """btrace profile's report time beside perf report's on the same workload."""
    import json
    import tempfile

    tmp = tempfile.mkdtemp(prefix="btrace-bench-sym-")
    out = os.path.join(tmp, "profile.json")
    perf_data = os.path.join(tmp, "perf.data")
    os.sched_setaffinity(0, range(os.cpu_count()))
    subprocess.run([BTRACE, "profile", "-F", "999", "--json", "-o", out, "-c",
                    "sh -c " + shlex.quote(SYM_CMD)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = [json.loads(l) for l in open(out) if '"summary"' in l][-1]
    rows = [f"| `btrace profile -F 999 -c` (report_s) | {summary['stacks']} distinct stacks, "
            f"{summary['samples']} samples | {summary['report_s'] * 1000:.0f} ms |"]
    if subprocess.run(["which", "perf"], capture_output=True).returncode == 0:
        subprocess.run(["perf", "record", "-q", "-g", "-F", "999", "-o", perf_data, "--",
                        "sh", "-c", SYM_CMD],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(["perf", "report", "-i", perf_data, "--stdio"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times.append(time.perf_counter() - t0)
        n = len(subprocess.run(["perf", "script", "-i", perf_data, "-F", "tid", "-G"],
                               capture_output=True, text=True).stdout.splitlines())
        rows.append(f"| `perf record -g -F 999 --`, then `perf report --stdio` | {n} samples "
                    f"| {statistics.median(times) * 1000:.0f} ms |")
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


def startup_rows():
    """Start-up to attached of btrace profile and offcpu, median of RUNS starts."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from classic_overhead import Tool

    rows = []
    for name, cmd in [("btrace profile -F 99", [BTRACE, "profile", "-F", "99"]),
                      ("btrace offcpu", [BTRACE, "offcpu"])]:
        ms, rss = [], []
        for _ in range(RUNS):
            t = Tool(cmd, "Tracing")
            ms.append(t.start_ms)
            rss.append(t.rss_kb() or 0)
            t.stop()
        rows.append(f"| `{name}` | {statistics.median(ms):.0f} ms | {max(rss) / 1024:.1f} MiB |")
    return rows


def peers():
    load = open("/proc/loadavg").read().split()[0]
    if not os.access(WORKLOAD, os.X_OK):
        subprocess.run(["make", "-s", "target/workload"], cwd=ROOT, check=True)
    off = offcpu_rows()
    sym = symbolize_rows()
    start = startup_rows()
    block = "\n".join([
        "<!-- bench:profile-peers -->",
        f"Off-CPU: `workload pingpong {PINGS}` on CPU 1 (each round trip blocks each side "
        "once), tracer on CPU 0, both system-wide with a minimum block of 1 us; added = "
        f"median over {RUNS} rounds of (with tracer - bare run of the same round); wall by "
        "the workload's clock, CPU its user + system time and its child's. offcputime "
        "prints nothing when attached: its start-up is to its first BPF link.",
        "",
        "| tracer | per round trip (wall) | added | CPU per round trip | added CPU "
        "| start-up (to attached) | peak RSS |",
        "|---|---|---|---|---|---|---|",
        *off,
        "",
        "Symbolization: the same workload (git log -p, git grep, python3 compileall, three "
        "times) profiled at 999 Hz by each tool in turn; btrace's time from the end of "
        "collection to its report written (reading the maps, symbolizing kernel and user "
        "frames with blazesym, printing), beside `perf report --stdio` on perf.data "
        "(median of 3 runs):",
        "",
        "| tool | stacks | time |",
        "|---|---|---|",
        *sym,
        "",
        "Start-up, from spawn to the \"Tracing\" line (median of "
        f"{RUNS} starts), and RSS when attached:",
        "",
        "| command | start-up | RSS |",
        "|---|---|---|",
        *start,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python3 bench/profile_overhead.py` on "
        f"kernel {os.uname().release}, {os.cpu_count()} vCPUs shared with other jobs (load "
        f"average {load} at the start{'' if float(load) < 1 else ': a loaded machine; figures are noisy'}). libbpf-tools "
        "`profile` is not in Debian's libbpf-tools package: no row for it.",
        "<!-- /bench:profile-peers -->",
    ])
    print(block)
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    new = re.sub(r"<!-- bench:profile-peers -->.*?<!-- /bench:profile-peers -->",
                 lambda m: block, text, flags=re.S)
    open(readme, "w").write(new)


def main():
    if "peers" in PARTS:
        peers()
    if "overhead" not in PARTS:
        return 0
    if not os.path.exists(STACKLOAD):
        subprocess.run(["make", "-s", "target/stackload"], cwd=ROOT, check=True)
    perf_data = "/tmp/btrace-bench-perf.data"
    configs = [
        ("btrace profile -F 99", [BTRACE, "profile", "-F", "99"]),
        ("btrace profile -F 999", [BTRACE, "profile", "-F", "999"]),
        ("perf record -F 99 -a -g", ["perf", "record", "-q", "-F", "99", "-a", "-g", "-o", perf_data]),
        ("perf record -F 999 -a -g", ["perf", "record", "-q", "-F", "999", "-a", "-g", "-o", perf_data]),
    ]
    rows = []
    for name, cmd in configs:
        if cmd[0] == "perf" and subprocess.run(["which", "perf"], capture_output=True).returncode:
            rows.append(f"| `{name}` | not measured (perf missing) | |")
            continue
        ovh, ratios = measure(cmd)
        spread = f"{(min(ratios) - 1) * 100:+.2f} % to {(max(ratios) - 1) * 100:+.2f} %"
        rows.append(f"| `{name}` | {ovh * 100:+.2f} % | {spread} |")
        print(rows[-1], flush=True)
    try:
        os.unlink(perf_data)
    except OSError:
        pass
    table = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d')} on this 2-vCPU VM (kernel {os.uname().release}), "
            f"the workload's CPU time for a fixed amount of work, median of {RUNS} runs, each "
            "against a baseline run beside it:",
            "",
            "| profiler (system-wide) | overhead | range of runs |",
            "|---|---|---|",
            *rows,
        ]
    )
    print(table)
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    new = re.sub(
        r"(<!-- bench:profile -->\n).*?(<!-- /bench:profile -->)",
        lambda m: m.group(1) + table + "\n" + m.group(2),
        text,
        flags=re.S,
    )
    if new != text:
        open(readme, "w").write(new)


if __name__ == "__main__":
    sys.exit(main())
