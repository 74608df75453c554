// SPDX-License-Identifier: Apache-2.0
//! The kernel's BTF (/sys/kernel/btf/vmlinux): a function's prototype (the names and kinds
//! of its arguments and of its return value, so `btrace kprobe` can print `dfd=-100
//! filename="/etc/hostname"` instead of six raw registers), and the kernel's types by
//! name for decoding tracepoint fields ([`BtfTypes`]).

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::btf::{types, Btf, BtfKind, BtfType, HasSize, TypeId};
use libbpf_rs::AsRawLibbpf;

use super::ctype::{base_int, unqualified, EnumNames, IntType, KernelTypes};
use crate::model::value::Val;

/// How a value (an argument register, the return register) is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer of `width` bytes, signed or not as BTF says through every typedef.
    Int {
        signed: bool,
        width: usize,
    },
    /// An enum: shown by enumerator name (the number kept as raw), signed or not as BTF
    /// says.
    Enum {
        signed: bool,
        width: usize,
        names: EnumNames,
    },
    Bool,
    /// Any pointer but a `char *`: shown in hex.
    Pointer,
    /// `char *` (`constant`: `const char *`): a string or, with a length beside it, a
    /// buffer, read in the kernel (user memory first, then kernel).
    Str {
        constant: bool,
    },
    /// A struct, union or float passed by value: not read.
    Unsupported(&'static str),
    /// The return "value" of a void function.
    Void,
}

impl ValueKind {
    /// Whether the value fits in one 64-bit argument slot.
    pub fn is_register(&self) -> bool {
        !matches!(self, ValueKind::Unsupported(_) | ValueKind::Void)
    }

