#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A long system-wide `btrace profile -F 999` (DURATION seconds, 600 by default: the run
# that once kept 208,603 of 907,205 samples in a fixed table) under a load with many
# distinct stacks: a fork storm of short processes, each its own stack (stackload storm),
# started again and again, beside whatever else the machine runs. Reports what was kept
# of what the kernel saw, the losses, the drains of the kernel's tables, btrace's peak
# memory and the time to the report. Figures are written into README.md between the
# bench:profile-long markers.
#
# Standalone: bash bench/profile_long.sh   (DURATION=600 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
BTRACE=${BTRACE:-target/release/btrace}
STACKLOAD=${STACKLOAD:-target/stackload}
DURATION=${DURATION:-600}
[ -x "$BTRACE" ] || make -s build-release
[ -x "$STACKLOAD" ] || make -s target/stackload
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time): apt-get install time"; exit 1; }

LOAD=""
cleanup() { [ -n "$LOAD" ] && kill "$LOAD" 2>/dev/null || true; }
trap cleanup EXIT
# The storm, over and over: 200 processes a round, 3 ms of CPU and one 5 ms sleep each.
( while :; do "$STACKLOAD" storm 200 3 1 >/dev/null 2>&1 || true; done ) &
LOAD=$!

OUT=$(mktemp) TIMES=$(mktemp)
echo "btrace profile -F 999 system-wide for ${DURATION} s, $(nproc) CPUs, fork storm running" >&2
/usr/bin/time -f "%M %e" -o "$TIMES" "$BTRACE" profile -F 999 -d "$DURATION" --json >"$OUT" 2>/dev/null
read -r rss_kb _ <"$TIMES"
row=$(python3 - "$OUT" "$rss_kb" "$DURATION" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
s = recs[-1]
assert s["type"] == "summary", s
sl = s["stack_losses"]
lost = s["lost"]["map_full"]
print(f"| {int(sys.argv[3])} s | {s['samples']:,} of {s['samples_seen']:,} | {lost:,} "
      f"| {sl['map_full']:,} / {sl['collision']:,} | {s['drains']:,} | {s['stacks']:,} "
      f"| {int(sys.argv[2]) / 1024:.0f} MiB | {s['report_s']:.1f} s |")
PY
)
rm -f "$OUT" "$TIMES"
text="| run | samples kept of seen | samples lost (table full) | stacks lost: table full / collision | drains | distinct entries | btrace peak RSS | time to report |
|---|---|---|---|---|---|---|---|
$row

System-wide \`btrace profile -F 999 -d ${DURATION} --json\` on $(nproc) CPUs while
\`stackload storm 200 3 1\` ran round after round (short processes, each its own stack).
Distinct entries: (thread, kernel stack, user stack) counted apart; each is symbolized
at the end (the time to report and most of the peak memory).
Measured $(date +%F) on kernel $(uname -r) with ${BTRACE}, one run of
\`DURATION=${DURATION} bash bench/profile_long.sh\`."
echo "$text"
python3 - "$text" <<'PY'
import re, sys
text = sys.argv[1]
doc = open("README.md").read()
new = re.sub(r"(<!-- bench:profile-long -->\n).*?(<!-- /bench:profile-long -->)",
             lambda m: m.group(1) + text + "\n" + m.group(2), doc, flags=re.S)
if new != doc:
    open("README.md", "w").write(new)
    print("(figures written into README.md)")
PY
