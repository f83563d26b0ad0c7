//! The Hermes adapter in front of the one dispatcher: reads an NluIntent,
//! hands the native request to [`Dispatcher::handle_value`] (or, when it
//! cannot be run, to the dispatcher's refusal path, so it is audited all the
//! same), and answers the way Rhasspy expects: `endSession` inside a
//! session, `tts/say` outside one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hark_skill_sdk::{Reply, Status, Violation};
use serde_json::Value;

use crate::dispatch::{Dispatcher, Failure, MAX_ID_LEN};
use crate::events::{Message, Outbox, Protocol};
use crate::mqtt::topics::check_satellite_id;

use super::answer::{EndSession, PlayFinished, TtsSay};
use super::mapping;
use super::nlu::{Envelope, NluIntent, Problem};

/// Oversized payloads up to this size are skimmed for their `sessionId` so
/// the session can still be ended; larger ones are only audited.
pub const SKIM_LIMIT: usize = 16 * 1024 * 1024;

/// The satellite an audit record names when a message's `siteId` cannot be read.
pub const UNKNOWN_SITE: &str = "?";

/// Which Hermes message a request came as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `hermes/intent/<name>`.
    Intent(String),
    /// `hermes/nlu/intentNotRecognized`.
    NotRecognized,
}

/// A payload the hub will not read as JSON: what could be recovered, and why.
#[derive(Debug)]
struct Unreadable(Envelope, Failure);

/// Where and how to answer one message.
#[derive(Debug, Clone, Default)]
struct AnswerTo {
    site_id: Option<String>,
    session_id: Option<String>,
    custom_data: Value,
    request_id: Option<String>,
}

impl AnswerTo {
    fn from(envelope: Envelope) -> AnswerTo {
        AnswerTo {
            request_id: envelope
                .session_id
                .clone()
                .filter(|s| s.chars().count() <= MAX_ID_LEN),
            site_id: envelope.site_id,
            session_id: envelope.session_id,
            custom_data: envelope.custom_data,
        }
    }

    /// The satellite an audit record names.
    fn satellite(&self) -> String {
        self.site_id
            .as_deref()
            .map_or(UNKNOWN_SITE.to_string(), |s| s.chars().take(128).collect())
    }
}

#[derive(Debug)]
pub struct Adapter {
    dispatcher: Arc<Dispatcher>,
    outbox: Outbox,
    intents: BTreeMap<String, String>,
    max_payload: usize,
    next_id: AtomicU64,
}

