//! The hub's own protocol (docs/protocol.md §2–§6): intents as JSON on
//! `<prefix>/intent/<sat>`, one reply each on `<prefix>/reply/<sat>`, timer
//! and playback events on `<prefix>/event/<sat>`, and the satellite's
//! current timers retained on `<prefix>/timers/<sat>`. The satellite id
//! comes from the topic, never the payload.
//!
//! Layout:
//! - [`topics`] — the topic names, from `mqtt.prefix`, and satellite ids
//! - [`codec`] — request and reply payloads

use std::sync::Arc;

use hark_skill_sdk::{ErrorCode, Reply};

use crate::dispatch::Dispatcher;
use crate::events::{Event, Message, Outbox, Protocol, Route};
use crate::hub::HubError;
use crate::request::{Failure, Known, Rejected, Request};

use super::{Accepted, Adapter, Inbound, Job, Sending, Setup, log_reply};

pub(crate) mod codec;
pub(crate) mod topics;

pub use topics::Topics;

/// Registers the native route and serves `<prefix>/intent/+`: always on.
pub fn start(setup: &Setup) -> Result<Option<Arc<dyn Adapter>>, HubError> {
    let topics = Topics::new(&setup.config.mqtt.prefix);
    setup.outbox.add_route(
        Protocol::NATIVE,
        Arc::new(Events {
            topics: topics.clone(),
        }),
    );
    Ok(Some(Arc::new(Native {
        topics,
        dispatcher: setup.dispatcher.clone(),
        outbox: setup.outbox.clone(),
        max_payload: setup.config.mqtt.max_payload,
    })))
}

/// Decodes `payload` from `satellite` and runs it: what the hub does with
/// a message on `<prefix>/intent/<satellite>`, without the network (benches,
/// tests).
pub async fn answer(dispatcher: &Dispatcher, satellite: &str, payload: &[u8]) -> Reply {
    let max_payload = dispatcher.max_payload();
    match codec::decode(satellite, payload, max_payload) {
        Ok(request) => dispatcher.handle(request).await,
        Err(rejected) => dispatcher.refuse(rejected.known, rejected.failure),
    }
}

/// Events go to `<prefix>/event/<sat>` as they are.
#[derive(Debug)]
struct Events {
    topics: Topics,
}

impl Route for Events {
    fn event(&self, event: &Event, outbox: &Outbox) {
        let message = Message {
            topic: self.topics.event(&event.satellite),
            payload: serde_json::to_vec(&event.body).expect("events serialize"),
            retain: false,
        };
        outbox.publish_event(&event.satellite, message);
    }

    /// Retained, so a dashboard that connects later sees them at once; the
    /// list of every satellite, whatever protocol set its timers.
    fn timers(&self, satellite: &str, timers: &[u8], outbox: &Outbox) {
        let message = Message {
            topic: self.topics.timers(satellite),
            payload: timers.to_vec(),
            retain: true,
        };
        outbox.publish_event(satellite, message);
    }

    /// On `<prefix>/reply/<sat>`, like any reply.
    fn reply(&self, satellite: &str, reply: &Reply, outbox: &Outbox) {
        log_reply("native", satellite, reply);
        let message = Message {
            topic: self.topics.reply(satellite),
            payload: codec::encode_reply(reply),
            retain: false,
        };
        outbox.publish_event(satellite, message);
    }
}

#[derive(Debug)]
struct Native {
    topics: Topics,
    dispatcher: Arc<Dispatcher>,
    outbox: Outbox,
    max_payload: usize,
}

impl Adapter for Native {
    fn subscriptions(&self) -> Vec<String> {
        vec![self.topics.intent_filter()]
    }

    fn accept(&self, publish: &rumqttc::Publish) -> Accepted {
        match self.topics.parse(&publish.topic) {
            topics::Incoming::Intent { satellite } => Accepted::Request(Inbound {
                key: satellite.to_string(),
                bytes: publish.payload.len(),
                job: Box::new(IntentJob {
                    satellite: satellite.to_string(),
                    publish: publish.clone(),
                    max_payload: self.max_payload,
                    reply_to: self.topics.reply(satellite),
                    outbox: self.outbox.clone(),
                }),
            }),
            topics::Incoming::BadSatellite {
                raw,
                reason,
                reply_to,
            } => {
                let known = codec::known(raw, &publish.payload, self.max_payload);
                let failure = Failure::new(ErrorCode::BadSatellite, reason);
                let reply = self.dispatcher.refuse(known, failure);
                log_reply("native", raw, &reply);
                Accepted::Done(reply_to.map(|topic| {
                    let outbox = self.outbox.clone();
                    Box::pin(async move { send_reply(&outbox, topic, &reply).await }) as Sending
                }))
            }
            topics::Incoming::Other => Accepted::NotMine,
        }
    }
}

/// One message on `<prefix>/intent/<satellite>`.
#[derive(Debug)]
struct IntentJob {
    satellite: String,
    publish: rumqttc::Publish,
    max_payload: usize,
    reply_to: String,
    outbox: Outbox,
}

impl Job for IntentJob {
    fn decode(&mut self) -> Result<Request, Box<Rejected>> {
        codec::decode(&self.satellite, &self.publish.payload, self.max_payload)
    }

    fn known(&mut self) -> Known {
        codec::known(&self.satellite, &self.publish.payload, self.max_payload)
    }

    fn answer(self: Box<Self>, reply: Reply) -> Sending {
        log_reply("native", &self.satellite, &reply);
        Box::pin(async move { send_reply(&self.outbox, self.reply_to, &reply).await })
    }
}

async fn send_reply(outbox: &Outbox, topic: String, reply: &Reply) {
    outbox
        .send(Message {
            topic,
            payload: codec::encode_reply(reply),
            retain: false,
        })
        .await;
}
