// SPDX-License-Identifier: Apache-2.0
//! The dashboard's probe groups: every tracer of the registry that can be kept loaded,
//! loaded once and owned for the dashboard's whole life, switched off and on by dropping
//! and re-creating their links (the programs really stop running; they stay loaded, so a
//! toggle costs no reload and leaks nothing).

use std::os::fd::BorrowedFd;

use anyhow::Result;

use crate::core::losses::Losses;
use crate::core::runstats::{self, ProgRunTime};
use crate::tracers::{LiveFilter, LoadConfig, Sample, Tracer, REGISTRY};

/// One group: a tracer of the registry, loaded or with the reason it could not be.
pub struct Group {
    pub name: &'static str,
    /// The key that toggles it ('1', '2', ...: registry order).
    pub key: char,
    pub tracer: Option<Box<dyn Tracer>>,
    /// Why the group could not be loaded, if it could not.
    pub unavailable: Option<String>,
}

impl Group {
    pub fn attached(&self) -> bool {
        self.tracer.as_ref().is_some_and(|t| t.attached())
    }

    pub fn hook(&self) -> String {
        self.tracer.as_ref().map(|t| t.hook()).unwrap_or_default()
    }

    fn programs(&self) -> Vec<BorrowedFd<'_>> {
        self.tracer
            .as_ref()
            .map(|t| t.programs())
            .unwrap_or_default()
    }

    /// Number of programs the group has loaded.
    pub fn program_count(&self) -> usize {
        self.programs().len()
    }

    /// Attached programs (links).
    pub fn link_count(&self) -> usize {
        if self.attached() {
            self.program_count()
        } else {
            0
        }
    }

    /// The group's programs' run-time counters, summed (zero for an unloaded group).
    pub fn run_time(&self) -> Result<ProgRunTime> {
        let mut sum = ProgRunTime::default();
        for fd in self.programs() {
            sum.add(&runstats::prog_run_time(fd)?);
        }
        Ok(sum)
    }

    /// The group's kernel-counted losses (zero for an unloaded group).
    pub fn losses(&self) -> Result<Losses> {
        match &self.tracer {
            Some(t) => t.losses(),
            None => Ok(Losses::default()),
        }
    }
}

pub struct Groups {
    pub groups: Vec<Group>,
    filter: LiveFilter,
}

impl Groups {
    /// Loads and attaches every group, filtered from its first event on. The first group
    /// (syscalls) must load; the others are shown as unavailable, with the reason, when
    /// this kernel refuses them.
    pub fn load(filter: LiveFilter) -> Result<Groups> {
        let mut groups = Vec::new();
        let cfg = LoadConfig {
            filter: filter.clone(),
            ..Default::default()
        };
        for (i, entry) in REGISTRY.iter().filter(|e| e.load.is_some()).enumerate() {
            let load = entry.load.expect("filtered on load");
            let key = char::from_digit(i as u32 + 1, 10).unwrap_or('?');
            match load(&cfg) {
                Ok(t) => groups.push(Group {
                    name: entry.name,
                    key,
                    tracer: Some(t),
                    unavailable: None,
                }),
                Err(e) if i == 0 => return Err(e),
                Err(e) => groups.push(Group {
                    name: entry.name,
                    key,
                    tracer: None,
                    unavailable: Some(format!("{e:#}")),
                }),
            }
        }
        Ok(Groups::from_groups(groups, filter))
    }

    /// Groups already loaded (with `filter` applied), or scripted ones in unit tests.
    pub fn from_groups(groups: Vec<Group>, filter: LiveFilter) -> Groups {
        Groups { groups, filter }
    }

    pub fn get(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn by_key(&self, key: char) -> Option<&Group> {
        self.groups.iter().find(|g| g.key == key)
    }

    /// Detaches an attached group, re-attaches a detached one.
    pub fn toggle(&mut self, key: char) -> Result<()> {
        let Some(t) = self
            .groups
            .iter_mut()
            .find(|g| g.key == key)
            .and_then(|g| g.tracer.as_mut())
        else {
            return Ok(());
        };
        if t.attached() {
            t.detach();
            Ok(())
        } else {
            t.attach()
        }
    }

    pub fn filter(&self) -> &LiveFilter {
        &self.filter
    }

    /// Sets the run-time filter of every group.
    pub fn set_filter(&mut self, filter: LiveFilter) -> Result<()> {
        for t in self.groups.iter_mut().filter_map(|g| g.tracer.as_mut()) {
            t.set_filter(&filter)?;
        }
        self.filter = filter;
        Ok(())
    }

    /// Samples every loaded group, by name.
    pub fn sample(&mut self) -> Result<Vec<(&'static str, Sample)>> {
        let mut out = Vec::new();
        for g in &mut self.groups {
            if let Some(t) = g.tracer.as_mut() {
                out.push((g.name, t.sample()?));
            }
        }
        Ok(out)
    }

    /// The events streaming tracers sent since the last call (read often, so their ring
    /// buffers never fill between samples).
    pub fn drain(&mut self) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        for t in self.groups.iter_mut().filter_map(|g| g.tracer.as_mut()) {
            if let Some(s) = t.events()? {
                out.push(s);
            }
        }
        Ok(out)
    }
}
