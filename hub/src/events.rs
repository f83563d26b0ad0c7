//! The hub's way out. Timer and playback [`Event`]s are addressed to a
//! satellite and the [`Protocol`] it spoke; the [`Outbox`] hands each to that
//! protocol's [`Route`], which the protocol's adapter registered and which
//! alone knows its wire format. MQTT messages (an adapter's answers, a
//! skill's publish, the hub's status) are queued on one bounded channel that
//! the MQTT link drains.
//!
//! Skills and services never touch the MQTT client or a socket; they hand an
//! event to the outbox, which is cheap to clone and never blocks the caller
//! for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hark_skill_sdk::Reply;
use hark_skills_builtin::EffectError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::audio::Clip;

/// The protocol a satellite spoke when it asked, so its answers and later
/// events (a timer ringing) go back in kind: the name its adapter registers
/// (`native`, `hermes`, `wyoming`), as audited and as saved with a timer.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocol(&'static str);

impl Protocol {
    /// The hub's own MQTT protocol (docs/protocol.md §2–§6).
    pub const NATIVE: Protocol = Protocol("native");

    pub const fn new(name: &'static str) -> Protocol {
        Protocol(name)
    }

    pub fn name(self) -> &'static str {
        self.0
    }

    /// The protocol of this name, for one read back from disk. Names are
    /// kept once each, for the life of the process.
    fn named(name: &str) -> Protocol {
        static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
        if name == Protocol::NATIVE.0 {
            return Protocol::NATIVE;
        }
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = names.iter().find(|n| **n == name) {
            return Protocol(known);
        }
        let kept: &'static str = Box::leak(name.to_string().into_boxed_str());
        names.push(kept);
        Protocol(kept)
    }
}

impl Default for Protocol {
    fn default() -> Protocol {
        Protocol::NATIVE
    }
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Protocol, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(serde::de::Error::custom(format!(
                "{name:?} is not a protocol name"
            )));
        }
        Ok(Protocol::named(&name))
    }
}

/// A timer or playback event for one satellite. `body` is the event as the
/// native protocol publishes it (`{"event": "timer_started", ...}`,
/// docs/protocol.md §6); other protocols translate it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub satellite: String,
    pub protocol: Protocol,
    pub body: Value,
}

impl Event {
    pub fn new(satellite: &str, protocol: Protocol, body: Value) -> Event {
        Event {
            satellite: satellite.to_string(),
            protocol,
            body,
        }
    }

    /// The `event` field: `timer_started`, `playback_stopped`, ...
    pub fn kind(&self) -> &str {
        self.body.get("event").and_then(Value::as_str).unwrap_or("")
    }
}

/// One MQTT message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// How a satellite's speaker gets a sound the hub tells it to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SatelliteSound {
    /// The satellite plays it by name itself (the `playback_started` event says which).
    ByName,
    /// The hub sends the sound itself ([`Route::send_sound`]), rendered at
    /// this rate; the playback counts as playing until the satellite says it
    /// is done, or until `grace` after the clip's length.
    Sent { sample_rate: u32, grace: Duration },
}

/// How one protocol reaches its satellites: registered by its adapter, used
/// by the outbox and the playback service, which know no wire format.
pub trait Route: Send + Sync + std::fmt::Debug {
    /// Sends `event` in this protocol's form, or drops it when the protocol
    /// has none (or the satellite cannot be reached). Never waits: events
    /// are advisory.
    fn event(&self, event: &Event, outbox: &Outbox);

    /// Shows `timers`, the satellite's whole list of timers (a JSON array,
    /// serialized once for every route; `[]` when it has none), wherever
    /// this protocol keeps it; the native protocol retains it on
    /// `<prefix>/timers/<sat>`. Most have no such place.
    fn timers(&self, _satellite: &str, _timers: &[u8], _outbox: &Outbox) {}

    /// Sends a reply that no request is waiting for: the late answer to a
    /// request asked earlier (a question of a sensitive skill that expired
    /// unanswered), addressed by that request's id. Dropped where the
    /// protocol has no way to say it (the default).
    fn reply(&self, _satellite: &str, _reply: &Reply, _outbox: &Outbox) {}

    fn satellite_sound(&self) -> SatelliteSound {
        SatelliteSound::ByName
    }

