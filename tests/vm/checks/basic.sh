# SPDX-License-Identifier: Apache-2.0
# Basic checks: the binary starts on this kernel with the libraries we copied.

btrace_runs() {
    run /tmp/help.out /tmp/help.err "$BTRACE" --help || fail "btrace --help exited $?"
    detail "btrace --help ok"
}
register btrace_runs 30
