// SPDX-License-Identifier: Apache-2.0
//! C type names as tracefs formats and print formats write them (`off_t`, `const
//! clockid_t`, `unsigned long`, `enum skb_drop_reason`, `gfp_t`): their width, their
//! signedness and, for enums, the names of their values. C's own integer types are read
//! from their keywords; every other name (typedefs, enums) is looked up in the kernel's
//! BTF ([`crate::resolve::btf::BtfTypes`]), through every typedef.

/// An integer type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntType {
    /// Bytes: 1, 2, 4 or 8.
    pub width: usize,
    pub signed: bool,
}

impl IntType {
    /// A register or record value of this type, as C converts it to 64 bits (sign- or
    /// zero-extended from `width` bytes).
    pub fn extend(self, raw: u64) -> u64 {
        let shift = 64 - 8 * self.width.clamp(1, 8) as u32;
        if self.signed {
            (((raw << shift) as i64) >> shift) as u64
        } else {
            (raw << shift) >> shift
        }
    }
}

/// Value -> enumerator name, values as C converts them to 64 bits.
pub type EnumNames = Vec<(u64, String)>;

/// What btrace needs to know about the kernel's types.
pub trait KernelTypes {
    /// An integer (or enum) type by its C name, or None (not an integer, or unknown).
    fn int_type(&self, c_type: &str) -> Option<IntType>;
    /// The enumerators of an enum type (`enum NAME`, or a typedef of an enum).
    fn enum_names(&self, c_type: &str) -> Option<EnumNames>;
    /// The value of an enumerator (`IOPRIO_CLASS_RT`), as C converts it to 64 bits.
    fn enumerator(&self, name: &str) -> Option<u64>;
}

/// Only C's own integer types: for unit tests, and where the kernel's BTF is missing.
pub struct BaseTypes;

impl KernelTypes for BaseTypes {
    fn int_type(&self, c_type: &str) -> Option<IntType> {
        base_int(&unqualified(c_type))
    }
    fn enum_names(&self, _: &str) -> Option<EnumNames> {
        None
    }
    fn enumerator(&self, _: &str) -> Option<u64> {
        None
    }
}

/// For the resolvers' unit tests: C's types, `gfp_t` (an unsigned int, as in the kernel),
/// and the enumerators the tests name (the I/O priority classes; MINUS_ONE, all bits set).
#[cfg(test)]
pub struct TestTypes;

#[cfg(test)]
impl KernelTypes for TestTypes {
    fn int_type(&self, c_type: &str) -> Option<IntType> {
        match unqualified(c_type).as_str() {
            "gfp_t" => Some(IntType {
                width: 4,
                signed: false,
            }),
            t => base_int(t),
        }
    }
    fn enum_names(&self, _: &str) -> Option<EnumNames> {
        None
    }
    fn enumerator(&self, name: &str) -> Option<u64> {
        [
            ("IOPRIO_CLASS_NONE", 0),
            ("IOPRIO_CLASS_RT", 1),
            ("IOPRIO_CLASS_BE", 2),
            ("IOPRIO_CLASS_IDLE", 3),
            ("MINUS_ONE", u64::MAX),
        ]
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
    }
}

/// `c_type` without `const`/`volatile`, words separated by one space, `*` kept apart.
pub fn unqualified(c_type: &str) -> String {
    c_type
        .replace('*', " * ")
        .split_whitespace()
        .filter(|w| *w != "const" && *w != "volatile")
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether plain `char` is signed on the architecture btrace is built for.
const CHAR_SIGNED: bool = !cfg!(any(target_arch = "aarch64", target_arch = "arm"));

/// C's integer types from their keywords (`unsigned long`, `short int`, `signed char`),
/// on the LP64 model of every architecture btrace builds for.
pub fn base_int(t: &str) -> Option<IntType> {
    let words: Vec<&str> = t.split_whitespace().collect();
    if words.is_empty()
        || !words.iter().all(|w| {
            matches!(
                *w,
                "signed" | "unsigned" | "char" | "short" | "int" | "long"
            )
        })
    {
        return None;
    }
    let has = |k: &str| words.contains(&k);
    let longs = words.iter().filter(|w| **w == "long").count();
    let unsigned = has("unsigned");
    if has("char") {
        return Some(IntType {
            width: 1,
            signed: has("signed") || (!unsigned && CHAR_SIGNED),
        });
    }
    let width = if has("short") {
        2
    } else if longs > 0 {
        8
    } else {
        4
    };
    Some(IntType {
        width,
        signed: !unsigned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_types() {
        let t = |s: &str| BaseTypes.int_type(s);
        assert_eq!(
            t("unsigned long"),
            Some(IntType {
                width: 8,
                signed: false
            })
        );
        assert_eq!(
            t("const int"),
            Some(IntType {
                width: 4,
                signed: true
            })
        );
        assert_eq!(
            t("short unsigned int"),
            Some(IntType {
                width: 2,
                signed: false
            })
        );
        assert_eq!(
            t("long long"),
            Some(IntType {
                width: 8,
                signed: true
            })
        );
        assert_eq!(t("unsigned char").map(|i| i.signed), Some(false));
        assert_eq!(t("signed char").map(|i| i.signed), Some(true));
        assert_eq!(t("off_t"), None, "typedefs need BTF");
        assert_eq!(t("char *"), None);
        assert_eq!(unqualified("const char *const *"), "char * *");
    }

    #[test]
    fn extension() {
        let i32t = IntType {
            width: 4,
            signed: true,
        };
        assert_eq!(i32t.extend(0xffff_fffb) as i64, -5);
        assert_eq!(i32t.extend(0x1_0000_0005), 5);
        let u16t = IntType {
            width: 2,
            signed: false,
        };
        assert_eq!(u16t.extend(0xabcd_1234), 0x1234);
    }
}
