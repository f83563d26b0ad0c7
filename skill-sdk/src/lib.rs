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
//! - [`abi`] — ABI 1: imports, exports, status codes
//! - [`host`] — the host functions, each raw import above its safe wrapper;
//!   [`host::http`] the typed requests, responses and errors of `net.http`
//! - [`de`] — the small JSON reader that turns the intent into the author's types
//! - [`guest`] — what `hark_alloc`/`hark_handle` do; allocator and panic handler
//! - [`hark_skill!`] — the entry macro
//! - [`manifest`] — manifests, permissions and their risk, name rules
//! - [`wire`] — intent, reply, status, error bodies

#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod abi;
pub mod de;
pub mod guest;
pub mod host;
mod macros;
pub mod manifest;
pub mod wire;

/// What a skill usually needs: `use hark_skill_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::guest::{Request, SkillError, to_data};
    pub use crate::hark_skill;
    pub use crate::host::{self, HostError, Level, Target, http, kv, timer};
    pub use crate::wire::SkillReply;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
}

pub use manifest::{Limits, Manifest, ManifestProblem, Permission, Risk};
pub use wire::{ConfirmBody, ErrorBody, ErrorCode, Intent, Reply, SkillReply, Status, Violation};

/// The sandbox ABI version this SDK speaks (SPEC §5).
pub const ABI_VERSION: u32 = 1;