    /// Whether the value is an integer (a possible length of a buffer).
    pub fn is_int(&self) -> bool {
        matches!(self, ValueKind::Int { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub kind: ValueKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proto {
    pub func: String,
    pub args: Vec<Arg>,
    pub ret: ValueKind,
}

impl Proto {
    /// How many leading arguments btrace reads: up to six, stopping before the first
    /// one that does not fit a register (its slot layout differs between kernels).
    pub fn readable_args(&self, max: usize) -> usize {
        self.args
            .iter()
            .take(max)
            .take_while(|a| a.kind.is_register())
            .count()
    }
}

/// An integer type, with its enumerators when it is an enum.
type Resolved = (IntType, Option<EnumNames>);

/// An integer or enum type (after typedefs and modifiers), with its enumerators.
fn int_of(ty: BtfType<'_>) -> Option<Resolved> {
    let ty = ty.skip_mods_and_typedefs();
    match ty.kind() {
        BtfKind::Int => {
            let int = types::Int::try_from(ty).ok()?;
            let width = (int.bits as usize).div_ceil(8);
            let signed = match int.encoding {
                types::IntEncoding::Signed => true,
                // Plain `char`: as the architecture has it.
                types::IntEncoding::Char => base_int("char").is_some_and(|c| c.signed),
                types::IntEncoding::None | types::IntEncoding::Bool => false,
            };
            Some((IntType { width, signed }, None))
        }
        BtfKind::Enum => {
            let e = types::Enum::try_from(ty).ok()?;
            let members = e.iter().map(|m| (m.value as u64, m.name));
            let (it, names) = enum_of(e.size(), e.is_signed(), members);
            Some((it, Some(names)))
        }
        BtfKind::Enum64 => {
            let e = types::Enum64::try_from(ty).ok()?;
            let members = e.iter().map(|m| (m.value as u64, m.name));
            let (it, names) = enum_of(e.size(), e.is_signed(), members);
            Some((it, Some(names)))
        }
        _ => None,
    }
}

/// An enum's integer type and its named enumerators (BTF's 32- and 64-bit enums alike),
/// each value as the enum's type extends it to 64 bits.
fn enum_of<'b>(
    width: usize,
    signed: bool,
    members: impl Iterator<Item = (u64, Option<&'b std::ffi::OsStr>)>,
) -> (IntType, EnumNames) {
    let it = IntType { width, signed };
    let names = members
        .filter_map(|(value, name)| Some((it.extend(value), name_of(name?))))
        .collect();
    (it, names)
}

fn name_of(n: &std::ffi::OsStr) -> String {
    n.to_string_lossy().into_owned()
}

/// Whether a pointer's target is (const) char, looking through typedefs, `__user` type
/// tags and modifiers. Some(constant) for a char, None for anything else.
fn char_pointee(ptr: BtfType<'_>) -> Option<bool> {
    let mut t = ptr.next_type()?;
    let mut constant = false;
    loop {
        match t.kind() {
            BtfKind::Const => constant = true,
            k if t.is_mod() || k == BtfKind::Typedef => {}
            _ => break,
        }
        t = t.next_type()?;
    }
    let int = types::Int::try_from(t).ok()?;
    (int.bits == 8 && !matches!(int.encoding, types::IntEncoding::Bool)).then_some(constant)
}

fn classify(ty: BtfType<'_>) -> ValueKind {
    let base = ty.skip_mods_and_typedefs();
    match base.kind() {
        BtfKind::Void => ValueKind::Void,
        BtfKind::Int
            if types::Int::try_from(base)
                .is_ok_and(|i| matches!(i.encoding, types::IntEncoding::Bool)) =>
        {
            ValueKind::Bool
        }
        BtfKind::Int | BtfKind::Enum | BtfKind::Enum64 => match int_of(base) {
            Some((IntType { signed, width }, Some(names))) => ValueKind::Enum {
                signed,
                width,
                names,
            },
            Some((IntType { signed, width }, None)) => ValueKind::Int { signed, width },
            None => ValueKind::Unsupported("unusual type"),
        },
        BtfKind::Ptr => match char_pointee(base) {
            Some(constant) => ValueKind::Str { constant },
            None => ValueKind::Pointer,
        },
        BtfKind::Struct | BtfKind::Union => ValueKind::Unsupported("struct passed by value"),
        BtfKind::Float => ValueKind::Unsupported("floating point"),
        _ => ValueKind::Unsupported("unusual type"),
    }
}

/// The id of the type named `name` of kind `kind` (a libbpf BTF_KIND_*), if any.
fn find(btf: &Btf<'_>, name: &str, kind: u32) -> Option<TypeId> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid btf pointer and a NUL-terminated name.
    let id = unsafe {
        libbpf_sys::btf__find_by_name_kind(btf.as_libbpf_object().as_ptr(), name.as_ptr(), kind)
    };
    (id > 0).then(|| TypeId::from(id as u32))
}

/// The prototype of `func` in `btf`, or None when the BTF has no such function.
pub fn proto_in(btf: &Btf<'_>, func: &str) -> Option<Proto> {
    let id = find(btf, func, libbpf_sys::BTF_KIND_FUNC)?;
    let f: types::Func<'_> = btf.type_by_id(id)?;
    let proto = types::FuncProto::try_from(f.next_type()?).ok()?;
    let args = proto
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let ty = btf.type_by_id::<BtfType<'_>>(p.ty)?;
            Some(Arg {
                name: p
                    .name
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| format!("arg{i}")),
                kind: classify(ty),
            })
        })
        .collect();
    let ret = proto.next_type().map(classify).unwrap_or(ValueKind::Void);
    Some(Proto {
        func: func.to_string(),
        args,
        ret,
    })
}

/// Whether `btf` has `struct name` with a member called `member` (a kernel feature told
/// by a field it added); None when the struct itself is missing.
pub fn struct_has_member(btf: &Btf<'_>, name: &str, member: &str) -> Option<bool> {
    let id = find(btf, name, libbpf_sys::BTF_KIND_STRUCT)?;
    let st: types::Struct<'_> = btf.type_by_id(id)?;
    let found = st.iter().any(|m| m.name.is_some_and(|n| n == member));
    Some(found)
}

/// How many arguments the raw tracepoint `name` passes to its probes (its
/// `btf_trace_NAME` typedef: a pointer to a function taking the probe's data, then the
/// arguments), or None when the BTF has no such tracepoint.
pub fn tracepoint_args(btf: &Btf<'_>, name: &str) -> Option<usize> {
    let id = find(
        btf,
        &format!("btf_trace_{name}"),
        libbpf_sys::BTF_KIND_TYPEDEF,
    )?;
    let ptr = btf.type_by_id::<BtfType<'_>>(id)?.next_type()?;
    let proto = types::FuncProto::try_from(ptr.next_type()?).ok()?;
    Some(proto.iter().count().saturating_sub(1))
}

/// A BTF file given with `--btf` (or `BTRACE_BTF`), used instead of the kernel's own for
/// CO-RE relocations and btrace's own type lookups: for kernels without
/// /sys/kernel/btf/vmlinux. Set once at start, once core::system::set_custom_btf has
/// checked it.
static CUSTOM_BTF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes `path` the BTF btrace reads instead of the kernel's (the first call wins).
pub fn set_custom(path: PathBuf) {
    let _ = CUSTOM_BTF.set(path);
}

/// The BTF file given by the user, if any.
pub fn custom_btf() -> Option<&'static Path> {
    CUSTOM_BTF.get().map(PathBuf::as_path)
}

