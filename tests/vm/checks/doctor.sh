# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=sh
# btrace doctor: its facts against what this kernel is.

# doctor_facts: what doctor says against what this kernel is.
doctor_facts() {
    run /tmp/doc.json /tmp/doc.err "$BTRACE" doctor --json || fail "btrace doctor exited $?"
    fact() { json_get /tmp/doc.json "\"name\":\"$1\"" "$2"; }
    [ "$(fact kernel value)" = "$(uname -r)" ] || fail "kernel: $(fact kernel value) vs $(uname -r)"
    [ "$(fact btf ok)" = true ] || fail "btf not ok"
    [ "$(fact ringbuf ok)" = true ] || fail "ringbuf not ok"
    [ -e /sys/bus/event_source/devices/kprobe ] || fail "this kernel has no kprobe PMU?"
    [ "$(fact kprobes ok)" = true ] || fail "kprobes: $(fact kprobes detail)"
    [ "$(fact fentry ok)" = true ] || fail "fentry: $(fact fentry detail)"
    [ "$(fact tp_btf ok)" = true ] || fail "tp_btf: $(fact tp_btf detail)"
    if kver_ge 5.11; then want=true; else want=false; fi
    [ "$(fact task_storage ok)" = "$want" ] || fail "task_storage ok=$(fact task_storage ok), want $want on $(uname -r)"
    if kver_ge 6.6; then um=true; else um=false; fi
    [ "$(fact uprobe_multi ok)" = "$um" ] || fail "uprobe_multi ok=$(fact uprobe_multi ok), want $um on $(uname -r): $(fact uprobe_multi detail)"
    [ "$(fact jit value)" = "$(cat /proc/sys/net/core/bpf_jit_enable)" ] || fail "jit value"
    for m in auto fentry kprobe; do
        w=$(json_get /tmp/doc.json "\"command\":\"kprobe\",\"mode\":\"$m\"" works)
        [ "$w" = true ] || fail "doctor says kprobe --mode $m does not work"
    done
    detail "kernel, btf, ringbuf, kprobes, fentry, tp_btf, task_storage=$want, uprobe_multi=$um, jit as expected"
}
register doctor_facts 60
