//! The one pipeline every request goes through, whatever protocol brought it:
//! size limit -> UTF-8 -> JSON -> `id`/`intent` -> skill lookup -> policy gate
//! -> `args` schema -> run -> audit -> [`Reply`].
//!
//! Every request that reaches [`Dispatcher::handle_payload`] comes out as
//! exactly one reply, and exactly one audit record whose `seq` the reply
//! carries. Nothing a satellite sends can make it panic or skip either.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hark_skill_sdk::{ErrorBody, Intent, Reply, SkillReply, Status, Violation};
use hark_skills_builtin::SkillError;
use serde_json::{Map, Value, json};

use crate::audit::{self, Audit};
use crate::events::Protocol;
use crate::host::{RequestHost, Services};
use crate::policy::{self, Action, Tier};
use crate::registry::{Registry, Runner, Skill};

/// Longest request id (SPEC §2).
pub const MAX_ID_LEN: usize = 64;

/// Why a request did not succeed, before it becomes a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: Status,
    pub code: String,
    pub message: String,
    pub details: Vec<Violation>,
    /// Words for the satellite to say, when the failure is a question or an
    /// answer a person should hear ("Which timer?").
    pub speech: Option<String>,
}

impl Failure {
    pub fn new(status: Status, code: &str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Vec::new(),
            speech: None,
        }
    }

    fn invalid_at(code: &str, pointer: &str, message: impl Into<String>) -> Failure {
        let message = message.into();
        Failure {
            status: Status::Invalid,
            code: code.to_string(),
            message: format!("{pointer}: {message}"),
            details: vec![Violation {
                pointer: pointer.to_string(),
                message,
            }],
            speech: None,
        }
    }
}

/// What is known about a request so far, for its reply and audit record.
#[derive(Debug)]
struct Context {
    satellite: String,
    protocol: Protocol,
    started: Instant,
    id: Option<String>,
    intent: Option<String>,
    skill: Option<String>,
    args: Option<Value>,
    decision: Option<(audit::Decision, &'static str)>,
}

#[derive(Debug)]
pub struct Dispatcher {
    registry: RwLock<Arc<Registry>>,
    audit: Arc<Audit>,
    services: Services,
    tier: Tier,
    max_payload: usize,
    budget: Duration,
    /// The sandbox's workers; absent in the paranoid tier, where no
    /// WebAssembly skill runs.
    pool: OnceLock<crate::sandbox::pool::Pool>,
}

impl Dispatcher {
    pub fn new(
        registry: Registry,
        audit: Arc<Audit>,
        services: Services,
        tier: Tier,
        max_payload: usize,
        budget: Duration,
    ) -> Dispatcher {
        Dispatcher {
            registry: RwLock::new(Arc::new(registry)),
            audit,
            services,
            tier,
            max_payload,
            budget,
            pool: OnceLock::new(),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new registry; calls already running keep the old one.
    pub fn replace_registry(&self, registry: Registry) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
    }

    /// Hands the dispatcher the sandbox's workers (once).
    pub fn set_pool(&self, pool: crate::sandbox::pool::Pool) {
        let _ = self.pool.set(pool);
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Appends a record that is not a request (start, load, refusal, stop).
    pub fn audit(&self, record: &audit::Record) -> Option<u64> {
        self.audit.record(record)
    }

    pub fn audit_log(&self) -> &Arc<Audit> {
        &self.audit
    }

    /// fdatasync the audit log and refresh its head file.
    pub fn sync_audit(&self) {
        self.audit.sync();
    }

    /// One raw payload from `satellite` (already checked by the adapter).
    pub async fn handle_payload(
        &self,
        satellite: &str,
        protocol: Protocol,
        payload: &[u8],
    ) -> Reply {
        let mut ctx = Context::new(satellite, protocol);
        let outcome = match self.parse(payload) {
            Ok(value) => self.run_request(&mut ctx, value).await,
            Err(failure) => Err(failure),
        };
        self.finish(ctx, outcome)
    }

    /// A request another adapter already decoded to JSON (Hermes).
    pub async fn handle_value(&self, satellite: &str, protocol: Protocol, request: Value) -> Reply {
        let mut ctx = Context::new(satellite, protocol);
        let outcome = self.run_request(&mut ctx, request).await;
        self.finish(ctx, outcome)
    }

    /// Answers a request the hub will not run at all (bad satellite id, busy,
    /// shutting down), keeping its id when the payload yields one.
    pub fn refuse(
        &self,
        satellite: &str,
        protocol: Protocol,
        payload: &[u8],
        failure: Failure,
    ) -> Reply {
        let mut ctx = Context::new(satellite, protocol);
        if payload.len() <= self.max_payload {
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) {
                ctx.id = map
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| valid_id(id))
                    .map(String::from);
                ctx.intent = map
                    .get("intent")
                    .and_then(Value::as_str)
                    .map(|s| truncate(s, 128));
            }
        }
        self.finish(ctx, Err(failure))
    }

