# SPDX-License-Identifier: Apache-2.0
# Helpers for guest checks (busybox ash). Sourced by guest-checks.sh and by the shell
# that runs each check. See tests/vm/README.md.

BTRACE=/bin/btrace
WORKLOAD=/bin/workload
VMTEST_STATE=/tmp/vmtest

# register NAME [TIMEOUT-SECONDS]: run shell function NAME as a check (default timeout 60 s).
# Names: letters, digits, '_' and '-'; they are the row names of the host's table.
register() {
    VMTEST_REGISTERED="$VMTEST_REGISTERED $1:${2:-60}"
}

# detail TEXT: the short text shown next to PASS/FAIL (last call wins).
detail() {
    echo "$*" >"$VMTEST_STATE/$VMTEST_CHECK.detail"
}

# fail TEXT: end the check as FAIL with TEXT as detail.
fail() {
    detail "$*"
    echo "FAIL: $*"
    exit 1
}

# skip TEXT: end the check as SKIP (e.g. feature absent on this kernel). SKIP does not fail the run.
skip() {
    detail "$*"
    : >"$VMTEST_STATE/$VMTEST_CHECK.skip"
    exit 0
}

# kver_ge MAJOR.MINOR: true when the running kernel is at least that version.
kver_ge() {
    awk -v want="$1" -v have="$(uname -r)" 'BEGIN {
        split(want, w, "[.-]"); split(have, h, "[.-]");
        if (h[1] + 0 != w[1] + 0) exit !(h[1] + 0 > w[1] + 0);
        exit !(h[2] + 0 >= w[2] + 0) }'
}

# json_get FILE PATTERN KEY: value of the first "KEY" in the first line of FILE that contains
# the fixed string PATTERN (strings are printed without quotes). Empty if absent.
#   json_get out.json '"syscall":"getppid"' total   -> 1000
json_get() {
    grep -F -m1 -- "$2" "$1" | awk -v k="\"$3\":" '{
        i = index($0, k); if (!i) exit;
        s = substr($0, i + length(k));
        if (substr(s, 1, 1) == "\"") { s = substr(s, 2); print substr(s, 1, index(s, "\"") - 1) }
        else { match(s, /^[^],}]*/); print substr(s, 1, RLENGTH) }
    }'
}

# run OUT ERR CMD...: run CMD with stdout/stderr in files, echo both into the check's log
# (shown by the host when the check fails) and return CMD's exit status.
run() {
    _out=$1 _err=$2
    shift 2
    echo "+ $*"
    "$@" >"$_out" 2>"$_err"
    _rc=$?
    sed 's/^/  stdout: /' "$_out" | head -n 100
    sed 's/^/  stderr: /' "$_err" | head -n 100
    echo "  exit: $_rc"
    return $_rc
}
