//! The effects layer: everything a skill can cause outside itself — start,
//! list or cancel its satellite's timers, play or stop a sound, publish to
//! MQTT, use its key/value store, read a secret, make an HTTP request — one function
//! each on [`Effects`], whether a built-in skill asks (through
//! [`crate::builtin_host`]) or a WebAssembly one (through the sandbox's host
//! functions).
//!
//! Every effect asks the policy gate first ([`policy::decide`] with
//! `Action::Use(permission)`) for the skill it acts for, and acts only when
//! allowed: the same rules, with the same names, for both kinds of skill. A
//! denial is audited with the rule that decided, one by one up to
//! [`MAX_AUDITED_DENIALS`] per request (or sandboxed call); the rest are
//! counted into one summary record when it ends ([`Effects::finish`]).
//!
//! What an effect costs, and how often one call may cause it, is the
//! caller's budget: the sandbox charges fuel and keeps per-call caps before
//! it asks for an effect; built-ins are the hub's own code and have neither.
//!
//! Layout:
//! - this file: [`Env`], [`Services`], [`Effects`] and its effect functions
//! - [`kv`]: a skill's private key/value store
//! - [`secrets`]: the secret file

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hark_skill_sdk::Permission;
use hark_skill_sdk::manifest::topic_matches;
use hark_skills_builtin::{EffectError, PlaybackView, Target, TimerView};

use crate::audit::{self, Audit};
use crate::confirm::{Confirmations, Question};
use crate::events::{Message, Outbox, Protocol};
use crate::inflight::InFlight;
use crate::playback::PlaybackService;
use crate::policy::{self, Action, SkillInfo, Tier};
use crate::protocols::native::Topics;
use crate::timers::{
    StartError, Ticket, Timer, TimerService, TimerStoreError, Update, UpdateError,
};

pub(crate) mod kv;
pub(crate) mod secrets;

use kv::{KvError, KvStore};
use secrets::{Lookup, SecretStore};

/// Denials audited one by one per request (or sandboxed call); the rest go
/// into one summary record.
pub const MAX_AUDITED_DENIALS: u32 = 8;

/// The rule of that summary record. Named when only sandboxed calls passed
/// the gate, and kept: readers of the audit log know it.
pub const DENIALS_SUMMARY_RULE: &str = "sandbox.denials_summary";

/// The long-lived services skills act through.
#[derive(Debug, Clone)]
pub struct Services {
    pub timers: Arc<TimerService>,
    pub playback: Arc<PlaybackService>,
    pub inflight: Arc<InFlight>,
    /// Sensitive calls waiting for their satellite's yes.
    pub confirmations: Arc<Confirmations>,
    pub outbox: Outbox,
    /// The hub's own topics, which no skill may publish to.
    pub topics: Topics,
    /// `<state_dir>/secrets.toml`, read once and kept until it changes.
    pub secrets: Arc<SecretStore>,
    /// Brokered HTTP for `net.http` skills.
    pub http: Arc<crate::http::Client>,
    /// What the hub has done, counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What every effect needs besides its skill: the tier the gate decides
/// under, the log its denials go to, and the services it acts on. One per
/// hub, shared by the dispatcher and the sandbox's workers.
#[derive(Debug)]
pub struct Env {
    /// Changed by a reload; read at every decision.
    pub tier: crate::policy::TierCell,
    pub audit: Arc<Audit>,
    pub services: Services,
}

/// When a timer change reaches the disk, relative to the skill hearing of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Block the thread until it is written: sandbox workers, off the loop.
    Wait,
    /// Keep the newest change's [`Ticket`]; the dispatcher awaits it before
    /// replying ([`Effects::ticket`]): built-ins, which run on the loop.
    Ticket,
}

/// A refusal by the policy gate, already audited (or counted for the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule that decided.
    pub rule: &'static str,
    /// A sentence for a person: why, and what would change it.
    pub reason: String,
    /// Denials in this request or call so far, this one included.
    pub count: u32,
}

/// Why an effect did not happen.
#[derive(Debug)]
pub enum Refused<E> {
    /// The policy gate said no.
    Denied(Denial),
    /// The gate allowed it, and it failed.
    Failed(E),
}