    /// Like [`Dispatcher::refuse`], for an adapter that already recovered
    /// what it could of the request (Hermes: the session and intent name).
    pub fn refuse_known(
        &self,
        satellite: &str,
        protocol: Protocol,
        id: Option<&str>,
        intent: Option<&str>,
        failure: Failure,
    ) -> Reply {
        let mut ctx = Context::new(satellite, protocol);
        ctx.id = id.filter(|id| valid_id(id)).map(String::from);
        ctx.intent = intent.map(|s| truncate(s, 128));
        self.finish(ctx, Err(failure))
    }

    fn parse(&self, payload: &[u8]) -> Result<Value, Failure> {
        if payload.len() > self.max_payload {
            return Err(Failure::new(
                Status::Invalid,
                "payload_too_large",
                format!(
                    "the payload is {} bytes; the limit is {} (mqtt.max_payload)",
                    payload.len(),
                    self.max_payload
                ),
            ));
        }
        let text = std::str::from_utf8(payload).map_err(|e| {
            Failure::new(
                Status::Invalid,
                "not_utf8",
                format!(
                    "the payload is not UTF-8: invalid byte at offset {}",
                    e.valid_up_to()
                ),
            )
        })?;
        serde_json::from_str(text).map_err(|e| {
            Failure::new(
                Status::Invalid,
                "not_json",
                format!("the payload is not JSON: {e}"),
            )
        })
    }

