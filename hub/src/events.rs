//! The hub's way out: replies and events addressed to a satellite, turned into
//! MQTT messages for the protocol that satellite speaks, and queued on one
//! bounded channel that the MQTT link drains.
//!
//! Skills and services never touch the MQTT client; they hand an [`Event`] or
//! a reply to the [`Outbox`], which is cheap to clone and never blocks the
//! caller for long.

use hark_skill_sdk::Reply;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::mqtt::topics::Topics;

/// The protocol a satellite spoke when it asked, so its answers and later
/// events (a timer ringing) go back in kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Native,
    Hermes,
}

/// A timer or playback event for one satellite.
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
}

/// One MQTT message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    topics: Topics,
}

impl Outbox {
    /// An outbox and the receiving end the MQTT link drains.
    pub fn channel(topics: Topics, capacity: usize) -> (Outbox, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Outbox { tx, topics }, rx)
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Queues an event without waiting; a full queue drops it with a warning
    /// (events are advisory, replies are not). A native satellite gets it on
    /// `<prefix>/event/<sat>`; a Hermes satellite gets its Hermes form, if it
    /// has one ([`crate::hermes::event_message`]).
    pub fn event(&self, event: Event) {
        let message = match event.protocol {
            Protocol::Native => Message {
                topic: self.topics.event(&event.satellite),
                payload: serde_json::to_vec(&event.body).expect("events serialize"),
                retain: false,
            },
            Protocol::Hermes => match crate::hermes::event_message(&event) {
                Some(message) => message,
                None => {
                    tracing::debug!(satellite = %event.satellite, event = %event.body["event"],
                        "no Hermes form for this event; not sent");
                    return;
                }
            },
        };
        if let Err(e) = self.tx.try_send(message) {
            tracing::warn!(satellite = %event.satellite, "event dropped: {e}");
        }
    }

    /// Queues a reply, waiting for room: every request gets exactly one.
    pub async fn reply(&self, topic: String, reply: &Reply) {
        let payload = serde_json::to_vec(reply).expect("replies serialize");
        self.send(Message {
            topic,
            payload,
            retain: false,
        })
        .await;
    }

    /// Queues a message without waiting; gives it back when the queue is full.
    pub fn try_send(&self, message: Message) -> Result<(), Box<Message>> {
        self.tx
            .try_send(message)
            .map_err(|e| Box::new(e.into_inner()))
    }

    pub async fn send(&self, message: Message) {
        if self.tx.send(message).await.is_err() {
            tracing::warn!("outbox closed; message not sent");
        }
    }
}