/// The kernel's BTF (or the `--btf` file standing in for it).
pub fn vmlinux() -> Result<Btf<'static>> {
    match custom_btf() {
        Some(p) => {
            Btf::from_path(p).with_context(|| format!("reading the BTF file {}", p.display()))
        }
        None => Btf::from_vmlinux().context("reading the kernel's BTF (/sys/kernel/btf/vmlinux)"),
    }
}

/// The prototype of kernel function `func`, or None when the kernel's BTF lacks it.
pub fn lookup(func: &str) -> Result<Option<Proto>> {
    Ok(proto_in(&vmlinux()?, func))
}

/// Whether /proc/kallsyms lists `func` as a function symbol (it may exist without BTF).
pub fn in_kallsyms(func: &str) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
        return false;
    };
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        let (_, kind, name) = (w.next(), w.next(), w.next());
        matches!(kind, Some("t" | "T")) && name == Some(func)
    })
}

/// A value of `kind` from a raw 64-bit register, and the number behind it when it is
/// shown by name (an enumerator).
pub fn value(kind: &ValueKind, raw: u64) -> (Val, Option<Val>) {
    let int = |signed: bool, width: usize| {
        let v = IntType { width, signed }.extend(raw);
        if signed {
            Val::Int(v as i64)
        } else {
            Val::UInt(v)
        }
    };
    match kind {
        ValueKind::Int { signed, width } => (int(*signed, *width), None),
        ValueKind::Enum {
            signed,
            width,
            names,
        } => {
            let number = int(*signed, *width);
            let key = IntType {
                width: *width,
                signed: *signed,
            }
            .extend(raw);
            match names.iter().find(|(v, _)| *v == key) {
                Some((_, name)) => (Val::Name(name.clone()), Some(number)),
                None => (number, None),
            }
        }
        ValueKind::Bool => (Val::Bool(raw & 0xff != 0), None),
        ValueKind::Pointer | ValueKind::Str { .. } => (Val::Hex(raw), None),
        ValueKind::Unsupported(why) => (Val::Note(format!("<{why}>")), None),
        ValueKind::Void => (Val::Missing, None),
    }
}

/// The kernel's types by name, from its BTF: typedef chains followed to the integer or
/// enum below (`off_t` -> `__kernel_off_t` -> `long`), enumerators by name. Lookups are
/// remembered; the enumerator index is built on first use.
pub struct BtfTypes {
    btf: Btf<'static>,
    seen: RefCell<HashMap<String, Option<Resolved>>>,
    enumerators: OnceCell<HashMap<String, u64>>,
}

impl BtfTypes {
    pub fn new(btf: Btf<'static>) -> Self {
        BtfTypes {
            btf,
            seen: RefCell::new(HashMap::new()),
            enumerators: OnceCell::new(),
        }
    }

    /// The running kernel's types.
    pub fn vmlinux() -> Result<Self> {
        Ok(Self::new(vmlinux()?))
    }

    fn resolve(&self, c_type: &str) -> Option<Resolved> {
        let t = unqualified(c_type);
        if let Some(hit) = self.seen.borrow().get(&t) {
            return hit.clone();
        }
        let found = self.lookup(&t);
        self.seen.borrow_mut().insert(t, found.clone());
        found
    }

    fn lookup(&self, t: &str) -> Option<Resolved> {
        if t.contains(['*', '[']) || t.starts_with("struct ") || t.starts_with("union ") {
            return None;
        }
        if let Some(it) = base_int(t) {
            return Some((it, None));
        }
        let id = match t.strip_prefix("enum ") {
            Some(name) => find(&self.btf, name, libbpf_sys::BTF_KIND_ENUM)
                .or_else(|| find(&self.btf, name, libbpf_sys::BTF_KIND_ENUM64))?,
            None => find(&self.btf, t, libbpf_sys::BTF_KIND_TYPEDEF)?,
        };
        int_of(self.btf.type_by_id::<BtfType<'_>>(id)?)
    }

    fn enumerator_index(&self) -> HashMap<String, u64> {
        let mut m = HashMap::new();
        for e in self.btf.type_by_kind::<types::Enum<'_>>() {
            let members = e.iter().map(|m| (m.value as u64, m.name));
            for (value, name) in enum_of(e.size(), e.is_signed(), members).1 {
                m.entry(name).or_insert(value);
            }
        }
        for e in self.btf.type_by_kind::<types::Enum64<'_>>() {
            let members = e.iter().map(|m| (m.value as u64, m.name));
            for (value, name) in enum_of(e.size(), e.is_signed(), members).1 {
                m.entry(name).or_insert(value);
            }
        }
        m
    }
}