    async fn run_request(&self, ctx: &mut Context, request: Value) -> Result<SkillReply, Failure> {
        let Value::Object(mut map) = request else {
            return Err(Failure::new(
                Status::Invalid,
                "not_object",
                format!(
                    "the payload must be a JSON object, not {}",
                    kind_of(&request)
                ),
            ));
        };
        let id = match map.remove("id") {
            None => return Err(Failure::invalid_at("missing_id", "/id", "is required")),
            Some(Value::String(id)) if valid_id(&id) => id,
            Some(Value::String(id)) => {
                return Err(Failure::invalid_at(
                    "bad_id",
                    "/id",
                    format!(
                        "must be 1 to {MAX_ID_LEN} characters, got {}",
                        id.chars().count()
                    ),
                ));
            }
            Some(other) => {
                return Err(Failure::invalid_at(
                    "bad_id",
                    "/id",
                    format!("must be a string, not {}", kind_of(&other)),
                ));
            }
        };
        ctx.id = Some(id.clone());
        let intent = match map.remove("intent") {
            Some(Value::String(intent)) if !intent.is_empty() => intent,
            Some(Value::String(_)) => {
                return Err(Failure::invalid_at(
                    "bad_intent",
                    "/intent",
                    "must not be empty",
                ));
            }
            Some(other) if !other.is_null() => {
                return Err(Failure::invalid_at(
                    "bad_intent",
                    "/intent",
                    format!("must be a string, not {}", kind_of(&other)),
                ));
            }
            _ => {
                return Err(Failure::invalid_at(
                    "missing_intent",
                    "/intent",
                    "is required",
                ));
            }
        };
        ctx.intent = Some(truncate(&intent, 128));
        let args = match map.remove("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(other) => {
                return Err(Failure::invalid_at(
                    "bad_args",
                    "/args",
                    format!("must be an object, not {}", kind_of(&other)),
                ));
            }
        };
        ctx.args = Some(Value::Object(args.clone()));
        let text = match map.remove("text") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(other) => {
                return Err(Failure::invalid_at(
                    "bad_text",
                    "/text",
                    format!("must be a string, not {}", kind_of(&other)),
                ));
            }
        };
        let confidence = match map.remove("confidence") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(Failure::invalid_at(
                    "bad_confidence",
                    "/confidence",
                    format!("must be a number, not {}", kind_of(&other)),
                ));
            }
        };

        let registry = self.registry();
        let Some(skill) = registry.get(&intent).cloned() else {
            if let Some(broken) = registry.broken().iter().find(|b| b.name == intent) {
                ctx.skill = Some(broken.name.clone());
                ctx.decision = Some((audit::Decision::Deny, "load.invalid"));
                return Err(Failure::new(
                    Status::Denied,
                    "not_loaded",
                    format!(
                        "the skill {} is installed but was refused at load: {}",
                        broken.name, broken.problems
                    ),
                ));
            }
            let suggestions = registry.suggest(&intent);
            let hint = if suggestions.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", suggestions.join(" or "))
            };
            return Err(Failure::new(
                Status::UnknownIntent,
                "unknown_intent",
                format!(
                    "no skill serves the intent \"{}\"{hint}",
                    truncate(&intent, 128)
                ),
            ));
        };
        ctx.skill = Some(skill.name().to_string());

        let decision = policy::decide(self.tier, &skill.subject(), &Action::Run);
        ctx.decision = Some((
            if decision.allow {
                audit::Decision::Allow
            } else {
                audit::Decision::Deny
            },
            decision.rule,
        ));
        if !decision.allow {
            return Err(Failure::new(
                Status::Denied,
                "denied",
                format!("{} (rule {})", decision.reason, decision.rule),
            ));
        }

        if let Err(details) = skill.schema.validate(&Value::Object(args.clone())) {
            let summary: Vec<String> = details
                .iter()
                .map(|v| format!("{}: {}", v.pointer, v.message))
                .collect();
            return Err(Failure {
                status: Status::Invalid,
                code: "schema".to_string(),
                message: format!(
                    "args do not match the schema of {}: {}",
                    skill.name(),
                    summary.join("; ")
                ),
                details,
                speech: None,
            });
        }

        let intent = Intent {
            id,
            intent,
            args,
            text,
            confidence,
            satellite: ctx.satellite.clone(),
        };
        self.run_skill(ctx, &skill, &intent).await
    }

    async fn run_skill(
        &self,
        ctx: &Context,
        skill: &Skill,
        intent: &Intent,
    ) -> Result<SkillReply, Failure> {
        let call = self
            .services
            .inflight
            .register(&intent.satellite, &intent.id);
        match &skill.runner {
            Runner::Builtin(builtin) => {
                // Built-ins are ours and return in microseconds; they run
                // inline. The budget guards the sandboxed skills.
                let host = RequestHost::new(&self.services, ctx.protocol);
                let answer = builtin.handle(intent, &host).map_err(skill_failure);
                // A timer the reply speaks of is on disk before it is spoken of.
                if let Some(ticket) = host.ticket() {
                    if let Err(e) = self.services.timers.settled(ticket).await {
                        tracing::error!("{e}");
                        return Err(Failure {
                            status: Status::Error,
                            code: "storage".to_string(),
                            message: e.to_string(),
                            details: Vec::new(),
                            speech: Some(
                                "The timers could not be saved, so nothing was changed."
                                    .to_string(),
                            ),
                        });
                    }
                }
                answer
            }
            Runner::Wasm(wasm) => self.run_wasm(ctx, wasm, intent, &call.flag).await,
            Runner::Unavailable => Err(Failure::new(
                Status::Denied,
                "denied",
                format!("{} is not enabled under tier {}", skill.name(), self.tier),
            )),
        }
    }

    async fn run_wasm(
        &self,
        ctx: &Context,
        wasm: &Arc<crate::sandbox::WasmSkill>,
        intent: &Intent,
        cancel: &Arc<crate::inflight::CancelFlag>,
    ) -> Result<SkillReply, Failure> {
        use crate::sandbox::exec::CallError;
        let Some(pool) = self.pool.get() else {
            return Err(Failure::new(
                Status::Error,
                "no_sandbox",
                "the sandbox is not running",
            ));
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job = crate::sandbox::pool::Job {
            skill: wasm.clone(),
            input: serde_json::to_vec(intent).expect("intents serialize"),
            satellite: intent.satellite.clone(),
            request_id: intent.id.clone(),
            protocol: ctx.protocol,
            cancel: cancel.clone(),
            reply,
        };
        if let Err((_, refusal)) = pool.submit(job) {
            let message = match refusal {
                crate::sandbox::pool::Refusal::Full => format!(
                    "all {} skill workers are busy and the queue is full; retry in a moment",
                    pool.workers()
                ),
                crate::sandbox::pool::Refusal::SatelliteFull => format!(
                    "this satellite already has {} skill calls waiting, its share of the \
                     queue; retry when one is answered",
                    pool.shares().queue_per_satellite
                ),
            };
            return Err(Failure::new(Status::Busy, "busy", message));
        }
        // The worker enforces the budget; this only guards against a worker
        // that never answers (queue wait included).
        let backstop = self.budget * 4 + Duration::from_secs(5);
        let outcome = match tokio::time::timeout(backstop, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => {
                return Err(Failure::new(
                    Status::Error,
                    "worker_lost",
                    "the skill's worker stopped",
                ));
            }
            Err(_) => {
                cancel.raise();
                return Err(Failure::new(
                    Status::Timeout,
                    "timeout",
                    format!("no answer from the skill's worker within {backstop:?}"),
                ));
            }
        };
        let ms = |d: Duration| d.as_millis();
        outcome.result.map_err(|e| match e {
            CallError::Deadline { limit } => Failure::new(
                Status::Timeout,
                "timeout",
                format!(
                    "{} ran past its {} ms budget and was stopped",
                    wasm.info.name,
                    ms(limit)
                ),
            ),
            CallError::FuelExhausted { limit } => Failure::new(
                Status::Timeout,
                "timeout",
                format!(
                    "{} used all its fuel ({} ms at this board's speed) and was stopped",
                    wasm.info.name,
                    ms(limit)
                ),
            ),
            CallError::Cancelled => Failure::new(
                Status::Error,
                "cancelled",
                "cancelled by system.cancel from this satellite",
            ),
            CallError::Limit(message) => Failure::new(
                Status::Error,
                "limit",
                format!("{} was stopped: {message}", wasm.info.name),
            ),
            CallError::Trap(message) => Failure::new(
                Status::Error,
                "trap",
                format!("{} crashed: {message}", wasm.info.name),
            ),
            CallError::BadOutput(message) => Failure::new(
                Status::Error,
                "bad_output",
                format!(
                    "{} answered with something that is not a reply: {message}",
                    wasm.info.name
                ),
            ),
            CallError::Failed { code, message } => Failure {
                status: Status::Error,
                code,
                message: message.clone(),
                details: Vec::new(),
                speech: Some(message),
            },
        })
    }

    fn finish(&self, ctx: Context, outcome: Result<SkillReply, Failure>) -> Reply {
        let elapsed = ctx.started.elapsed();
        let elapsed_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        let full = self.tier.audits_full_args();
        let mut record = audit::Record {
            kind: audit::Kind::Request,
            satellite: Some(ctx.satellite.clone()),
            request_id: ctx.id.clone(),
            intent: ctx.intent.clone(),
            skill: ctx.skill.clone(),
            decision: ctx.decision.map(|d| d.0),
            rule: ctx.decision.map(|d| d.1.to_string()),
            args: ctx
                .args
                .as_ref()
                .map(|a| if full { a.clone() } else { redact(a) }),
            elapsed_ms: Some(elapsed_ms),
            ..Default::default()
        };
        if ctx.protocol != Protocol::Native {
            record.message = Some(format!("via {:?}", ctx.protocol).to_lowercase());
        }
        let mut reply = Reply {
            id: ctx.id,
            intent: ctx.intent,
            status: Status::Ok,
            speech: None,
            data: None,
            error: None,
            audit: None,
            elapsed_ms: Some(elapsed_ms),
        };
        match outcome {
            Ok(answer) => {
                record.status = Some("ok".into());
                if full {
                    record.result = Some(json!({"speech": answer.speech, "data": answer.data}));
                }
                reply.speech = answer.speech;
                reply.data = answer.data;
            }
            Err(failure) => {
                record.status = Some(failure.status.as_str().into());
                record.code = Some(failure.code.clone());
                record.message = audit_message(&failure, full);
                reply.status = failure.status;
                reply.speech = failure.speech;
                reply.error = Some(ErrorBody {
                    code: failure.code,
                    message: failure.message,
                    details: failure.details,
                });
            }
        }
        reply.audit = self.audit(&record);
        reply
    }
}