impl<E> From<Denial> for Refused<E> {
    fn from(denial: Denial) -> Refused<E> {
        Refused::Denied(denial)
    }
}

/// Why a timer was not paused, resumed or shifted.
#[derive(Debug)]
pub enum UpdateFailed {
    /// The table refused it; nothing changed.
    Timer(UpdateError),
    /// It could not be written, and was undone.
    Store(TimerStoreError),
}

/// Why a message was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Empty, or a filter (`+`, `#`) rather than a topic.
    NotATopic(String),
    /// The hub's outgoing queue is full.
    QueueFull,
}

/// Why an allowed HTTP request brought no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The call's deadline came first.
    Deadline,
    /// The response body is over the call's cap.
    TooLarge(String),
    /// The network, TLS or the server failed.
    Failed(String),
}

/// The effects of one skill for one request (a built-in's) or one call (a
/// sandboxed skill's): it acts for that request's satellite only.
#[derive(Debug)]
pub struct Effects {
    env: Arc<Env>,
    skill: Arc<SkillInfo>,
    /// The skill's key/value store; built-ins have none.
    kv: Option<Arc<KvStore>>,
    satellite: String,
    request_id: String,
    protocol: Protocol,
    durability: Durability,
    /// The newest timer change made (with [`Durability::Ticket`]).
    ticket: Option<Ticket>,
    denials: u32,
    /// Denials past the audited ones, by rule, for the summary record.
    unaudited: Vec<(&'static str, u32)>,
}

impl Effects {
    /// The effects of a built-in skill serving one request. Timer changes
    /// leave a [`Ticket`] to await before replying.
    pub fn for_builtin(
        env: Arc<Env>,
        skill: Arc<SkillInfo>,
        satellite: &str,
        request_id: &str,
        protocol: Protocol,
    ) -> Effects {
        Effects::new(
            env,
            skill,
            None,
            satellite,
            request_id,
            protocol,
            Durability::Ticket,
        )
    }

    /// The effects of one sandboxed call, on a worker thread: timer changes
    /// are on disk when the effect returns.
    pub fn for_call(
        env: Arc<Env>,
        skill: Arc<SkillInfo>,
        kv: Arc<KvStore>,
        satellite: &str,
        request_id: &str,
        protocol: Protocol,
    ) -> Effects {
        Effects::new(
            env,
            skill,
            Some(kv),
            satellite,
            request_id,
            protocol,
            Durability::Wait,
        )
    }

    fn new(
        env: Arc<Env>,
        skill: Arc<SkillInfo>,
        kv: Option<Arc<KvStore>>,
        satellite: &str,
        request_id: &str,
        protocol: Protocol,
        durability: Durability,
    ) -> Effects {
        Effects {
            env,
            skill,
            kv,
            satellite: satellite.to_string(),
            request_id: request_id.to_string(),
            protocol,
            durability,
            ticket: None,
            denials: 0,
            unaudited: Vec::new(),
        }
    }

    pub fn skill(&self) -> &SkillInfo {
        &self.skill
    }

