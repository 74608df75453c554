// SPDX-License-Identifier: Apache-2.0
//! The one lifecycle every tracer goes through: open -> configure -> load -> attach with
//! fallback -> detach.
//!
//! A tracer declares only what is its own ([`Declaration`]): its skeleton, the settings
//! it writes before load, its ways (the hooks and stores it can run with, cheapest first)
//! and which programs and maps each way uses, and its hooks when it attaches them itself.
//! This module does the rest, in this order, for every tracer:
//!
//! 1. [`Declaration::prepare`] (e.g. tracefs for classic tracepoints), then open the
//!    object (with a `--btf` file where given: [`SkelKind::open`]);
//! 2. the scope filter, found by name in the object ([`Scope::configure`]), the
//!    double-buffered stack tables ([`Declaration::stack_tables`]), then the tracer's own
//!    settings ([`Declaration::configure`]);
//! 3. the kernel-memory check of the maps as sized (core::kmem), before anything loads;
//! 4. load, then the scope's maps ([`Scope::install`]), then [`Declaration::loaded`]
//!    (run-time filters that must be set before the first event);
//! 5. attach: the tracer's hooks and the scope's tree programs ([`Tree`]), then the
//!    process tree is seeded ([`Scope::seed`]);
//! 6. fallback: [`load_first`] tries each way in turn (core::attach::first_that_works);
//!    a failed way leaves nothing behind;
//! 7. detach: dropping the [`Links`] detaches, many at once (core::attach::detach_all).

use std::fmt::Display;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel as _};
use libbpf_rs::{OpenMapMut, OpenObject};

use crate::core::attach::{self, Links};
use crate::core::kmem::Driver;
use crate::core::scope::Scope;
use crate::core::skel::{Loaded, SkelKind};

/// An open skeleton of a declaration's kind.
pub type Open<'obj, D> = <<D as Declaration>::Kind as SkelKind>::Open<'obj>;
/// A loaded skeleton of a declaration's kind.
pub type Skel<'obj, D> = <<D as Declaration>::Kind as SkelKind>::Skel<'obj>;

/// How the scope's tree-keeping programs are attached beside the tracer's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tree {
    /// Every program left to autoload is attached, in the object's order: the tracer's
    /// hooks and the tree's alike ([`Declaration::hooks`] is not called).
    WithLoaded,
    /// The tree's first, so the process tree is kept from before the first traced event;
    /// then the process tracking of stack tables ([`Declaration::stack_tables`]); then
    /// [`Declaration::hooks`].
    First,
    /// [`Declaration::hooks`] first, then the tree's (tracepoint: a user's program on a
    /// tracepoint the tree's programs also use must run before them).
    Last,
}

/// What a tracer declares; [`open_load`], [`attach()`], [`load_way`] and [`load_first`]
/// drive it.
pub trait Declaration {
    /// The generated skeleton.
    type Kind: SkelKind;
    /// One way to run (hooks, stores), as tried in order; what [`Declaration::configure`]
    /// and [`Declaration::hooks`] choose programs and maps by.
    type Way: Copy;
    /// The maps whose sizes a flag sets, named in the kernel-memory check (core::kmem).
    const DRIVERS: &'static [Driver];
    /// How the scope's tree programs are attached.
    const TREE: Tree = Tree::WithLoaded;