impl Context {
    fn new(satellite: &str, protocol: Protocol) -> Context {
        Context {
            satellite: satellite.to_string(),
            protocol,
            started: Instant::now(),
            id: None,
            intent: None,
            skill: None,
            args: None,
            decision: None,
        }
    }
}

fn skill_failure(e: SkillError) -> Failure {
    match e {
        SkillError::Invalid { pointer, message } => {
            let pointer = format!("/args{pointer}");
            Failure {
                status: Status::Invalid,
                code: "bad_arg".to_string(),
                message: format!("{pointer}: {message}"),
                details: vec![Violation {
                    pointer,
                    message: message.clone(),
                }],
                speech: Some(message),
            }
        }
        SkillError::Failed {
            code,
            message,
            detail,
        } => Failure {
            status: Status::Error,
            code,
            message: detail.unwrap_or_else(|| message.clone()),
            details: Vec::new(),
            speech: Some(message),
        },
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_LEN
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// What a failure's audit record says. Messages about arguments quote them
/// ("could not understand \"…\"", "9 > maximum 3"), so outside the
/// convenient tier they shrink to where the problem was; skill failures keep
/// only their code.
fn audit_message(failure: &Failure, full: bool) -> Option<String> {
    if full {
        return Some(failure.message.clone());
    }
    if !failure.details.is_empty() {
        let pointers: Vec<&str> = failure.details.iter().map(|d| d.pointer.as_str()).collect();
        return Some(format!("invalid at {}", pointers.join(", ")));
    }
    match failure.status {
        Status::Error => None,
        _ => Some(failure.message.clone()),
    }
}

/// Keys stay (they tell what was asked), values go (they may be private).
fn redact(args: &Value) -> Value {
    match args {
        Value::Object(map) => Value::Object(
            map.keys()
                .map(|k| (k.clone(), json!("<redacted>")))
                .collect(),
        ),
        _ => json!("<redacted>"),
    }
}
