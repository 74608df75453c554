// SPDX-License-Identifier: Apache-2.0
//! The plan and the decoding of function events, against hand-made events.

use super::plan::RAW;
use super::*;
use crate::core::scope::Scope;
use crate::core::slots;
use crate::model::abi::types;
use crate::model::abi::{STR_FAULT, STR_NOT_READ, STR_TRUNCATED};
use crate::model::task::Head;
use crate::model::value::{json_args, Marks};
use crate::model::value::{Field, Val};
use crate::resolve::btf::Arg;
use crate::resolve::btf::{Proto, ValueKind};
use serde_json::{json, Value};

fn arg(name: &str, kind: ValueKind) -> Arg {
    Arg {
        name: name.into(),
        kind,
    }
}

fn int(signed: bool, width: usize) -> ValueKind {
    ValueKind::Int { signed, width }
}

fn plan(func: &str, args: Vec<Arg>, ret: ValueKind) -> Plan {
    let proto = Proto {
        func: func.into(),
        args,
        ret,
    };
    Plan::new(func, Some(proto), true, 16, Scope::default(), 16)
}

fn openat2_plan() -> Plan {
    plan(
        "do_sys_openat2",
        vec![
            arg("dfd", int(true, 4)),
            arg("filename", ValueKind::Str { constant: true }),
            arg("how", ValueKind::Pointer),
        ],
        int(true, 8),
    )
}

/// vfs_write(file, const char *buf, size_t count, loff_t *pos), and vfs_read.
fn vfs_plan(func: &str, constant: bool) -> Plan {
    plan(
        func,
        vec![
            arg("file", ValueKind::Pointer),
            arg("buf", ValueKind::Str { constant }),
            arg("count", int(false, 8)),
            arg("pos", ValueKind::Pointer),
        ],
        int(true, 8),
    )
}

/// An event with string slots `slots` (len, flags, bytes) after its fixed part.
fn event(p: &Plan, args: [u64; FUNC_MAX_ARGS], slots: &[(u32, u32, &[u8])]) -> FuncEvent {
    let mut rec = vec![0u8; p.ev_size()];
    let base = std::mem::size_of::<types::func_event>();
    for (i, (len, flags, data)) in slots.iter().enumerate() {
        let off = base + i * slots::slot_bytes(p.str_size);
        rec[off..off + 4].copy_from_slice(&len.to_ne_bytes());
        rec[off + 4..off + 8].copy_from_slice(&flags.to_ne_bytes());
        rec[off + 8..off + 8 + data.len()].copy_from_slice(data);
    }
    FuncEvent {
        head: Head {
            ts_ns: 1,
            pid: 2,
            tid: 3,
            comm: "cat".into(),
            ns: None,
            cgroup_id: 0,
        },
        args,
        ret: 3,
        latency_ns: 1234,
        rec,
    }
}

fn json(fields: &[Field<'_>]) -> (Value, Marks) {
    let mut marks = Marks::default();
    (Value::Object(json_args(fields, &mut marks)), marks)
}

#[test]
fn strings_and_buffers_get_slots_in_order() {
    let p = openat2_plan();
    assert_eq!(p.nr_args(), 3);
    assert_eq!(p.reads[1].how, types::arg_read::ARG_STR.0 as u8);
    assert_eq!(p.reads[0], RAW);
    assert_eq!(p.n_slots(), 1);
    let w = vfs_plan("vfs_write", true);
    assert_eq!(
        w.reads[1],
        ArgRead {
            how: types::arg_read::ARG_BUF_IN.0 as u8,
            slot: 0,
            len: 2
        }
    );
    let r = vfs_plan("vfs_read", false);
    assert_eq!(r.reads[1].how, types::arg_read::ARG_BUF_OUT.0 as u8);
    // The rule alone, for a function the table does not know.
    let other = vfs_plan("some_write", true);
    assert_eq!(other.reads[1].how, types::arg_read::ARG_BUF_IN.0 as u8);
    assert_eq!(
        w.ev_size(),
        std::mem::size_of::<types::func_event>() + slots::slot_bytes(16)
    );
}

#[test]
fn arguments_decoded_by_name_and_type() {
    let p = openat2_plan();
    let ev = event(
        &p,
        [
            (-100i64) as u64,
            0x7fff_0000,
            0xffff_8880_0000_0040,
            0,
            0,
            0,
        ],
        &[(13, 0, b"/etc/hostname")],
    );
    let (a, _) = json(&decode_args(&p, &ev));
    assert_eq!(
        a,
        json!({"dfd": -100, "filename": "/etc/hostname", "how": "0xffff888000000040"})
    );
    assert_eq!(decode_ret(&p, &ev).unwrap().val, Val::Int(3));
}

#[test]
fn buffers_exact_bytes_or_the_pointer() {
    let w = vfs_plan("vfs_write", true);
    let ev = event(&w, [0xff00, 0x7000, 5, 0, 0, 0], &[(5, 0, b"a\0b\n\xff")]);
    let (a, marks) = json(&decode_args(&w, &ev));
    assert_eq!(a["buf"], "a\u{0}b\n\\xff");
    assert_eq!(marks.escaped, ["buf"]);
    let cut = event(
        &w,
        [0xff00, 0x7000, 99, 0, 0, 0],
        &[(16, STR_TRUNCATED, &[b'x'; 16])],
    );
    let (_, marks) = json(&decode_args(&w, &cut));
    assert_eq!(marks.truncated, ["buf"]);
    // Not filled yet (no --ret, or ret <= 0), or unreadable: the pointer.
    let r = vfs_plan("vfs_read", false);
    for flags in [STR_NOT_READ, STR_FAULT] {
        let ev = event(&r, [0xff00, 0x7000, 5, 0, 0, 0], &[(0, flags, b"")]);
        assert_eq!(decode_args(&r, &ev)[1].val, Val::Hex(0x7000));
    }
}

#[test]
fn void_and_unknown_functions_have_no_ret() {
    let v = plan("kfree", vec![arg("x", ValueKind::Pointer)], ValueKind::Void);
    let ev = event(&v, [1, 0, 0, 0, 0, 0], &[]);
    assert!(decode_ret(&v, &ev).is_none());
    let mut unknown = openat2_plan();
    unknown.proto = None;
    assert!(decode_ret(&unknown, &ev).is_none());
    // A pointer return is hex, like any pointer.
    let k = plan("kmalloc_thing", vec![], ValueKind::Pointer);
    let ev = event(&k, [0; FUNC_MAX_ARGS], &[]);
    assert_eq!(decode_ret(&k, &ev).unwrap().val.text(), "0x3");
}

#[test]
fn event_layout_matches_the_kernel() {
    // SAFETY: a plain struct of integers and chars, valid all zero.
    let e: types::func_event = unsafe { std::mem::zeroed() };
    assert_eq!(e.args.len(), FUNC_MAX_ARGS);
    assert_eq!(std::mem::size_of::<types::func_event>() % 8, 0);
}