impl Adapter {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        outbox: Outbox,
        intents: BTreeMap<String, String>,
        max_payload: usize,
    ) -> Adapter {
        Adapter {
            dispatcher,
            outbox,
            intents,
            max_payload,
            next_id: AtomicU64::new(1),
        }
    }

    /// Runs one message and queues its answer (waiting for room: every
    /// session gets ended).
    pub async fn handle(&self, kind: &Kind, payload: &[u8]) {
        let (answer, reply) = match kind {
            Kind::Intent(topic_name) => self.intent(topic_name, payload).await,
            Kind::NotRecognized => self.not_recognized(payload),
        };
        if let Some(message) = self.answer_message(&answer, &reply) {
            self.outbox.send(message).await;
        }
    }

    /// Answers a message the hub will not run (busy, shutting down); the
    /// caller queues the answer.
    pub fn refuse(&self, kind: &Kind, payload: &[u8], failure: Failure) -> Option<Message> {
        let answer = AnswerTo::from(self.envelope(payload));
        let intent = match kind {
            Kind::Intent(name) => Some(name.as_str()),
            Kind::NotRecognized => None,
        };
        let reply = self.refusal(&answer, intent, failure);
        self.answer_message(&answer, &reply)
    }

    /// `hermes/audioServer/<site_id>/playFinished`: the satellite finished a
    /// `playBytes`. Not a request: nothing is answered or audited.
    pub fn play_finished(&self, site_id: &str, payload: &[u8]) {
        match PlayFinished::parse(payload) {
            Ok(PlayFinished { id: Some(id), .. }) => {
                let ended = self.dispatcher.services().playback.finished(site_id, &id);
                tracing::debug!(site_id, id, ended, "playFinished");
            }
            Ok(_) => tracing::debug!(site_id, "playFinished without an id; ignored"),
            Err(e) => tracing::debug!(site_id, "unreadable playFinished ignored: {e}"),
        }
    }

    async fn intent(&self, topic_name: &str, payload: &[u8]) -> (AnswerTo, Reply) {
        let refuse = |answer: AnswerTo, intent: Option<&str>, failure: Failure| {
            let reply = self.refusal(&answer, intent, failure);
            (answer, reply)
        };
        let topic_intent = Some(topic_name).filter(|n| !n.is_empty());
        let value = match self.read(payload) {
            Ok(value) => value,
            Err(unreadable) => {
                let Unreadable(envelope, failure) = *unreadable;
                return refuse(AnswerTo::from(envelope), topic_intent, failure);
            }
        };
        let mut answer = AnswerTo::from(Envelope::of(&value));
        let nlu = match NluIntent::from_value(&value) {
            Ok(nlu) => nlu,
            Err(problem) => {
                let named = value
                    .pointer("/intent/intentName")
                    .and_then(Value::as_str)
                    .or(topic_intent);
                return refuse(answer, named, invalid(problem));
            }
        };
        let intent = Some(nlu.intent_name.as_str());
        if let Err(reason) = check_satellite_id(&nlu.site_id) {
            let why = reason
                .replace("the satellite id in the topic", "the siteId")
                .replace("the satellite id", "the siteId");
            let failure = Failure::new(
                Status::Invalid,
                "bad_satellite",
                format!(
                    "{why}; Hark uses the siteId as the satellite id, so rename the site in \
                     Rhasspy's settings (1 to 64 letters, digits, '_' or '-')"
                ),
            );
            return refuse(answer, intent, failure);
        }
        if let Some(session) = &nlu.session_id {
            if session.chars().count() > MAX_ID_LEN {
                let problem = Problem::new(
                    "bad_id",
                    "/sessionId",
                    format!(
                        "must be 1 to {MAX_ID_LEN} characters, got {}",
                        session.chars().count()
                    ),
                );
                return refuse(answer, intent, invalid(problem));
            }
        }
        let id = match nlu.session_id.as_deref().filter(|s| !s.is_empty()) {
            Some(session) => session.to_string(),
            None => self.new_id(),
        };
        answer.request_id = Some(id.clone());
        let request = match mapping::request(&nlu, &self.intents, &id) {
            Ok(request) => request,
            Err(problem) => return refuse(answer, intent, invalid(problem)),
        };
        let reply = self
            .dispatcher
            .handle_value(&nlu.site_id, Protocol::Hermes, request)
            .await;
        log_reply(&nlu.site_id, &nlu.intent_name, &reply);
        (answer, reply)
    }

    fn not_recognized(&self, payload: &[u8]) -> (AnswerTo, Reply) {
        let answer = AnswerTo::from(self.envelope(payload));
        let failure = Failure::new(
            Status::UnknownIntent,
            "not_recognized",
            "Rhasspy recognized no intent in what was said (hermes/nlu/intentNotRecognized)",
        );
        let reply = self.refusal(&answer, None, failure);
        (answer, reply)
    }

    /// The payload as JSON, or why not with what could be recovered.
    fn read(&self, payload: &[u8]) -> Result<Value, Box<Unreadable>> {
        let skim = || {
            if payload.len() <= SKIM_LIMIT {
                Envelope::skim(payload)
            } else {
                Envelope::default()
            }
        };
        if payload.len() > self.max_payload {
            return Err(Box::new(Unreadable(
                skim(),
                Failure::new(
                    Status::Invalid,
                    "payload_too_large",
                    format!(
                        "the payload is {} bytes; the limit is {} (mqtt.max_payload)",
                        payload.len(),
                        self.max_payload
                    ),
                ),
            )));
        }
        let text = std::str::from_utf8(payload).map_err(|e| {
            Box::new(Unreadable(
                skim(),
                Failure::new(
                    Status::Invalid,
                    "not_utf8",
                    format!(
                        "the payload is not UTF-8: invalid byte at offset {}",
                        e.valid_up_to()
                    ),
                ),
            ))
        })?;
        serde_json::from_str(text).map_err(|e| {
            Box::new(Unreadable(
                Envelope::default(),
                Failure::new(
                    Status::Invalid,
                    "not_json",
                    format!("the payload is not JSON: {e}"),
                ),
            ))
        })
    }

    fn envelope(&self, payload: &[u8]) -> Envelope {
        match self.read(payload) {
            Ok(value) => Envelope::of(&value),
            Err(unreadable) => unreadable.0,
        }
    }

    /// Audits a message that will not run, through the dispatcher's refusal path.
    fn refusal(&self, answer: &AnswerTo, intent: Option<&str>, failure: Failure) -> Reply {
        let satellite = answer.satellite();
        let reply = self.dispatcher.refuse_known(
            &satellite,
            Protocol::Hermes,
            answer.request_id.as_deref(),
            intent,
            failure,
        );
        log_reply(&satellite, intent.unwrap_or_default(), &reply);
        reply
    }

    /// `endSession` when there is a session (always: a session is never
    /// left open), else `tts/say` to the site when there is something to say.
    fn answer_message(&self, answer: &AnswerTo, reply: &Reply) -> Option<Message> {
        let text = mapping::spoken(reply);
        if let Some(session_id) = &answer.session_id {
            return Some(
                EndSession {
                    session_id: session_id.clone(),
                    text,
                    custom_data: answer.custom_data.clone(),
                }
                .message(),
            );
        }
        let text = text?;
        let Some(site_id) = &answer.site_id else {
            tracing::info!("a Hermes message with no session and no readable siteId: not answered");
            return None;
        };
        let id = answer.request_id.clone().unwrap_or_else(|| self.new_id());
        Some(TtsSay::new(&text, site_id, &id).message())
    }

    /// A request id for a message without a session.
    fn new_id(&self) -> String {
        format!("hermes-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

fn invalid(problem: Problem) -> Failure {
    let message = if problem.pointer.is_empty() {
        problem.message.clone()
    } else {
        format!("{}: {}", problem.pointer, problem.message)
    };
    Failure {
        status: Status::Invalid,
        code: problem.code.to_string(),
        message,
        details: if problem.pointer.is_empty() {
            Vec::new()
        } else {
            vec![Violation {
                pointer: problem.pointer,
                message: problem.message,
            }]
        },
        speech: None,
    }
}

fn log_reply(site_id: &str, intent: &str, reply: &Reply) {
    match &reply.error {
        None => tracing::debug!(site_id, id = ?reply.id, intent, "hermes: ok"),
        Some(error) if error.code == "unknown_intent" => tracing::info!(
            site_id,
            id = ?reply.id,
            intent,
            "hermes: {}; map the Rhasspy intent to a skill in [hermes.intents]",
            error.message
        ),
        Some(error) => tracing::info!(
            site_id,
            id = ?reply.id,
            intent,
            status = %reply.status,
            code = %error.code,
            "hermes: {}",
            error.message
        ),
    }
}