    /// Sends `clip` to the satellite's speaker as playback `id`
    /// (only for [`SatelliteSound::Sent`]).
    fn send_sound(
        &self,
        _satellite: &str,
        _id: &str,
        _sound: &str,
        _clip: &Clip,
        _outbox: &Outbox,
    ) -> Result<(), EffectError> {
        Ok(())
    }
}

type Routes = HashMap<Protocol, Arc<dyn Route>>;

#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    routes: Arc<RwLock<Routes>>,
}

impl Outbox {
    /// An outbox and the receiving end the MQTT link drains. It has no
    /// routes yet: each protocol's adapter registers its own.
    pub fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        let outbox = Outbox {
            tx,
            routes: Arc::default(),
        };
        (outbox, rx)
    }

    /// Events for `protocol`'s satellites go to `route` from now on.
    pub fn add_route(&self, protocol: Protocol, route: Arc<dyn Route>) {
        self.routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(protocol, route);
    }

    pub fn route(&self, protocol: Protocol) -> Option<Arc<dyn Route>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&protocol)
            .cloned()
    }

    /// Hands an event to its protocol's route without waiting (events are
    /// advisory, answers are not).
    pub fn event(&self, event: Event) {
        match self.route(event.protocol) {
            Some(route) => route.event(&event, self),
            None => tracing::debug!(satellite = %event.satellite, protocol = %event.protocol,
                event = event.kind(), "no route for this protocol; event not sent"),
        }
    }

    /// Hands a late reply to its protocol's route ([`Route::reply`]).
    pub fn reply(&self, protocol: Protocol, satellite: &str, reply: &Reply) {
        match self.route(protocol) {
            Some(route) => route.reply(satellite, reply, self),
            None => {
                tracing::debug!(satellite, %protocol, "no route for this protocol; reply not sent")
            }
        }
    }

    /// Hands a satellite's current list of timers to every protocol's
    /// route, whichever protocol set them: a dashboard watches a satellite,
    /// not the protocol it speaks.
    pub fn timers(&self, satellite: &str, timers: &[u8]) {
        let routes: Vec<Arc<dyn Route>> = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for route in routes {
            route.timers(satellite, timers, self);
        }
    }

    /// Queues an MQTT event message without waiting; a full queue drops it
    /// with a warning.
    pub fn publish_event(&self, satellite: &str, message: Message) {
        if let Err(e) = self.tx.try_send(message) {
            tracing::warn!(satellite, "event dropped: {e}");
        }
    }

    /// Queues a message without waiting; gives it back when the queue is full.
    pub fn try_send(&self, message: Message) -> Result<(), Box<Message>> {
        self.tx
            .try_send(message)
            .map_err(|e| Box::new(e.into_inner()))
    }

    /// Queues a message, waiting for room (answers: every request gets one).
    pub async fn send(&self, message: Message) {
        if self.tx.send(message).await.is_err() {
            tracing::warn!("outbox closed; message not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_saved_by_name_and_read_back_as_the_same() {
        let native = serde_json::to_value(Protocol::NATIVE).unwrap();
        assert_eq!(native, "native");
        assert_eq!(
            serde_json::from_value::<Protocol>(native).unwrap(),
            Protocol::NATIVE
        );
        let hermes: Protocol = serde_json::from_str("\"hermes\"").unwrap();
        assert_eq!(hermes, Protocol::new("hermes"));
        assert_eq!(
            serde_json::from_str::<Protocol>("\"hermes\"").unwrap(),
            hermes
        );
        assert!(serde_json::from_str::<Protocol>("\"Bad Name\"").is_err());
        assert!(serde_json::from_str::<Protocol>("\"\"").is_err());
    }

    #[derive(Debug)]
    struct Collect(Mutex<Vec<Event>>);
    impl Route for Collect {
        fn event(&self, event: &Event, _: &Outbox) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    #[test]
    fn an_event_goes_to_its_protocols_route_and_nowhere_else() {
        let (outbox, mut rx) = Outbox::channel(4);
        let route = Arc::new(Collect(Mutex::default()));
        let other = Protocol::new("other");
        outbox.add_route(other, route.clone());
        let event = Event::new(
            "kitchen",
            other,
            serde_json::json!({"event": "timer_started"}),
        );
        outbox.event(event.clone());
        outbox.event(Event::new("hall", Protocol::NATIVE, serde_json::json!({})));
        assert_eq!(*route.0.lock().unwrap(), [event]);
        assert!(rx.try_recv().is_err(), "no route, nothing sent");
    }
}
