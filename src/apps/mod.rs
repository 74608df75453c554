// SPDX-License-Identifier: Apache-2.0
//! Programs built from several tracers or from none: the dashboard (`top`), `doctor`,
//! `verifier`, and the bench-only floor programs.

pub mod doctor;
#[cfg(feature = "testing")]
pub mod floor;
pub mod serve;
pub mod top;
pub mod verifier;
