//! The Hermes adapter in front of the one dispatcher: reads an NluIntent
//! into a [`Request`] (or, when it cannot be run, a refusal, audited all the
//! same), and answers the way Rhasspy expects: `endSession` inside a
//! session, `tts/say` outside one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hark_skill_sdk::{ErrorCode, Reply, Status, Violation};
use serde_json::Value;

use crate::dispatch::Dispatcher;
use crate::events::{Message, Outbox};
use crate::protocols::native::topics::check_satellite_id;
use crate::protocols::{Accepted, Inbound, Job, Sending};
use crate::request::{Failure, Known, MAX_ID_LEN, Rejected, Request};

use super::PROTOCOL;
use super::answer::{ContinueSession, EndSession, PlayFinished, TtsSay};
use super::config::HermesConfig;
use super::mapping;
use super::nlu::{Envelope, NluIntent, Problem};
use super::topics::{self, Incoming};

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

/// The Hermes side of the hub: reads NluIntents, answers sessions.
#[derive(Debug, Clone)]
pub struct Adapter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dispatcher: Arc<Dispatcher>,
    outbox: Outbox,
    /// The mappings of `[hermes]`, swapped whole by a reload.
    mappings: std::sync::RwLock<Arc<Mappings>>,
    max_payload: usize,
    next_id: AtomicU64,
}

/// What `[hermes]` says to map, and to whom to listen.
#[derive(Debug)]
struct Mappings {
    intents: BTreeMap<String, String>,
    /// The intents that answer a question (`hermes.confirm_yes`/`_no`).
    confirm: mapping::ConfirmIntents,
    /// What Rhasspy may hear while a question waits (`intentFilter`).
    confirm_filter: Vec<String>,
    /// `hermes.sites`: the siteIds served; empty, any.
    sites: Vec<String>,
}

impl Mappings {
    fn of(config: &HermesConfig) -> Arc<Mappings> {
        Arc::new(Mappings {
            intents: config.intents.clone(),
            confirm: mapping::ConfirmIntents {
                yes: config.confirm_yes.clone(),
                no: config.confirm_no.clone(),
            },
            confirm_filter: config.confirm_intents(),
            sites: config.sites.clone(),
        })
    }
}

/// Request ids of messages outside a session start with this (there is
/// no session to end when their late answer comes).
pub const SESSIONLESS_PREFIX: &str = "hermes-";

