//! Hark, a voice-assistant hub for Raspberry-Pi-class boards.
//!
//! Satellites publish intents on `<prefix>/intent/<sat>`. The MQTT loop
//! ([`hub`]) hands each payload to the [`dispatch`] pipeline on its own task:
//! parse, look up the skill in the [`registry`], ask the [`policy`] gate,
//! validate `args` against the skill's schema, run it, append an [`audit`]
//! record, and queue exactly one reply through the [`events`] outbox. Skills
//! act through [`host`]: [`timers`] (persisted, ringing on time after a
//! restart) and [`playback`] (the hub's speaker via [`audio`]).
//!
//! Layout:
//! - [`config`] — `hark.toml`, parsed then validated
//! - [`hub`] — assembly, the MQTT loop, shutdown
//! - [`admission`], [`fair`] — requests waiting and running, fair among satellites
//! - [`mqtt`] — client options, backoff, [`mqtt::topics`]
//! - `broker`: the embedded rumqttd (feature `embedded-broker`)
//! - [`dispatch`] — request -> reply, the one pipeline
//! - [`registry`] — skills with their manifests and compiled schemas
//! - [`policy`] — tiers, permissions, grants; pure decisions
//! - [`host`], [`timers`], [`playback`], [`inflight`]: what skills act on
//! - [`audio`] — sounds, WAV files, cpal or null output
//! - [`sandbox`] — WebAssembly skills in wasmi: limits, host functions, workers
//! - [`loader`], [`signing`] — skill folders from `skills.dir`, and their signatures
//! - [`audit`] — the hash-chained log and its verifier
//! - [`events`] — replies and events on their way to MQTT
//! - [`hermes`] — Rhasspy satellites over Hermes, in front of the same dispatcher
//! - [`cli`] — the commands besides `run`
//! - [`os`] — the open-files limit, raised at start
//! - [`panics`] — a panic on the request path answers `error`, not an abort
//! - [`logging`] — the text log's escaping field formatter

pub mod admission;
pub mod audio;
pub mod audit;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod events;
pub mod fair;
pub mod fsutil;
pub mod hermes;
pub mod host;
pub mod hub;
pub mod inflight;
pub mod loader;
pub mod logging;
pub mod mqtt;
pub mod os;
pub mod panics;
pub mod playback;
pub mod policy;
pub mod registry;
pub mod sandbox;
pub mod signing;
pub mod timers;

pub use config::Config;
pub use hub::{HubError, run};
