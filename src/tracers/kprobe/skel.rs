//! The leaf module of the kprobe tracer: its generated skeleton and the kernel ABI it
//! shares with kprobe.bpf.c (kprobe.h).

#[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/kprobe.skel.rs"));
}
pub use generated::*;

crate::skel_kind!(KprobeKind, KprobeSkel);

/// A loaded kprobe object with its storage.
pub type Kprobe = crate::core::skel::Loaded<KprobeKind>;

/// Arguments read at most.
pub const FUNC_MAX_ARGS: usize = types::func_limits::FUNC_MAX_ARGS.0 as usize;
/// `char *` arguments read as strings at most.
pub const FUNC_MAX_STRS: usize = types::func_limits::FUNC_MAX_STRS.0 as usize;
/// The string slot of an argument that is not read as a string.
pub const FUNC_NO_STR: u8 = types::func_limits::FUNC_NO_STR.0 as u8;

// SAFETY: a plain C struct of integers and chars, as generated from the object's BTF:
// every bit pattern is a valid value.
unsafe impl plain::Plain for types::func_event {}
