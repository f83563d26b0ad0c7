//! Home Assistant's Wyoming protocol, as an intent handler
//! (`wyoming.listen`): JSON-line events over TCP, answered through the same
//! admission, dispatcher, policy gate and audit log as every protocol.
//!
//! A client sends `describe` and gets `info` advertising one `handle`
//! program whose models are the intents the hub answers; it sends `intent`
//! (`name`, `entities`) and gets `handled {text}` or `not-handled {text}`.
//! An event the hub cannot read gets `error {text, code}`, is audited, and
//! the connection goes on. Timer and playback events have no form on a
//! handler's connection and are not sent.
//!
//! Layout:
//! - [`config`] — `[wyoming]` in `hark.toml`
//! - [`event`] — the framing: header line, data bytes, payload (bounded)
//! - [`mapping`] — `intent` -> request, reply -> `handled` / `not-handled`, `info`
//! - `server` — the listener, its connections, and their requests' jobs

use std::sync::{Arc, Mutex};

use crate::events::{Event, Outbox, Protocol, Route};
use crate::hub::HubError;

use super::Setup;

pub(crate) mod config;
pub(crate) mod event;
pub(crate) mod mapping;
mod server;

pub use server::MAX_CONNECTIONS;

pub const PROTOCOL: Protocol = Protocol::new("wyoming");

/// Registers the Wyoming route and, when `wyoming.listen` is set, listens.
pub fn start(setup: &Setup) -> Result<Option<Arc<dyn super::Adapter>>, HubError> {
    setup.outbox.add_route(PROTOCOL, Arc::new(Events));
    let Some(addr) = setup.config.wyoming.listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| HubError::Listen {
            what: "wyoming.listen",
            addr,
            source,
        })?;
    tracing::info!(%addr, "serving Wyoming intent handling");
    let shared = Arc::new(server::Shared {
        dispatcher: setup.dispatcher.clone(),
        admit: setup.admit.clone(),
        settings: tokio::sync::watch::Sender::new(Arc::new(setup.config.wyoming.clone())),
        refusals: std::sync::Mutex::new(crate::satellites::gate::Window::new(
            std::time::Duration::from_secs(60),
        )),
        max_payload: setup.config.mqtt.max_payload,
        next_id: Default::default(),
    });
    let task = tokio::spawn(server::listen(listener, shared.clone()));
    Ok(Some(Arc::new(Wyoming {
        task: Mutex::new(Some(task)),
        shared,
    })))
}

/// The running listener.
#[derive(Debug)]
struct Wyoming {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    shared: Arc<server::Shared>,
}

impl super::Adapter for Wyoming {
    /// Intents, `satellite` and `allow` from the next event on; a
    /// connection `allow` no longer names is closed.
    fn reconfigure(&self, config: &crate::config::Config) {
        self.shared
            .settings
            .send_replace(Arc::new(config.wyoming.clone()));
    }

    /// Closes the listener and every connection.
    fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// A handler's connection carries answers only: events are not sent.
#[derive(Debug)]
struct Events;

impl Route for Events {
    fn event(&self, event: &Event, _outbox: &Outbox) {
        tracing::debug!(satellite = %event.satellite, event = event.kind(),
            "no Wyoming form for this event; not sent");
    }
}
