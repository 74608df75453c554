#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Overhead of `btrace profile` on a CPU-bound workload, beside `perf record` at the same
rates (libbpf-tools `profile` is not packaged by Debian: not measured).

The workload (tests/workload/stackload `work N`) does a fixed amount of work; its cost is
its CPU time (user + system, from wait4), which includes the sampling interrupts that hit
it (this kernel has no IRQ_TIME_ACCOUNTING: interrupt time is charged to the interrupted
task), and is less disturbed than wall time by other load on a shared machine. Each
configuration is run RUNS times, interleaved with baseline runs; overhead = median of
(CPU time with the profiler / CPU time of the neighbouring baseline) - 1.
Figures are written into README.md between the bench:profile markers.
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
STACKLOAD = os.environ.get("STACKLOAD", os.path.join(ROOT, "target/stackload"))
ROUNDS = int(os.environ.get("ROUNDS", "60000"))
RUNS = int(os.environ.get("RUNS", "5"))


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


def main():
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