impl KernelTypes for BtfTypes {
    fn int_type(&self, c_type: &str) -> Option<IntType> {
        self.resolve(c_type).map(|(it, _)| it)
    }

    fn enum_names(&self, c_type: &str) -> Option<EnumNames> {
        self.resolve(c_type).and_then(|(_, names)| names)
    }

    fn enumerator(&self, name: &str) -> Option<u64> {
        self.enumerators
            .get_or_init(|| self.enumerator_index())
            .get(name)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values() {
        let int = ValueKind::Int {
            signed: true,
            width: 4,
        };
        assert_eq!(value(&int, 0xffff_ff9c).0, Val::Int(-100));
        assert_eq!(value(&int, (-100i64) as u64).0, Val::Int(-100));
        let u16k = ValueKind::Int {
            signed: false,
            width: 2,
        };
        assert_eq!(value(&u16k, 0x1_0180).0, Val::UInt(0x180));
        assert_eq!(
            value(&ValueKind::Pointer, 0xffff_8880_0000_1000).0,
            Val::Hex(0xffff_8880_0000_1000)
        );
        assert_eq!(value(&ValueKind::Bool, 1).0, Val::Bool(true));
        let e = ValueKind::Enum {
            signed: true,
            width: 4,
            names: vec![(1, "ONE".into()), ((-1i64) as u64, "MINUS".into())],
        };
        assert_eq!(value(&e, 1), (Val::Name("ONE".into()), Some(Val::Int(1))));
        assert_eq!(
            value(&e, 0xffff_ffff),
            (Val::Name("MINUS".into()), Some(Val::Int(-1)))
        );
        assert_eq!(value(&e, 7), (Val::Int(7), None));
    }

    /// Real prototypes from this machine's kernel BTF.
    #[test]
    fn prototypes_from_kernel_btf() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return; // nothing to read: the integration tests say so loudly
        }
        let btf = vmlinux().unwrap();
        let p = proto_in(&btf, "do_sys_openat2").expect("do_sys_openat2 in BTF");
        let names: Vec<_> = p.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["dfd", "filename", "how"]);
        assert_eq!(
            p.args[0].kind,
            ValueKind::Int {
                signed: true,
                width: 4
            }
        );
        assert_eq!(p.args[1].kind, ValueKind::Str { constant: true });
        assert_eq!(p.args[2].kind, ValueKind::Pointer);
        // long before 6.x, int in recent kernels: signed either way.
        assert!(
            matches!(p.ret, ValueKind::Int { signed: true, .. }),
            "{:?}",
            p.ret
        );
        assert_eq!(p.readable_args(6), 3);
        // A void function, and one with an unsigned size_t argument.
        let v = proto_in(&btf, "kfree").unwrap();
        assert_eq!(v.ret, ValueKind::Void);
        let k = proto_in(&btf, "__kmalloc_noprof")
            .or_else(|| proto_in(&btf, "__kmalloc"))
            .unwrap();
        assert_eq!(
            k.args[0].kind,
            ValueKind::Int {
                signed: false,
                width: 8
            }
        );
        // Buffers: const for what the function reads, not for what it fills.
        let w = proto_in(&btf, "vfs_write").unwrap();
        assert_eq!(w.args[1].kind, ValueKind::Str { constant: true });
        let r = proto_in(&btf, "vfs_read").unwrap();
        assert_eq!(r.args[1].kind, ValueKind::Str { constant: false });
        // An enum argument keeps its enumerators.
        let t = proto_in(&btf, "__task_pid_nr_ns").unwrap();
        let ValueKind::Enum { names, .. } = &t.args[1].kind else {
            panic!("{:?}", t.args[1])
        };
        assert!(names.contains(&(1, "PIDTYPE_TGID".to_string())));
        assert!(proto_in(&btf, "no_such_function_btrace").is_none());
        // A struct type's name is not a function.
        assert!(proto_in(&btf, "task_struct").is_none());
    }
}