impl Adapter {
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        outbox: Outbox,
        config: &HermesConfig,
        max_payload: usize,
    ) -> Adapter {
        Adapter {
            shared: Arc::new(Shared {
                dispatcher,
                outbox,
                mappings: std::sync::RwLock::new(Mappings::of(config)),
                max_payload,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Runs one message and queues its answer at once, without waiting for
    /// a turn (tests; the hub admits each message first).
    pub async fn handle(&self, kind: &Kind, payload: &[u8]) {
        let topic = match kind {
            Kind::Intent(name) => format!("hermes/intent/{name}"),
            Kind::NotRecognized => topics::NOT_RECOGNIZED.to_string(),
        };
        let publish = rumqttc::Publish::new(topic, rumqttc::QoS::AtLeastOnce, payload.to_vec());
        let job = self.job(kind.clone(), publish);
        crate::protocols::run(&self.shared.dispatcher, job).await;
    }

    fn job(&self, kind: Kind, publish: rumqttc::Publish) -> Box<dyn Job> {
        Box::new(MessageJob {
            hermes: self.shared.clone(),
            kind,
            publish,
            answer: AnswerTo::default(),
            intent: None,
        })
    }

    /// `hermes/audioServer/<site_id>/playFinished`: the satellite finished a
    /// `playBytes`. Not a request: nothing is answered or audited.
    fn play_finished(&self, site_id: &str, payload: &[u8]) {
        match PlayFinished::parse(payload) {
            Ok(PlayFinished { id: Some(id), .. }) => {
                let ended = self
                    .shared
                    .dispatcher
                    .services()
                    .playback
                    .finished(site_id, &id);
                tracing::debug!(site_id, id, ended, "playFinished");
            }
            Ok(_) => tracing::debug!(site_id, "playFinished without an id; ignored"),
            Err(e) => tracing::debug!(site_id, "unreadable playFinished ignored: {e}"),
        }
    }
}

impl crate::protocols::Adapter for Adapter {
    fn reconfigure(&self, config: &crate::config::Config) {
        *self
            .shared
            .mappings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Mappings::of(&config.hermes);
    }

    fn subscriptions(&self) -> Vec<String> {
        topics::SUBSCRIPTIONS
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn accept(&self, publish: &rumqttc::Publish) -> Accepted {
        let kind = match topics::parse(&publish.topic) {
            Incoming::Intent { name } => Kind::Intent(name.to_string()),
            Incoming::NotRecognized => Kind::NotRecognized,
            Incoming::PlayFinished { site_id } => {
                // Handled at once, in order: a request that follows it sees it.
                self.play_finished(site_id, &publish.payload);
                return Accepted::Done(None);
            }
            Incoming::Other => return Accepted::NotMine,
        };
        Accepted::Request(Inbound {
            key: super::site_of(&publish.payload),
            bytes: publish.payload.len(),
            job: self.job(kind, publish.clone()),
        })
    }
}

/// One Hermes message, and how to answer it once it is read.
#[derive(Debug)]
struct MessageJob {
    hermes: Arc<Shared>,
    kind: Kind,
    publish: rumqttc::Publish,
    answer: AnswerTo,
    /// The Rhasspy intent name, as far as it is known (for the log).
    intent: Option<String>,
}

impl MessageJob {
    /// Keeps where to answer and what the message asked for, and says what
    /// is known of it.
    fn remember(&mut self, answer: AnswerTo, intent: Option<&str>) -> Known {
        self.answer = answer;
        self.intent = intent.map(String::from);
        Known {
            satellite: self.answer.satellite(),
            protocol: PROTOCOL,
            id: self.answer.request_id.clone(),
            intent: self.intent.clone(),
            args: None,
        }
    }

    /// The refusal of this message, as far as it was read.
    fn reject(
        &mut self,
        answer: AnswerTo,
        intent: Option<&str>,
        failure: Failure,
    ) -> Box<Rejected> {
        Box::new(Rejected {
            known: self.remember(answer, intent),
            failure,
        })
    }

    fn intent(&mut self, topic_name: &str) -> Result<Request, Box<Rejected>> {
        let topic_intent = Some(topic_name).filter(|n| !n.is_empty());
        let value = match self.hermes.read(&self.publish.payload) {
            Ok(value) => value,
            Err(unreadable) => {
                let (envelope, failure) = *unreadable;
                return Err(self.reject(AnswerTo::from(envelope), topic_intent, failure));
            }
        };
        let mut answer = AnswerTo::from(Envelope::of(&value));
        let nlu = match NluIntent::from_value(&value) {
            Ok(nlu) => nlu,
            Err(problem) => {
                let named = value
                    .pointer("/intent/intentName")
                    .and_then(Value::as_str)
                    .or(topic_intent)
                    .map(String::from);
                return Err(self.reject(answer, named.as_deref(), invalid(problem)));
            }
        };
        let intent = Some(nlu.intent_name.as_str());
        if let Err(reason) = check_satellite_id(&nlu.site_id) {
            let why = reason
                .replace("the satellite id in the topic", "the siteId")
                .replace("the satellite id", "the siteId");
            let failure = Failure::new(
                ErrorCode::BadSatellite,
                format!(
                    "{why}; Hark uses the siteId as the satellite id, so rename the site in \
                     Rhasspy's settings (1 to 64 letters, digits, '_' or '-')"
                ),
            );
            return Err(self.reject(answer, intent, failure));
        }
        let mappings = self.hermes.mappings();
        if !mappings.sites.is_empty() && !mappings.sites.contains(&nlu.site_id) {
            let failure = Failure::new(
                ErrorCode::Denied,
                format!(
                    "the site \"{}\" is not in hermes.sites; add it there to let it speak to \
                     this hub",
                    nlu.site_id
                ),
            );
            return Err(self.reject(answer, intent, failure));
        }
        if let Some(session) = &nlu.session_id
            && session.chars().count() > MAX_ID_LEN
        {
            let problem = Problem::new(
                ErrorCode::BadId,
                "/sessionId",
                format!(
                    "must be 1 to {MAX_ID_LEN} characters, got {}",
                    session.chars().count()
                ),
            );
            return Err(self.reject(answer, intent, invalid(problem)));
        }
        let id = match nlu.session_id.as_deref().filter(|s| !s.is_empty()) {
            Some(session) => session.to_string(),
            None => self.hermes.new_id(),
        };
        answer.request_id = Some(id.clone());
        match mapping::request(&nlu, &mappings.intents, &mappings.confirm, &id) {
            Ok(request) => {
                self.answer = answer;
                self.intent = Some(nlu.intent_name);
                Ok(request)
            }
            Err(problem) => Err(self.reject(answer, intent, invalid(problem))),
        }
    }
}

impl Job for MessageJob {
    fn decode(&mut self) -> Result<Request, Box<Rejected>> {
        match self.kind.clone() {
            Kind::Intent(topic_name) => self.intent(&topic_name),
            Kind::NotRecognized => {
                let answer = AnswerTo::from(self.hermes.envelope(&self.publish.payload));
                let failure = Failure::new(
                    ErrorCode::NotRecognized,
                    "Rhasspy recognized no intent in what was said (hermes/nlu/intentNotRecognized)",
                );
                Err(self.reject(answer, None, failure))
            }
        }
    }

    fn known(&mut self) -> Known {
        let answer = AnswerTo::from(self.hermes.envelope(&self.publish.payload));
        let intent = match &self.kind {
            Kind::Intent(name) => Some(name.clone()),
            Kind::NotRecognized => None,
        };
        self.remember(answer, intent.as_deref())
    }

    fn answer(self: Box<Self>, reply: Reply) -> Sending {
        let site = self.answer.satellite();
        log_reply(&site, self.intent.as_deref().unwrap_or_default(), &reply);
        let message = self.hermes.answer_message(&self.answer, &reply);
        let outbox = self.hermes.outbox.clone();
        Box::pin(async move {
            if let Some(message) = message {
                outbox.send(message).await;
            }
        })
    }
}

impl Shared {
    fn mappings(&self) -> Arc<Mappings> {
        self.mappings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The payload as JSON, or why not with what could be recovered.
    fn read(&self, payload: &[u8]) -> Result<Value, Box<(Envelope, Failure)>> {
        let skim = || {
            if payload.len() <= SKIM_LIMIT {
                Envelope::skim(payload)
            } else {
                Envelope::default()
            }
        };
        if payload.len() > self.max_payload {
            return Err(Box::new((
                skim(),
                Failure::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the payload is {} bytes; the limit is {} (mqtt.max_payload)",
                        payload.len(),
                        self.max_payload
                    ),
                ),
            )));
        }
        let text = std::str::from_utf8(payload).map_err(|e| {
            Box::new((
                skim(),
                Failure::new(
                    ErrorCode::NotUtf8,
                    format!(
                        "the payload is not UTF-8: invalid byte at offset {}",
                        e.valid_up_to()
                    ),
                ),
            ))
        })?;
        serde_json::from_str(text).map_err(|e| {
            Box::new((
                Envelope::default(),
                Failure::new(ErrorCode::NotJson, format!("the payload is not JSON: {e}")),
            ))
        })
    }

    fn envelope(&self, payload: &[u8]) -> Envelope {
        match self.read(payload) {
            Ok(value) => Envelope::of(&value),
            Err(unreadable) => unreadable.0,
        }
    }

    /// `endSession` when there is a session (always: a session is never
    /// left open; a question of a sensitive skill `continueSession`s it,
    /// listening for yes or no), else `tts/say` to the site when there is
    /// something to say.
    fn answer_message(&self, answer: &AnswerTo, reply: &Reply) -> Option<Message> {
        let text = mapping::spoken(reply);
        if let Some(session_id) = &answer.session_id {
            if reply.status == Status::Confirm {
                return Some(
                    ContinueSession {
                        session_id: session_id.clone(),
                        text: text.unwrap_or_default(),
                        intent_filter: self.mappings().confirm_filter.clone(),
                        custom_data: answer.custom_data.clone(),
                        send_intent_not_recognized: false,
                    }
                    .message(),
                );
            }
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
        format!(
            "{SESSIONLESS_PREFIX}{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
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
        code: problem.code,
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
        Some(error) if error.code == ErrorCode::UnknownIntent => tracing::info!(
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