    pub fn satellite(&self) -> &str {
        &self.satellite
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The newest timer change to wait for before replying, if any was made.
    pub fn ticket(&self) -> Option<Ticket> {
        self.ticket
    }

    /// Starts a timer on the satellite (`timer`).
    pub fn start_timer(
        &mut self,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<Timer, Refused<StartError>> {
        self.allow(&Permission::Timer)?;
        let (timer, ticket) = self
            .env
            .services
            .timers
            .begin_start(&self.satellite, self.protocol, label, duration)
            .map_err(|e| Refused::Failed(StartError::Timer(e)))?;
        self.settle(ticket)
            .map_err(|e| Refused::Failed(StartError::Store(e)))?;
        Ok(timer)
    }

    /// The satellite's timers, soonest first (`timer`). A built-in's reply
    /// waits for changes still on their way to the disk, so it never
    /// speaks of a timer a crash could lose.
    pub fn timers(&mut self) -> Result<Vec<TimerView>, Refused<Infallible>> {
        self.allow(&Permission::Timer)?;
        let timers = &self.env.services.timers;
        let list = timers.of_satellite(&self.satellite);
        if self.durability == Durability::Ticket {
            self.ticket = self.ticket.max(timers.pending(&self.satellite));
        }
        Ok(list)
    }

    /// Pauses, resumes or shifts the satellite's timer `id` (`timer`),
    /// keeping it at most `max` long; another satellite's timer is never
    /// touched (it is not found).
    pub fn update_timer(
        &mut self,
        id: &str,
        update: Update,
        max: Duration,
    ) -> Result<Timer, Refused<UpdateFailed>> {
        self.allow(&Permission::Timer)?;
        let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        let (timer, ticket) = self
            .env
            .services
            .timers
            .begin_update(&self.satellite, id, update, max_ms)
            .map_err(|e| Refused::Failed(UpdateFailed::Timer(e)))?;
        self.settle(ticket)
            .map_err(|e| Refused::Failed(UpdateFailed::Store(e)))?;
        Ok(timer)
    }

    /// Cancels the satellite's timers among `ids`; returns those it
    /// cancelled (`timer`). Another satellite's timers are never touched.
    pub fn cancel_timers(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<Timer>, Refused<TimerStoreError>> {
        self.allow(&Permission::Timer)?;
        let (gone, ticket) = self.env.services.timers.begin_cancel(&self.satellite, ids);
        if let Some(ticket) = ticket {
            self.settle(ticket).map_err(Refused::Failed)?;
        }
        Ok(gone)
    }

    /// Plays `sound` on the hub's speaker or tells the satellite to play it
    /// (`audio.play`).
    pub fn play(
        &mut self,
        sound: &str,
        target: Target,
        volume: f32,
    ) -> Result<PlaybackView, Refused<EffectError>> {
        self.allow(&Permission::AudioPlay)?;
        self.env
            .services
            .playback
            .play(&self.satellite, self.protocol, sound, target, volume)
            .map_err(Refused::Failed)
    }

    /// Stops what the satellite is playing, on the hub and on itself;
    /// returns how many playbacks it stopped (`audio.play`).
    pub fn stop_playback(&mut self) -> Result<usize, Refused<Infallible>> {
        self.allow(&Permission::AudioPlay)?;
        Ok(self.env.services.playback.stop(&self.satellite))
    }

    /// Cancels the satellite's other skill calls in flight; returns how many.
    ///
    /// The one effect the gate is not asked about: it ends requests of the
    /// same satellite (each of which passed the gate), which is the person's
    /// own "stop", not something a permission of the catalog guards; and
    /// only built-ins can ask for it (ABI 1 has no import for it).
    pub fn stop_calls(&mut self) -> usize {
        self.env
            .services
            .inflight
            .cancel_satellite(&self.satellite, &self.request_id)
    }

    /// Answers no to the satellite's questions waiting for a yes (their
    /// calls never run); returns how many. Like [`Effects::stop_calls`],
    /// not a gated effect: it closes only the person's own questions, and
    /// only built-ins can ask for it.
    pub fn cancel_questions(&mut self) -> usize {
        self.env.services.confirmations.cancel(&self.satellite)
    }

    /// Takes the satellite's question of `token` (else its newest) for the
    /// dispatcher to answer: a yes runs its call, a no closes it.
    pub fn take_question(&mut self, token: Option<&str>) -> Option<Question> {
        self.env.services.confirmations.take(&self.satellite, token)
    }

    /// The value under `key` in the skill's store (`kv`).
    pub fn kv_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, Refused<KvError>> {
        self.allow(&Permission::Kv)?;
        Ok(self.kv()?.get(key))
    }

    /// Stores `value` under `key`, writing at most `max_write` bytes to disk;
    /// returns the bytes written (`kv`).
    pub fn kv_set(
        &mut self,
        key: &str,
        value: Vec<u8>,
        max_write: usize,
    ) -> Result<usize, Refused<KvError>> {
        self.allow(&Permission::Kv)?;
        self.kv()?
            .set(key, value, max_write)
            .map_err(Refused::Failed)
    }

    /// Removes `key`, writing at most `max_write` bytes to disk; returns the
    /// bytes written, `None` when there was no such key (`kv`).
    pub fn kv_delete(
        &mut self,
        key: &str,
        max_write: usize,
    ) -> Result<Option<usize>, Refused<KvError>> {
        self.allow(&Permission::Kv)?;
        self.kv()?.delete(key, max_write).map_err(Refused::Failed)
    }

    fn kv(&self) -> Result<&KvStore, Refused<KvError>> {
        self.kv.as_deref().ok_or(Refused::Failed(KvError::NoStore))
    }

    /// Publishes `payload` to `topic` at QoS 1, not retained: only inside a
    /// declared `mqtt.publish:<filter>` the gate allows, and never to a
    /// reserved topic (SPEC §7) or a `$` topic, whatever the grant.
    pub fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), Refused<PublishError>> {
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            return Err(Refused::Failed(PublishError::NotATopic(topic)));
        }
        let prefix = self.env.services.topics.prefix();
        if let Some(reserved) =
            crate::satellites::access::reserved_overlap(&topic, prefix, &self.skill.name)
                .or_else(|| topic.starts_with('$').then(|| "$-topics".to_string()))
        {
            let reason = format!(
                "mqtt_publish: \"{topic}\" is under {reserved}, reserved for the hub and the \
                 broker; skills never publish there"
            );
            return Err(self.deny("mqtt.reserved_topic", reason).into());
        }
        let candidates: Vec<Permission> = self
            .skill
            .permissions
            .iter()
            .filter(
                |p| matches!(p, Permission::MqttPublish(filter) if topic_matches(filter, &topic)),
            )
            .cloned()
            .collect();
        if candidates.is_empty() {
            let reason = format!(
                "mqtt_publish: \"{topic}\" is outside every mqtt.publish filter the manifest declares"
            );
            return Err(self.deny("mqtt.outside_filter", reason).into());
        }
        self.allow_any(&candidates)?;
        let message = Message {
            topic,
            payload,
            retain: false,
        };
        self.env
            .services
            .outbox
            .try_send(message)
            .map_err(|_| Refused::Failed(PublishError::QueueFull))
    }

    /// Looks up secret `id` in the secret store (`secrets.read:<id>`); never
    /// the process environment.
    pub fn read_secret(&mut self, id: &str) -> Result<Lookup, Refused<Infallible>> {
        self.allow(&Permission::SecretsRead(id.to_string()))?;
        Ok(self.env.services.secrets.read(id))
    }

    /// Brokered HTTP (`net.http:<grant>`, SPEC §11): `ask` goes to its
    /// origin only when a declared permission names that origin and the gate
    /// allows it; the rules of [`crate::http`] refuse the rest (audited like
    /// any denial). Every request made is audited: origin, method, status,
    /// bytes; its path and body only in the convenient tier.
    pub fn http_request(
        &mut self,
        ask: &crate::http::Ask,
        deadline: std::time::Instant,
        max_body: usize,
    ) -> Result<crate::http::Answer, Refused<HttpError>> {
        use crate::http::Failure;
        let grant = ask.origin.grant();
        let declared: Vec<&String> = self
            .skill
            .permissions
            .iter()
            .filter_map(|p| match p {
                Permission::NetHttp(g) => Some(g),
                _ => None,
            })
            .collect();
        let candidates: Vec<Permission> = declared
            .iter()
            .filter(|g| ***g == grant)
            .map(|g| Permission::NetHttp((*g).clone()))
            .collect();
        if candidates.is_empty() && !declared.is_empty() {
            let names: Vec<String> = declared.iter().map(|g| format!("net.http:{g}")).collect();
            let reason = format!(
                "http_request: {grant} is not a granted origin; the manifest declares {} \
                 (scheme and port count: https unless the grant says http://, port 443 or 80 \
                 unless it names one)",
                names.join(", ")
            );
            return Err(self.deny("net.http.host", reason).into());
        }
        self.allow_any(&candidates)?;
        let started = std::time::Instant::now();
        let result = self.env.services.http.send(ask, deadline, max_body);
        let (status, detail) = match &result {
            Ok(answer) => (
                answer.status.to_string(),
                format!(
                    "{} bytes{}",
                    answer.body.len(),
                    match answer.redirects {
                        0 => String::new(),
                        n => format!(", {n} redirect{}", if n == 1 { "" } else { "s" }),
                    }
                ),
            ),
            Err(Failure::Refused { rule, .. }) => ("refused".into(), (*rule).to_string()),
            Err(Failure::Deadline) => ("timeout".into(), "cut at the call's deadline".into()),
            Err(Failure::TooLarge(m) | Failure::Failed(m)) => ("failed".into(), m.clone()),
        };
        let full = self.env.tier.get() == Tier::Convenient;
        let message = format!(
            "{} {}{} -> {status}: {detail}, {} bytes sent, {} ms",
            ask.method.as_str(),
            if ask.origin.tls {
                "https://"
            } else {
                "http://"
            },
            if full {
                format!("{}{}", ask.origin.authority(), ask.path)
            } else {
                ask.origin.authority()
            },
            ask.body.len(),
            started.elapsed().as_millis()
        );
        let body = match (&result, full) {
            (Ok(answer), true) => {
                let text = String::from_utf8_lossy(&answer.body);
                Some(serde_json::json!({"body": text.chars().take(1024).collect::<String>()}))
            }
            _ => None,
        };
        self.env.audit.record(&audit::Record {
            kind: audit::Kind::Http,
            satellite: Some(self.satellite.clone()),
            request_id: Some(self.request_id.clone()),
            skill: Some(self.skill.name.clone()),
            decision: Some(audit::Decision::Allow),
            rule: Some(format!("net.http:{grant}")),
            status: Some(status),
            message: Some(message),
            result: body,
            ..Default::default()
        });
        result.map_err(|failure| match failure {
            Failure::Refused { rule, reason } => {
                Refused::Denied(self.deny(rule, format!("http_request: {reason}")))
            }
            Failure::Deadline => Refused::Failed(HttpError::Deadline),
            Failure::TooLarge(m) => Refused::Failed(HttpError::TooLarge(m)),
            Failure::Failed(m) => Refused::Failed(HttpError::Failed(m)),
        })
    }

    /// The end of the request or call: one audit record for the denials not
    /// audited one by one.
    pub fn finish(&mut self) {
        let more: u32 = self.unaudited.iter().map(|(_, n)| n).sum();
        if more == 0 {
            return;
        }
        let rules: Vec<String> = self
            .unaudited
            .drain(..)
            .map(|(rule, n)| format!("{n} x {rule}"))
            .collect();
        let message = format!(
            "and {more} more denied host calls in the same call, not audited one by one \
             (the first {MAX_AUDITED_DENIALS} are): {}",
            rules.join(", ")
        );
        self.audit_denial(DENIALS_SUMMARY_RULE, &message);
        tracing::warn!(skill = %self.skill.name, satellite = %self.satellite, "{message}");
    }

    /// Asks the gate whether the skill may use `permission` now.
    fn allow(&mut self, permission: &Permission) -> Result<(), Denial> {
        let decision = policy::decide(self.env.tier.get(), &self.skill, &Action::Use(permission));
        if decision.allow {
            Ok(())
        } else {
            Err(self.deny(decision.rule, decision.reason))
        }
    }

    /// Allowed when the gate allows any of `candidates` (the declared
    /// permissions that would cover the effect); when none is, one denial
    /// (of the last one asked), not one per candidate.
    fn allow_any(&mut self, candidates: &[Permission]) -> Result<(), Denial> {
        let mut refused = None;
        for permission in candidates {
            let decision =
                policy::decide(self.env.tier.get(), &self.skill, &Action::Use(permission));
            if decision.allow {
                return Ok(());
            }
            refused = Some(decision);
        }
        Err(match refused {
            Some(decision) => self.deny(decision.rule, decision.reason),
            None => {
                let reason = format!(
                    "{} does not declare a permission that covers this",
                    self.skill.name
                );
                self.deny("permission.undeclared", reason)
            }
        })
    }

    /// A denial: audited while the request or call has had fewer than
    /// [`MAX_AUDITED_DENIALS`], counted for the summary after that.
    fn deny(&mut self, rule: &'static str, reason: String) -> Denial {
        self.denials = self.denials.saturating_add(1);
        self.env.services.metrics.denied(&self.skill.name);
        if self.denials <= MAX_AUDITED_DENIALS {
            self.audit_denial(rule, &reason);
            tracing::warn!(skill = %self.skill.name, satellite = %self.satellite, rule, "effect denied: {reason}");
        } else {
            match self.unaudited.iter_mut().find(|(r, _)| *r == rule) {
                Some((_, n)) => *n += 1,
                None => self.unaudited.push((rule, 1)),
            }
        }
        Denial {
            rule,
            reason,
            count: self.denials,
        }
    }

    fn audit_denial(&self, rule: &str, message: &str) {
        self.env.audit.record(&audit::Record {
            kind: audit::Kind::Refusal,
            satellite: Some(self.satellite.clone()),
            request_id: Some(self.request_id.clone()),
            skill: Some(self.skill.name.clone()),
            decision: Some(audit::Decision::Deny),
            rule: Some(rule.to_string()),
            message: Some(message.to_string()),
            ..Default::default()
        });
    }

    /// A timer change is on disk before the skill can speak of it: waited
    /// for here, or left to the dispatcher as a ticket.
    fn settle(&mut self, ticket: Ticket) -> Result<(), TimerStoreError> {
        match self.durability {
            Durability::Wait => self.env.services.timers.settled_blocking(ticket),
            Durability::Ticket => {
                self.ticket = self.ticket.max(Some(ticket));
                Ok(())
            }
        }
    }
}

/// Real services in a temporary state dir, for the tests of the effects and
/// of the two ways to them (built-ins' host, sandbox host functions).
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    use hark_skill_sdk::Manifest;
    use serde_json::{Value, json};

