//! A kernel function's prototype from the kernel's BTF (/sys/kernel/btf/vmlinux): the
//! names and kinds of its arguments and of its return value, so `btrace kprobe` can
//! print `dfd=-100 filename="/etc/hostname"` instead of six raw registers.

use anyhow::{Context, Result};
use libbpf_rs::btf::{types, Btf, BtfKind, BtfType, HasSize, TypeId};
use libbpf_rs::AsRawLibbpf;

/// How a value (an argument register, the return register) is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer (or enum) of `width` bytes.
    Int {
        signed: bool,
        width: usize,
    },
    Bool,
    /// Any pointer but a `char *`: shown in hex.
    Pointer,
    /// `char *`: the string is read in the kernel (user memory first, then kernel).
    Str,
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

fn classify(ty: BtfType<'_>) -> ValueKind {
    let ty = ty.skip_mods_and_typedefs();
    match ty.kind() {
        BtfKind::Void => ValueKind::Void,
        BtfKind::Int => {
            let int = types::Int::try_from(ty).expect("kind checked");
            match int.encoding {
                types::IntEncoding::Bool => ValueKind::Bool,
                types::IntEncoding::Signed => ValueKind::Int {
                    signed: true,
                    width: (int.bits as usize).div_ceil(8),
                },
                // Plain `char` is signed on x86.
                types::IntEncoding::Char => ValueKind::Int {
                    signed: true,
                    width: 1,
                },
                types::IntEncoding::None => ValueKind::Int {
                    signed: false,
                    width: (int.bits as usize).div_ceil(8),
                },
            }
        }
        BtfKind::Enum => {
            let e = types::Enum::try_from(ty).expect("kind checked");
            ValueKind::Int {
                signed: e.is_signed(),
                width: e.size(),
            }
        }
        BtfKind::Enum64 => {
            let e = types::Enum64::try_from(ty).expect("kind checked");
            ValueKind::Int {
                signed: e.is_signed(),
                width: e.size(),
            }
        }
        BtfKind::Ptr => {
            let pointee = ty.next_type().map(|t| t.skip_mods_and_typedefs());
            let is_char = pointee
                .and_then(|t| types::Int::try_from(t).ok())
                .is_some_and(|i| i.bits == 8 && !matches!(i.encoding, types::IntEncoding::Bool));
            if is_char {
                ValueKind::Str
            } else {
                ValueKind::Pointer
            }
        }
        BtfKind::Struct | BtfKind::Union => ValueKind::Unsupported("struct passed by value"),
        BtfKind::Float => ValueKind::Unsupported("floating point"),
        _ => ValueKind::Unsupported("unusual type"),
    }
}

/// The prototype of `func` in `btf`, or None when the BTF has no such function.
pub fn proto_in(btf: &Btf<'_>, func: &str) -> Option<Proto> {
    let name = std::ffi::CString::new(func).ok()?;
    // SAFETY: a valid btf pointer and a NUL-terminated name.
    let id = unsafe {
        libbpf_sys::btf__find_by_name_kind(
            btf.as_libbpf_object().as_ptr(),
            name.as_ptr(),
            libbpf_sys::BTF_KIND_FUNC,
        )
    };
    if id <= 0 {
        return None;
    }
    let f: types::Func<'_> = btf.type_by_id(TypeId::from(id as u32))?;
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

/// The kernel's BTF.
pub fn vmlinux() -> Result<Btf<'static>> {
    Btf::from_vmlinux().context("reading the kernel's BTF (/sys/kernel/btf/vmlinux)")
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

/// A value of `kind` from a raw 64-bit register, as JSON.
pub fn value_json(kind: &ValueKind, raw: u64) -> serde_json::Value {
    use serde_json::json;
    match kind {
        ValueKind::Int { signed, width } => {
            let w = (*width).clamp(1, 8) as u32;
            let shift = 64 - 8 * w;
            if *signed {
                json!(((raw << shift) as i64) >> shift)
            } else {
                json!((raw << shift) >> shift)
            }
        }
        ValueKind::Bool => json!(raw & 0xff != 0),
        ValueKind::Pointer | ValueKind::Str => json!(format!("0x{raw:x}")),
        ValueKind::Unsupported(why) => json!(format!("<{why}>")),
        ValueKind::Void => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_values() {
        let int = ValueKind::Int {
            signed: true,
            width: 4,
        };
        assert_eq!(value_json(&int, 0xffff_ff9c), json!(-100));
        assert_eq!(value_json(&int, (-100i64) as u64), json!(-100));
        let u16k = ValueKind::Int {
            signed: false,
            width: 2,
        };
        assert_eq!(value_json(&u16k, 0x1_0180), json!(0x180));
        assert_eq!(
            value_json(&ValueKind::Pointer, 0xffff_8880_0000_1000),
            json!("0xffff888000001000")
        );
        assert_eq!(value_json(&ValueKind::Bool, 1), json!(true));
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
        assert_eq!(p.args[1].kind, ValueKind::Str);
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
        assert!(proto_in(&btf, "no_such_function_btrace").is_none());
        // A struct type's name is not a function.
        assert!(proto_in(&btf, "task_struct").is_none());
    }
}
