// SPDX-License-Identifier: Apache-2.0
//! Load-time settings (`const volatile` globals, the `.rodata` section) written by name,
//! for settings every object shares through a header (the scope filter's): each
//! skeleton generates its own Rust type for its section, so code shared by all of them
//! finds the variables in the object's BTF instead.

use std::ptr::NonNull;

use anyhow::{bail, Context, Result};
use libbpf_rs::btf::types::DataSec;
use libbpf_rs::btf::{Btf, BtfType};
use libbpf_rs::{AsRawLibbpf, OpenObject};

/// Writes each `(name, bytes)` into the open object's `.rodata`, before load; a variable
/// that is missing, or whose size differs from its bytes, is an error (a header and its
/// Rust writer out of step).
pub fn write(open: &mut OpenObject, vars: &[(&str, &[u8])]) -> Result<()> {
    let places = {
        let raw: NonNull<libbpf_sys::bpf_object> = open.as_libbpf_object();
        // SAFETY: the pointer is the open object's, valid while `open` is borrowed here;
        // the BTF read through it is dropped before `open` is borrowed mutably below.
        let btf =
            Btf::from_bpf_object(unsafe { raw.as_ref() })?.context("the object has no BTF")?;
        let sec: DataSec<'_> = btf
            .type_by_name(".rodata")
            .context("the object has no .rodata section")?;
        vars.iter()
            .map(|(name, bytes)| {
                let var = sec
                    .iter()
                    .find(|v| {
                        btf.type_by_id::<BtfType<'_>>(v.ty)
                            .and_then(|t| t.name())
                            .is_some_and(|n| n == *name)
                    })
                    .with_context(|| format!("the object has no load-time setting {name}"))?;
                if var.size != bytes.len() {
                    bail!(
                        "load-time setting {name} is {} bytes in the object, {} written",
                        var.size,
                        bytes.len()
                    );
                }
                Ok(var.offset as usize)
            })
            .collect::<Result<Vec<usize>>>()?
    };
    let mut rodata = open
        .maps_mut()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .context("the object has no .rodata map")?;
    let data = rodata
        .initial_value_mut()
        .context("the .rodata map has no initial value")?;
    for ((name, bytes), off) in vars.iter().zip(places) {
        data.get_mut(off..off + bytes.len())
            .with_context(|| format!("load-time setting {name} lies beyond .rodata"))?
            .copy_from_slice(bytes);
    }
    Ok(())
}

/// An open skeleton's typed read-only data, to set before load. Every btrace program has
/// load-time settings (at least the scope's), so a skeleton without them is a build
/// mistake, not a run-time condition.
pub fn typed<'a, T>(rodata: &'a mut Option<&mut T>) -> &'a mut T {
    rodata
        .as_deref_mut()
        .expect("every btrace program has rodata")
}