    use super::*;
    use crate::audio::{AudioBackend, AudioOut};
    use crate::audit::AuditLog;
    use crate::playback::AlarmRinger;
    use crate::policy::{Signature, SkillKind};
    use crate::timers::TimerLimits;

    #[derive(Debug)]
    pub struct TestEnv {
        pub env: Arc<Env>,
        pub dir: PathBuf,
        /// The other end of the outbox: what was published.
        pub sent: tokio::sync::mpsc::Receiver<Message>,
    }

    impl TestEnv {
        pub fn new(name: &str, tier: Tier) -> TestEnv {
            let dir =
                std::env::temp_dir().join(format!("hark-effects-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let audit = Audit::new(AuditLog::open(&dir.join("audit.jsonl")).unwrap());
            let topics = Topics::new("hark");
            let (outbox, sent) = Outbox::channel(64);
            let out = AudioOut::open(AudioBackend::Null).unwrap();
            let playback = PlaybackService::new(out, None, outbox.clone());
            let ringer = Box::new(AlarmRinger {
                playback: playback.clone(),
                ring_for: Duration::from_secs(300),
            });
            let limits = TimerLimits::default();
            let timers =
                TimerService::open(&dir, limits, outbox.clone(), ringer, audit.clone()).unwrap();
            let confirmations = Arc::new(Confirmations::new(
                &crate::config::ConfirmConfig::default(),
                audit.clone(),
                outbox.clone(),
            ));
            let services = Services {
                timers,
                playback,
                inflight: Arc::default(),
                confirmations,
                outbox,
                topics,
                secrets: Arc::new(SecretStore::new(dir.join("secrets.toml"))),
                http: Arc::new(crate::http::Client::new(Vec::new())),
                metrics: Arc::default(),
            };
            let env = Arc::new(Env {
                tier: crate::policy::TierCell::new(tier),
                audit,
                services,
            });
            TestEnv { env, dir, sent }
        }

        /// The audit log's records so far.
        pub fn records(&self) -> Vec<Value> {
            std::fs::read_to_string(self.dir.join("audit.jsonl"))
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }

        /// The refusal records so far.
        pub fn refusals(&self) -> Vec<Value> {
            let mut records = self.records();
            records.retain(|r| r["kind"] == "refusal");
            records
        }

        /// The effects of `skill` for one request of satellite `kitchen`:
        /// a built-in's, or a sandboxed call's with its own store.
        pub fn effects(&self, skill: &Arc<SkillInfo>, request_id: &str) -> Effects {
            match skill.kind {
                SkillKind::Builtin => Effects::for_builtin(
                    self.env.clone(),
                    skill.clone(),
                    "kitchen",
                    request_id,
                    Protocol::NATIVE,
                ),
                SkillKind::Wasm => {
                    let kv = KvStore::open(&self.dir.join("kv"), &skill.name).unwrap();
                    Effects::for_call(
                        self.env.clone(),
                        skill.clone(),
                        Arc::new(kv),
                        "kitchen",
                        request_id,
                        Protocol::NATIVE,
                    )
                }
            }
        }
    }

    impl Drop for TestEnv {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The facts of a skill of `kind` whose manifest declares `permissions`
    /// (checked by the gate only: a built-in's manifest could not declare a
    /// high-risk one).
    pub fn skill(kind: SkillKind, name: &str, permissions: &[&str]) -> Arc<SkillInfo> {
        let manifest: Manifest = serde_json::from_value(json!({
            "name": name, "version": "1.0.0", "trusted": true, "permissions": permissions,
        }))
        .unwrap();
        let signature = match kind {
            SkillKind::Builtin => Signature::NotApplicable,
            SkillKind::Wasm => Signature::Verified {
                signer: "ed25519:test".into(),
            },
        };
        Arc::new(SkillInfo::new(kind, manifest, signature, Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{TestEnv, skill};
    use super::*;
    use crate::policy::SkillKind::{Builtin, Wasm};

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn denial<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, Refused<E>>) -> Denial {
        match result {
            Err(Refused::Denied(denial)) => denial,
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn a_builtin_effect_its_manifest_does_not_declare_is_denied_as_a_wasm_skills_is() {
        let t = TestEnv::new("undeclared", Tier::Convenient);
        let builtin = skill(Builtin, "timer.set", &["audio.play"]);
        let wasm = skill(Wasm, "egg", &["audio.play"]);
        let b = denial(t.effects(&builtin, "b-1").start_timer(None, FIVE_MINUTES));
        let w = denial(t.effects(&wasm, "w-1").start_timer(None, FIVE_MINUTES));
        assert_eq!((b.rule, b.count), ("permission.undeclared", 1));
        assert_eq!(b.reason, "timer.set does not declare the permission timer");
        assert_eq!(
            (w.rule, w.reason.as_str()),
            (b.rule, "egg does not declare the permission timer")
        );
        assert!(t.env.services.timers.of_satellite("kitchen").is_empty());

        let refusals = t.refusals();
        assert_eq!(refusals.len(), 2, "{refusals:#?}");
        for (record, (name, id)) in refusals.iter().zip([("timer.set", "b-1"), ("egg", "w-1")]) {
            assert_eq!(record["rule"], "permission.undeclared");
            assert_eq!(record["decision"], "deny");
            assert_eq!(record["skill"], name);
            assert_eq!(record["request_id"], id);
            assert_eq!(record["satellite"], "kitchen");
        }
    }

    #[test]
    fn denials_past_the_audited_ones_go_into_one_summary_at_the_end() {
        let t = TestEnv::new("summary", Tier::Convenient);
        let builtin = skill(Builtin, "timer.set", &[]);
        let mut effects = t.effects(&builtin, "r-1");
        for n in 1..=MAX_AUDITED_DENIALS + 3 {
            assert_eq!(denial(effects.start_timer(None, FIVE_MINUTES)).count, n);
        }
        assert_eq!(t.refusals().len(), MAX_AUDITED_DENIALS as usize);
        effects.finish();
        effects.finish();
        let refusals = t.refusals();
        assert_eq!(
            refusals.len(),
            MAX_AUDITED_DENIALS as usize + 1,
            "one summary, once"
        );
        let summary = refusals.last().unwrap();
        assert_eq!(summary["rule"], DENIALS_SUMMARY_RULE);
        let message = summary["message"].as_str().unwrap();
        assert!(
            message.starts_with("and 3 more denied host calls"),
            "{message}"
        );
        assert!(message.ends_with("3 x permission.undeclared"), "{message}");
    }

    #[test]
    fn a_builtins_timer_leaves_a_ticket_and_a_sandboxed_ones_is_on_disk_on_return() {
        let t = TestEnv::new("durable", Tier::Convenient);
        let mut builtin = t.effects(&skill(Builtin, "timer.set", &["timer"]), "b-1");
        builtin.start_timer(Some("pasta"), FIVE_MINUTES).unwrap();
        let ticket = builtin.ticket().expect("a change to wait for");
        t.env.services.timers.settled_blocking(ticket).unwrap();

        let mut wasm = t.effects(&skill(Wasm, "egg", &["timer"]), "w-1");
        let timer = wasm.start_timer(Some("egg"), FIVE_MINUTES).unwrap();
        assert_eq!(wasm.ticket(), None, "nothing left to wait for");
        let saved = crate::timers::saved(&t.dir).unwrap();
        assert!(saved.timers.contains_key(&timer.id), "{saved:?}");
        assert_eq!(saved.timers.len(), 2);
    }

    #[test]
    fn effects_act_for_their_own_satellite_only() {
        let t = TestEnv::new("satellite", Tier::Convenient);
        let timer = skill(Builtin, "timer.set", &["timer"]);
        let mut hall = Effects::for_builtin(
            t.env.clone(),
            timer.clone(),
            "hall",
            "h-1",
            Protocol::NATIVE,
        );
        let started = hall.start_timer(None, FIVE_MINUTES).unwrap();
        let mut kitchen = t.effects(&timer, "k-1");
        assert!(kitchen.timers().unwrap().is_empty());
        assert!(
            kitchen
                .cancel_timers(std::slice::from_ref(&started.id))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            hall.timers().unwrap().len(),
            1,
            "the hall's timer is still there"
        );
    }

    #[test]
    fn a_skill_publishes_inside_its_filters_and_never_to_a_reserved_topic() {
        let mut t = TestEnv::new("publish", Tier::Convenient);
        let lamp = skill(Wasm, "lamp", &["mqtt.publish:home/#"]);
        let mut effects = t.effects(&lamp, "r-1");
        effects.publish("home/lamp".into(), b"on".to_vec()).unwrap();
        let sent = t.sent.try_recv().unwrap();
        assert_eq!(
            (sent.topic.as_str(), sent.payload.as_slice(), sent.retain),
            ("home/lamp", &b"on"[..], false)
        );
        for (topic, rule) in [
            ("hark/reply/kitchen", "mqtt.reserved_topic"),
            ("hark", "mqtt.reserved_topic"),
            ("$SYS/broker", "mqtt.reserved_topic"),
            ("$share/x", "mqtt.reserved_topic"),
            ("hermes/intent/SetTimer", "mqtt.reserved_topic"),
            ("garden/hose", "mqtt.outside_filter"),
        ] {
            assert_eq!(
                denial(effects.publish(topic.into(), Vec::new())).rule,
                rule,
                "{topic}"
            );
        }
        assert!(matches!(
            effects.publish("home/+".into(), Vec::new()),
            Err(Refused::Failed(PublishError::NotATopic(_)))
        ));
        assert!(t.sent.try_recv().is_err(), "only the first was published");
    }

    #[test]
    fn a_skill_reads_only_its_declared_secrets_and_a_builtin_has_no_store() {
        let t = TestEnv::new("secrets", Tier::Convenient);
        std::fs::write(
            t.dir.join("secrets.toml"),
            "mine = \"s3cret\"\nother = \"x\"\n",
        )
        .unwrap();
        let reader = skill(Wasm, "reader", &["secrets.read:mine"]);
        let mut effects = t.effects(&reader, "r-1");
        assert_eq!(
            effects.read_secret("mine").unwrap().value,
            Ok(Some("s3cret".into()))
        );
        assert_eq!(
            denial(effects.read_secret("other")).rule,
            "permission.undeclared"
        );

        let builtin = skill(Builtin, "notes", &["kv"]);
        let mut effects = t.effects(&builtin, "r-2");
        assert!(matches!(
            effects.kv_get("k"),
            Err(Refused::Failed(KvError::NoStore))
        ));
    }
}
