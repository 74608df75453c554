#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make bench`: every benchmark part, one after the other, on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 bench/hist_overhead.py
echo
python3 bench/profile_overhead.py
echo
python3 bench/classic_overhead.py
echo
python3 bench/startup.py
echo
python3 bench/static_dynamic.py
for part in bench/*.sh; do
    [ "$part" = bench/run.sh ] && continue
    echo
    bash "$part"
done
