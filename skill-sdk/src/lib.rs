//! The Hark skill SDK, and the types the hub and its skills share.
//!
//! A skill (built-in or WebAssembly) is described by a [`Manifest`], receives
//! an [`Intent`] whose `args` the hub has already validated against the
//! manifest's schema, and answers with a [`SkillReply`]. The hub wraps that into
//! the wire [`Reply`] a satellite sees. One definition of each, used by both
//! sides, so the hub and the skills cannot drift apart.
//!
//! The crate is `no_std` + `alloc` so the same types compile into a
//! `wasm32-unknown-unknown` skill; the `std` feature adds `std::error::Error`
//! impls for the hub.
//!
//! Layout:
//! - [`manifest`] — manifests, permissions and their risk, name rules
//! - [`wire`] — intent, reply, status, error bodies

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod manifest;
pub mod wire;

pub use manifest::{Limits, Manifest, ManifestProblem, Permission, Risk};
pub use wire::{ErrorBody, Intent, Reply, SkillReply, Status, Violation};

/// The sandbox ABI version this SDK speaks (SPEC §5).
pub const ABI_VERSION: u32 = 1;