    /// The scope the run records.
    fn scope(&self) -> &Scope;
    /// Whether the scope's tree programs of `way` go on raw_tp (else on classic
    /// tracepoints: a way that must not depend on raw_tp).
    fn tree_on_raw_tp(&self, _way: Self::Way) -> bool {
        true
    }
    /// The double-buffered stack tables (stack_tables.h), if the object has them:
    /// (stacks, counts) in each buffer. Such an object also tracks processes
    /// (stack_procs.h), whose programs [`Tree::First`] attaches after the tree's.
    fn stack_tables(&self) -> Option<(u32, u32)> {
        None
    }
    /// Checks and set-up before the object is opened (tracefs, a tracepoint's presence).
    fn prepare(&self, _way: Self::Way) -> Result<()> {
        Ok(())
    }
    /// The tracer's load-time settings for `way`: rodata, map sizes, which programs load.
    fn configure(&self, way: Self::Way, open: &mut Open<'_, Self>) -> Result<()>;
    /// After load, before anything is attached: run-time settings the first event must
    /// already see.
    fn loaded(&self, _way: Self::Way, _skel: &Skel<'_, Self>) -> Result<()> {
        Ok(())
    }
    /// Attaches the tracer's own hooks of `way` into `links` (with [`Tree::First`] or
    /// [`Tree::Last`]).
    fn hooks(&self, _way: Self::Way, _skel: &Skel<'_, Self>, _links: &mut Links) -> Result<()> {
        Ok(())
    }
}

/// Opens, configures and loads one way, without attaching anything.
pub fn open_load<D: Declaration>(decl: &D, way: D::Way) -> Result<Loaded<D::Kind>> {
    decl.prepare(way)?;
    let scope = decl.scope();
    let skel = Loaded::<D::Kind>::new(|storage| {
        let mut open = D::Kind::open(storage)?;
        scope.configure(open.open_object_mut(), decl.tree_on_raw_tp(way))?;
        if let Some((stacks, counts)) = decl.stack_tables() {
            size_stack_tables(open.open_object_mut(), stacks, counts)?;
        }
        decl.configure(way, &mut open)?;
        crate::core::kmem::check(open.open_object(), D::DRIVERS)?;
        let skel = open.load()?;
        scope.install_in(skel.object())?;
        Ok(skel)
    })?;
    decl.loaded(way, &skel)?;
    Ok(skel)
}

/// Attaches a loaded way: the tracer's hooks and the scope's tree programs, in the order
/// [`Declaration::TREE`] says, then seeds the process tree.
pub fn attach<D: Declaration>(decl: &D, way: D::Way, skel: &Loaded<D::Kind>) -> Result<Links> {
    let obj = skel.object();
    let links = match D::TREE {
        Tree::WithLoaded => attach::attach_loaded(obj)?,
        Tree::First => {
            let mut links = Links::new(crate::core::scope::attach_tree(obj)?);
            if decl.stack_tables().is_some() {
                attach_stack_procs(obj, &mut links)?;
            }
            decl.hooks(way, skel, &mut links)?;
            links
        }
        Tree::Last => {
            let mut links = Links::default();
            decl.hooks(way, skel, &mut links)?;
            links.append(Links::new(crate::core::scope::attach_tree(obj)?));
            links
        }
    };
    decl.scope().seed_in(obj)?;
    Ok(links)
}

/// Opens, configures, loads and attaches one way.
pub fn load_way<D: Declaration>(decl: &D, way: D::Way) -> Result<(Loaded<D::Kind>, Links)> {
    let skel = open_load(decl, way)?;
    let links = attach(decl, way, &skel)?;
    Ok((skel, links))
}

/// Loads and attaches the first of `ways` this kernel accepts; the error names every way
/// and why it failed.
pub fn load_first<D: Declaration>(
    decl: &D,
    ways: &[D::Way],
) -> Result<(D::Way, Loaded<D::Kind>, Links)>
where
    D::Way: Display,
{
    let (way, (skel, links)) = attach::first_that_works(ways, |way| load_way(decl, way))?;
    Ok((way, skel, links))
}

/// The profilers' process tracking (stack_procs.h: `procs_exec`, `procs_exit`), attached
/// before their samples so a process's user stacks are read against the right maps.
fn attach_stack_procs(obj: &libbpf_rs::Object, links: &mut Links) -> Result<()> {
    for name in ["procs_exec", "procs_exit"] {
        let prog = obj
            .progs_mut()
            .find(|p| p.name() == name)
            .with_context(|| format!("the object has no program {name}"))?;
        links.push(prog.attach().with_context(|| format!("attaching {name}"))?);
    }
    Ok(())
}

/// A map of an open object, by name: for settings of maps a shared header declares.
pub fn open_map<'o>(open: &'o mut OpenObject, name: &str) -> Result<OpenMapMut<'o>> {
    open.maps_mut()
        .find(|m| m.name() == name)
        .with_context(|| format!("the object has no map {name}"))
}

/// Sizes the double-buffered tables of stack_tables.h, found by name: `stacks` stacks and
/// `counts` counts in each buffer.
fn size_stack_tables(open: &mut OpenObject, stacks: u32, counts: u32) -> Result<()> {
    let mut sized = 0;
    for mut m in open.maps_mut() {
        let entries = match m.name().to_str() {
            Some("stacks0" | "stacks1") => stacks,
            Some("counts0" | "counts1") => counts,
            _ => continue,
        };
        m.set_max_entries(entries)?;
        sized += 1;
    }
    if sized != 4 {
        anyhow::bail!("the object does not have stack_tables.h's four tables");
    }
    Ok(())
}
