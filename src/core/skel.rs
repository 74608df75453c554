// SPDX-License-Identifier: Apache-2.0
//! A loaded skeleton that owns the storage it was opened in.
//!
//! libbpf-rs skeletons borrow their object's storage (`&'obj mut MaybeUninit<OpenObject>`),
//! so a tracer kept beside others for a program's lifetime (the dashboard, the exporter)
//! would otherwise need storage leaked per load attempt. [`Loaded`] keeps both: the storage
//! on the heap, the skeleton borrowing it, dropped in that order.

use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::Deref;
use std::ptr::NonNull;

use anyhow::Result;
use libbpf_rs::skel::{OpenSkel, Skel};
use libbpf_rs::OpenObject;

/// A generated skeleton's types by their object lifetime (`OpenHistSkel<'obj>`,
/// `HistSkel<'obj>`), and how it is opened: what [`Loaded`] holds and what the lifecycle
/// (core::lifecycle) drives.
pub trait SkelKind {
    type Open<'obj>: OpenSkel<'obj, Output = Self::Skel<'obj>>;
    type Skel<'obj>: Skel<'obj>;
    /// Opens the embedded object in `storage` with btrace's BTF settings (a `--btf` file
    /// for CO-RE relocations).
    fn open(storage: &mut MaybeUninit<OpenObject>) -> Result<Self::Open<'_>>;
}

/// Declares the [`SkelKind`] of a generated skeleton:
/// `skel_kind!(HistKind, HistSkelBuilder, OpenHistSkel, HistSkel);`.
#[macro_export]
macro_rules! skel_kind {
    ($kind:ident, $builder:ident, $open:ident, $skel:ident) => {
        /// The skeleton's kind, for [`crate::core::skel::Loaded`] and core::lifecycle.
        pub struct $kind;
        impl $crate::core::skel::SkelKind for $kind {
            type Open<'obj> = $open<'obj>;
            type Skel<'obj> = $skel<'obj>;
            fn open(
                storage: &mut std::mem::MaybeUninit<libbpf_rs::OpenObject>,
            ) -> anyhow::Result<$open<'_>> {
                use libbpf_rs::skel::SkelBuilder;
                let mut builder = $builder::default();
                if let Some(p) = $crate::core::system::custom_btf() {
                    builder.obj_builder.btf_custom_path(p)?;
                }
                Ok(builder.open(storage)?)
            }
        }
    };
}

/// A tracer's leaf module in one line: includes the generated skeleton `FILE.skel.rs` as
/// module `generated` (re-exported), declares its [`SkelKind`] and names the loaded
/// object: `skel_leaf!("runq", Runq = RunqKind(RunqSkelBuilder, OpenRunqSkel, RunqSkel));`.
#[macro_export]
macro_rules! skel_leaf {
    ($file:literal, $obj:ident = $kind:ident($builder:ident, $open:ident, $skel:ident)) => {
        #[allow(clippy::all, clippy::undocumented_unsafe_blocks)]
        mod generated {
            include!(concat!(env!("OUT_DIR"), "/", $file, ".skel.rs"));
        }
        pub use generated::*;

        $crate::skel_kind!($kind, $builder, $open, $skel);

        /// A loaded object with its storage.
        pub type $obj = $crate::core::skel::Loaded<$kind>;
    };
}

/// A skeleton with its storage. It derefs to the skeleton for shared use only: maps are
/// read and written and programs attached through `&` (libbpf-rs takes `&self` for those),
/// and without `&mut` no code can move the skeleton away from its storage.
pub struct Loaded<K: SkelKind> {
    skel: ManuallyDrop<K::Skel<'static>>,
    storage: NonNull<MaybeUninit<OpenObject>>,
}

impl<K: SkelKind> Loaded<K> {
    /// Opens, configures and loads a skeleton with `build`, in fresh storage. A failed
    /// build frees the storage at once (the attempt's objects are already closed).
    pub fn new(
        build: impl for<'obj> FnOnce(&'obj mut MaybeUninit<OpenObject>) -> Result<K::Skel<'obj>>,
    ) -> Result<Self> {
        let storage = NonNull::from(Box::leak(Box::new(MaybeUninit::uninit())));
        // SAFETY: a fresh heap allocation nothing else refers to; the borrow handed to
        // `build` is the only one while it runs.
        let built = build(unsafe { &mut *storage.as_ptr() });
        match built {
            Ok(skel) => {
                let skel = ManuallyDrop::new(skel);
                // SAFETY: only the lifetime changes (same type, same layout). The skeleton
                // borrows `storage`, which this value owns and frees after dropping the
                // skeleton (Drop below); the skeleton is never handed out by value or by
                // `&mut`, so it cannot outlive or leave that storage. `build` is generic
                // over the lifetime, so it kept no borrow of the storage elsewhere.
                let skel: K::Skel<'static> = unsafe { std::mem::transmute_copy(&skel) };
                Ok(Loaded {
                    skel: ManuallyDrop::new(skel),
                    storage,
                })
            }
            Err(e) => {
                // SAFETY: from Box::leak above; the failed build's borrow has ended.
                drop(unsafe { Box::from_raw(storage.as_ptr()) });
                Err(e)
            }
        }
    }
}

impl<K: SkelKind> Deref for Loaded<K> {
    type Target = K::Skel<'static>;

    fn deref(&self) -> &Self::Target {
        &self.skel
    }
}

impl<K: SkelKind> Drop for Loaded<K> {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; nothing uses the skeleton afterwards.
        unsafe { ManuallyDrop::drop(&mut self.skel) };
        // SAFETY: from Box::leak in new(); the skeleton that borrowed it is gone.
        drop(unsafe { Box::from_raw(self.storage.as_ptr()) });
    }
}

// SAFETY: the storage is owned exclusively by this value (no other pointer to it exists
// outside the skeleton), so moving both to another thread is as safe as moving the
// skeleton, which the generated code declares Send.
unsafe impl<K: SkelKind> Send for Loaded<K> where K::Skel<'static>: Send {}

/// A plain C value from the bytes a map gave: the section may be shorter than the Rust
/// struct, which pads to its alignment; the rest stays zero.
pub fn plain_prefix<T: plain::Plain + Copy>(bytes: &[u8]) -> T {
    // SAFETY: T is Plain (a C struct of integers): all-zero bytes are a valid value.
    let mut v: T = unsafe { std::mem::zeroed() };
    // SAFETY: T is Plain: any bytes are a valid value, and its bytes are its value.
    let dst = unsafe { plain::as_mut_bytes(&mut v) };
    let n = dst.len().min(bytes.len());
    dst[..n].copy_from_slice(&bytes[..n]);
    v
}

/// Writes a skeleton's whole `.bss` (run-time settings) through the map, which needs no
/// `&mut` of the skeleton; `update` changes a copy of the current contents.
pub fn write_bss<T: plain::Plain + Copy>(
    map: &dyn libbpf_rs::MapCore,
    current: Option<&T>,
    update: impl FnOnce(&mut T),
) -> Result<()> {
    use anyhow::Context;
    let Some(current) = current else {
        anyhow::bail!("the program has no .bss to write");
    };
    let mut v = *current;
    update(&mut v);
    // SAFETY: T is Plain (a C struct of integers), so its bytes are its value.
    let bytes = unsafe { plain::as_bytes(&v) };
    // Rust pads the struct to its alignment; the section may end before that.
    let len = (map.value_size() as usize).min(bytes.len());
    map.update(&0u32.to_ne_bytes(), &bytes[..len], libbpf_rs::MapFlags::ANY)
        .context("writing run-time settings (.bss)")
}
