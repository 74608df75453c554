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
    # fentry where the kernel has direct-call ftrace (lib.sh: not arm64 before 6.4)
    if has_fentry; then fe=true; else fe=false; fi
    [ "$(fact fentry ok)" = "$fe" ] || fail "fentry ok=$(fact fentry ok), want $fe: $(fact fentry detail)"
    [ "$(fact tp_btf ok)" = true ] || fail "tp_btf: $(fact tp_btf detail)"
    if kver_ge 5.11; then want=true; else want=false; fi
    [ "$(fact task_storage ok)" = "$want" ] || fail "task_storage ok=$(fact task_storage ok), want $want on $(uname -r)"
    if kver_ge 6.6; then um=true; else um=false; fi
    [ "$(fact uprobe_multi ok)" = "$um" ] || fail "uprobe_multi ok=$(fact uprobe_multi ok), want $um on $(uname -r): $(fact uprobe_multi detail)"
    [ "$(fact jit value)" = "$(cat /proc/sys/net/core/bpf_jit_enable)" ] || fail "jit value"
    for m in auto fentry kprobe; do
        w=$(json_get /tmp/doc.json "\"command\":\"kprobe\",\"mode\":\"$m\"" works)
        if [ "$m" = fentry ]; then
            [ "$w" = "$fe" ] || fail "doctor says kprobe --mode fentry works=$w, want $fe"
        else
            [ "$w" = true ] || fail "doctor says kprobe --mode $m does not work"
        fi
    done
    if [ "$fe" = false ]; then
        how=$(json_get /tmp/doc.json '"command":"kprobe","mode":"auto"' how)
        echo "$how" | grep -q kprobe || fail "no fentry: doctor's kprobe auto does not say it takes kprobe: $how"
    fi
    detail "kernel, btf, ringbuf, kprobes, fentry=$fe, tp_btf, task_storage=$want, uprobe_multi=$um, jit as expected"
}
register doctor_facts 60
