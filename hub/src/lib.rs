//! Hark, a voice-assistant hub for Raspberry-Pi-class boards.
//!
//! Satellites speak one of the [`protocols`]: the native MQTT protocol
//! (intents on `<prefix>/intent/<sat>`), Rhasspy's Hermes, or Home
//! Assistant's Wyoming. Each protocol's adapter decodes what arrives once into
//! a [`request::Request`]; the loop ([`hub`]) admits it fairly among
//! satellites and runs the [`dispatch`] pipeline on its own task: look up the
//! skill in the [`registry`], ask the [`policy`] gate, validate `args`
//! against the skill's schema, run it, append an [`audit`] record, and hand
//! exactly one reply back to the adapter to encode. Every effect a skill
//! causes, built-in (through [`builtin_host`]) or sandboxed, is one function of
//! [`effects`], which asks the policy gate first: [`timers`] (persisted,
//! ringing on time after a restart), [`playback`] (the hub's speaker via
//! [`audio`]), publishing, a skill's store, secrets. Events leave through the
//! [`events`] outbox, which hands each to its protocol's adapter.
//!
//! Layout:
//! - [`config`] — `hark.toml`, parsed then validated
//! - [`hub`] — assembly, the MQTT loop, shutdown
//! - [`protocols`] — one adapter per protocol: native, Hermes, Wyoming
//! - [`request`] — the typed request every adapter decodes into, and failures
//! - [`admission`], [`fair`] — requests waiting and running, fair among satellites
//! - [`mqtt`] — the broker link: client options, backoff, packet limits
//! - `broker`: the embedded MQTT broker (mqtt5) and its gate (feature `embedded-broker`)
//! - [`dispatch`] — request -> reply, the one pipeline
//! - [`registry`] — skills with their facts and compiled schemas, a plain container
//! - [`policy`] — tiers, permissions, grants; pure decisions
//! - [`effects`] — every effect a skill can cause, each behind the gate; kv, secrets
//! - [`builtin_host`] — the built-in skills' way to the effects
//! - [`timers`], [`playback`], [`inflight`]: what effects act on
//! - [`http`] — brokered HTTP for `net.http` skills: the granted origin only, within the call's deadline
//! - [`audio`] — sounds, WAV files, cpal or null output
//! - [`sandbox`] — WebAssembly skills in wasmi: limits, host functions, workers
//! - [`loader`], [`signing`] — fills the registry: built-ins, then `skills.dir`, signatures
//! - [`audit`] — the hash-chained log and its verifier
//! - [`events`] — the outbox: events routed to their protocol, MQTT messages queued
//! - [`cli`] — the commands besides `run`
//! - [`os`] — the open-files limit, raised at start
//! - [`panics`] — a panic on the request path answers `error`, not an abort
//! - [`logging`] — the text log's escaping field formatter
//! - [`metrics`] — counters and histograms; Prometheus text and retained JSON

mod admission;
mod audio;
pub mod audit;
#[cfg(feature = "embedded-broker")]
pub mod broker;
mod builtin_host;
pub mod cli;
pub mod config;
pub mod confirm;
mod dispatch;
pub mod effects;
pub mod events;
mod fair;
mod fsutil;
pub mod http;
pub mod hub;
pub mod inflight;
mod loader;
pub mod logging;
pub mod metrics;
mod mqtt;
pub mod os;
mod panics;
mod playback;
mod policy;
pub mod protocols;
pub mod registry;
mod request;
pub mod sandbox;
pub mod satellites;
pub mod signing;
mod systemd;
pub mod timers;

pub use config::Config;
pub use hub::{HubError, run};
