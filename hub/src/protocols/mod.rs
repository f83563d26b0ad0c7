//! Protocol adapters. Each protocol the hub speaks is one folder here that
//! owns its topics or socket, decodes what arrives into [`Request`]s once (or
//! refuses it), and encodes the hub's replies and events. Everything else —
//! the dispatcher, fair admission, timers, playback, the outbox — takes
//! `Request`s and hands back [`Reply`]s and [`crate::events::Event`]s, and
//! knows no wire format.
//!
//! An adapter is started by its [`Start`] function, listed in [`ALL`]: it
//! registers its [`crate::events::Route`] with the outbox (how its satellites
//! get events and sounds) and returns the [`Adapter`] the hub's loop talks
//! to, if it is configured on. A request it decodes reaches the loop as an
//! [`Inbound`] — an MQTT message it [`Adapter::accept`]s, or one sent on
//! [`Setup::admit`] from a socket of its own — and is admitted under its
//! satellite's key, run when its turn comes ([`run`]) and answered by its
//! [`Job`].
//!
//! Layout:
//! - [`native`] — the hub's own MQTT protocol (`<prefix>/intent/<sat>`)
//! - [`hermes`] — Rhasspy 2.5 satellites over Hermes (MQTT)
//! - [`wyoming`] — Home Assistant's Wyoming, as an intent handler (TCP)
//! - `slots` — slots and entities to `args`, shared by adapters for intent recognizers

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hark_skill_sdk::{ErrorCode, Reply};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::events::Outbox;
use crate::hub::HubError;
use crate::request::{Failure, Known, Rejected, Request};

pub mod hermes;
pub mod native;
mod slots;
pub mod wyoming;

/// Starts one protocol: registers its route, and returns its adapter when
/// the configuration turns it on.
pub type Start = fn(&Setup) -> Result<Option<Arc<dyn Adapter>>, HubError>;

/// Every protocol the hub speaks. Adding one: its folder, its `mod` line
/// above, and its `start` here.
pub const ALL: [Start; 3] = [native::start, hermes::start, wyoming::start];

/// A boxed future an adapter hands the hub to run (an answer being sent).
pub type Sending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What an adapter is started with.
#[derive(Debug)]
pub struct Setup<'a> {
    pub config: &'a Config,
    pub dispatcher: &'a Arc<Dispatcher>,
    pub outbox: &'a Outbox,
    /// Where an adapter with a socket of its own sends the requests it
    /// decodes, to be admitted like any other.
    pub admit: &'a mpsc::Sender<Inbound>,
}

/// A running protocol, as the hub's loop sees it.
pub trait Adapter: Send + Sync + Debug {
    /// The MQTT topic filters it serves, subscribed on every connect.
    fn subscriptions(&self) -> Vec<String> {
        Vec::new()
    }

    /// An MQTT message: one of its own, or not.
    fn accept(&self, _publish: &rumqttc::Publish) -> Accepted {
        Accepted::NotMine
    }

    /// Stops what it runs by itself (a listener and its connections).
    fn stop(&self) {}

    /// Takes up what a reload (SIGHUP) read: mappings, not listeners.
    fn reconfigure(&self, _config: &crate::config::Config) {}
}

/// What became of an MQTT message an adapter was offered.
pub enum Accepted {
    /// Not on a topic it serves.
    NotMine,
    /// Dealt with at once; there may be an answer to send.
    Done(Option<Sending>),
    /// A request, to run in its satellite's turn.
    Request(Inbound),
}

impl Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accepted::NotMine => f.write_str("NotMine"),
            Accepted::Done(answer) => write!(f, "Done(answer: {})", answer.is_some()),
            Accepted::Request(inbound) => f.debug_tuple("Request").field(inbound).finish(),
        }
    }
}

/// A request waiting for admission: the key it is queued under (its
/// satellite), its size in bytes (the queue's memory bound), and the job
/// that decodes, runs and answers it.
#[derive(Debug)]
pub struct Inbound {
    pub key: String,
    pub bytes: usize,
    pub job: Box<dyn Job>,
}

/// One request in its protocol's terms, as the hub's loop holds it.
pub trait Job: Send + Debug {
    /// The request, read now that its turn has come; or what could be read
    /// of it and why it cannot run.
    fn decode(&mut self) -> Result<Request, Box<Rejected>>;

    /// What can be read of it without running it, to refuse it (busy,
    /// shutting down, a bug of the hub's while running it).
    fn known(&mut self) -> Known;

    /// Sends `reply` the way this protocol answers (every request gets one
    /// answer; waits for room).
    fn answer(self: Box<Self>, reply: Reply) -> Sending;
}

/// Decodes and runs `job`'s request and sends its answer. A panic while
/// decoding or running costs this request an `internal` error, not the hub.
pub async fn run(dispatcher: &Dispatcher, mut job: Box<dyn Job>) {
    let handled = crate::panics::caught(async {
        match job.decode() {
            Ok(request) => dispatcher.handle(request).await,
            Err(rejected) => dispatcher.refuse(rejected.known, rejected.failure),
        }
    })
    .await;
    let reply =
        handled.unwrap_or_else(|panic| dispatcher.refuse(job.known(), internal_failure(&panic)));
    job.answer(reply).await;
}

/// Answers `job` without running it, audited; returns the answer to send.
pub fn refuse(dispatcher: &Dispatcher, mut job: Box<dyn Job>, failure: Failure) -> Sending {
    let reply = dispatcher.refuse(job.known(), failure);
    job.answer(reply)
}

/// The answer to a request whose handling panicked: a bug of the hub's,
/// logged here, that costs this request and nothing else.
fn internal_failure(panic: &str) -> Failure {
    tracing::error!("a request hit a bug in the hub and was answered `error`: {panic}");
    Failure::new(
        ErrorCode::Internal,
        format!("the hub hit a bug while handling this request ({panic}); it was logged"),
    )
}

/// Logs the outcome of one request, as every adapter does.
pub fn log_reply(protocol: &str, satellite: &str, reply: &Reply) {
    match &reply.error {
        None => tracing::debug!(protocol, satellite, id = ?reply.id, intent = ?reply.intent, "ok"),
        Some(error) => tracing::info!(
            protocol,
            satellite,
            id = ?reply.id,
            intent = ?reply.intent,
            status = %reply.status,
            code = %error.code,
            "{}",
            error.message
        ),
    }
}
