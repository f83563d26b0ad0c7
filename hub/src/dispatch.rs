//! The one pipeline every request goes through, whatever protocol brought it:
//! skill lookup -> policy gate -> `args` schema -> run -> audit -> [`Reply`].
//! A protocol's adapter decodes its wire format into a [`Request`] first
//! (`crate::protocols`); the dispatcher never sees one.
//!
//! Every request that reaches [`Dispatcher::handle`] or
//! [`Dispatcher::refuse`] comes out as exactly one reply, and exactly one
//! audit record whose `seq` the reply carries. Nothing a satellite sends
//! can make it panic or skip either.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hark_skill_sdk::{
    ConfirmBody, ErrorBody, ErrorCode, Intent, Reply, SkillReply, Status, Violation,
};
use hark_skills_builtin::BuiltinError;
use serde_json::{Value, json};

use crate::audit::{self, Audit};
use crate::builtin_host::RequestHost;
use crate::confirm::{Closed, Question};
use crate::effects::{Effects, Env, Services};
use crate::events::Protocol;
use crate::policy::{self, Action, Tier};
use crate::registry::{Registry, Runner, Skill};
use crate::request::{Failure, Known, Request, valid_id};

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
    /// A sensitive call that asked instead of running: its question's token.
    asking: Option<String>,
    /// The question `system.confirm` answered, and whether with yes.
    answered: Option<(Question, bool)>,
    /// A call run because its satellite said yes.
    confirmed: bool,
    /// What the audit record's message says besides a failure's.
    notes: Vec<String>,
}

#[derive(Debug)]
pub struct Dispatcher {
    registry: RwLock<Arc<Registry>>,
    /// The tier, the audit log and the services skills act through.
    env: Arc<Env>,
    max_payload: usize,
    budget: Duration,
    /// The sandbox's workers; absent in the paranoid tier, where no
    /// WebAssembly skill runs.
    pool: OnceLock<crate::sandbox::pool::Pool>,
    /// Config keys a reload read but could not apply (they need a restart).
    pending_restart: std::sync::Mutex<Vec<String>>,
    /// The hub's setup, for its status (set once at start).
    facts: OnceLock<Facts>,
}

/// What the status says of the hub's setup.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The config file, `None` for the defaults.
    pub config: Option<std::path::PathBuf>,
    /// `embedded <listen>` or the broker's address.
    pub broker: String,
    pub state_dir: std::path::PathBuf,
}

impl Dispatcher {
    pub fn new(
        registry: Registry,
        env: Arc<Env>,
        max_payload: usize,
        budget: Duration,
    ) -> Dispatcher {
        Dispatcher {
            registry: RwLock::new(Arc::new(registry)),
            env,
            max_payload,
            budget,
            pool: OnceLock::new(),
            pending_restart: std::sync::Mutex::default(),
            facts: OnceLock::new(),
        }
    }

    pub fn set_facts(&self, facts: Facts) {
        let _ = self.facts.set(facts);
    }

    pub fn facts(&self) -> Facts {
        self.facts.get().cloned().unwrap_or_default()
    }

    /// Whether the sandbox's workers run (they start with the first tier
    /// that runs WebAssembly skills).
    pub fn has_pool(&self) -> bool {
        self.pool.get().is_some()
    }

    /// The config keys changed since start that only a restart applies.
    pub fn pending_restart(&self) -> Vec<String> {
        self.pending_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_pending_restart(&self, keys: Vec<String>) {
        *self
            .pending_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = keys;
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
    /// Starts the sandbox's `workers` threads (a queue of 4 per worker) and
    /// keeps them: at start in a tier that runs WebAssembly skills, or at
    /// the first reload into one.
    pub fn start_pool(&self, workers: usize, engine: wasmi::Engine) -> std::io::Result<()> {
        let pool = crate::sandbox::pool::Pool::start(
            workers,
            workers * 4,
            engine,
            self.env.clone(),
            tokio::runtime::Handle::current(),
        )?;
        self.set_pool(pool);
        Ok(())
    }

    pub fn set_pool(&self, pool: crate::sandbox::pool::Pool) {
        let _ = self.pool.set(pool);
    }

    pub fn env(&self) -> &Arc<Env> {
        &self.env
    }

    pub fn services(&self) -> &Services {
        &self.env.services
    }

    /// The figures [`crate::metrics`] reads from the parts that own them.
    pub fn gauges(&self) -> crate::metrics::Gauges {
        let registry = self.registry();
        crate::metrics::Gauges {
            timers_pending: self.services().timers.len() as u64,
            audit_records: self.audit_log().last_seq(),
            rss_bytes: crate::metrics::rss_bytes(),
            skills_loaded: registry.iter().filter(|s| s.enabled()).count() as u64,
        }
    }

    pub fn tier(&self) -> Tier {
        self.env.tier.get()
    }

    /// Appends a record that is not a request (start, load, refusal, stop).
    pub fn audit(&self, record: &audit::Record) -> Option<u64> {
        self.env.audit.record(record)
    }

    pub fn audit_log(&self) -> &Arc<Audit> {
        &self.env.audit
    }

    /// fdatasync the audit log and refresh its head file.
    pub fn sync_audit(&self) {
        self.env.audit.sync();
    }

    /// The largest request payload a protocol accepts (`mqtt.max_payload`).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Runs one request.
    pub async fn handle(&self, request: Request) -> Reply {
        let _flight = self.services().metrics.flight();
        let mut ctx = Context::of(&request);
        let outcome = self.run_request(&mut ctx, request).await;
        let asking = ctx.asking.clone();
        let answered = ctx.answered.take();
        let reply = self.finish(ctx, outcome);
        let confirmations = &self.services().confirmations;
        if let Some(token) = asking {
            confirmations.asked(&token, reply.audit);
        }
        match answered {
            None => reply,
            Some((question, false)) => {
                confirmations.close(&question, Closed::Declined, reply.audit);
                reply
            }
            Some((question, true)) => self.run_confirmed(question, reply.audit).await,
        }
    }

    /// Runs the call of a question its satellite said yes to, with the args
    /// it had when it asked; the reply carries that request's id. The gate
    /// decides again (the tier may have changed since).
    async fn run_confirmed(&self, question: Question, answer_audit: Option<u64>) -> Reply {
        let mut ctx = Context::of(&question.request);
        let mut note = format!("confirmed: {}", question.described());
        if let Some(seq) = answer_audit {
            note.push_str(&format!(", answered yes at audit {seq}"));
        }
        ctx.confirmed = true;
        ctx.notes.push(note);
        let outcome = self.run_request(&mut ctx, question.request).await;
        self.finish(ctx, outcome)
    }

    /// Keeps a sensitive call waiting for its satellite's yes, and asks.
    fn ask(&self, ctx: &mut Context, skill: &Skill, intent: Intent) -> Result<SkillReply, Failure> {
        let manifest = &skill.info.manifest;
        let speech = crate::confirm::prompt(
            manifest.confirm_prompt.as_deref(),
            &manifest.description,
            skill.name(),
            &intent.args,
        );
        let request = Request {
            protocol: ctx.protocol,
            satellite: intent.satellite,
            id: intent.id,
            intent: intent.intent,
            args: intent.args,
            text: intent.text,
            confidence: intent.confidence,
        };
        match self.services().confirmations.ask(request) {
            Ok(token) => {
                ctx.asking = Some(token);
                Ok(SkillReply::speech(speech))
            }
            Err(crate::confirm::Full) => Err(Failure::new(
                ErrorCode::Busy,
                format!(
                    "{} questions are waiting for an answer already; retry when some are \
                     answered or expire",
                    crate::confirm::MAX_WAITING
                ),
            )),
        }
    }

    /// Answers a request the hub will not run (unreadable, bad satellite id,
    /// busy, shutting down), keeping its id when it has a valid one.
    pub fn refuse(&self, known: Known, failure: Failure) -> Reply {
        let mut ctx = Context::new(&known.satellite, known.protocol);
        ctx.id = known.id.filter(|id| valid_id(id));
        ctx.intent = known.intent.map(|s| truncate(&s, 128));
        ctx.args = known.args.map(Value::Object);
        self.finish(ctx, Err(failure))
    }

    async fn run_request(
        &self,
        ctx: &mut Context,
        request: Request,
    ) -> Result<SkillReply, Failure> {
        let mut intent = request.into_intent();
        let registry = self.registry();
        let Some(skill) = registry.get(&intent.intent).cloned() else {
            if let Some(broken) = registry.broken().iter().find(|b| b.name == intent.intent) {
                ctx.skill = Some(broken.name.clone());
                ctx.decision = Some((audit::Decision::Deny, "load.invalid"));
                return Err(Failure::new(
                    ErrorCode::NotLoaded,
                    format!(
                        "the skill {} is installed but was refused at load: {}",
                        broken.name, broken.problems
                    ),
                ));
            }
            let suggestions = registry.suggest(&intent.intent);
            let hint = if suggestions.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", suggestions.join(" or "))
            };
            return Err(Failure::new(
                ErrorCode::UnknownIntent,
                format!(
                    "no skill serves the intent \"{}\"{hint}",
                    truncate(&intent.intent, 128)
                ),
            ));
        };
        ctx.skill = Some(skill.name().to_string());

        let decision = policy::decide(self.tier(), &skill.info, &Action::Run);
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
                ErrorCode::Denied,
                format!("{} (rule {})", decision.reason, decision.rule),
            ));
        }

        // The schema reads a Value: lend it the args rather than copy them.
        let args = Value::Object(std::mem::take(&mut intent.args));
        let checked = skill.schema.validate(&args);
        if let Value::Object(args) = args {
            intent.args = args;
        }
        if let Err(details) = checked {
            let summary: Vec<String> = details
                .iter()
                .map(|v| format!("{}: {}", v.pointer, v.message))
                .collect();
            return Err(Failure {
                status: Status::Invalid,
                code: ErrorCode::Schema,
                message: format!(
                    "args do not match the schema of {}: {}",
                    skill.name(),
                    summary.join("; ")
                ),
                details,
                speech: None,
            });
        }

        if !ctx.confirmed && self.services().confirmations.sensitive(&skill.info) {
            return self.ask(ctx, &skill, intent);
        }
        self.run_skill(ctx, &skill, &intent).await
    }

    async fn run_skill(
        &self,
        ctx: &mut Context,
        skill: &Skill,
        intent: &Intent,
    ) -> Result<SkillReply, Failure> {
        let call = self
            .services()
            .inflight
            .register(&intent.satellite, &intent.id);
        match &skill.runner {
            Runner::Builtin(builtin) => {
                // Built-ins are ours and return in microseconds; they run
                // inline. The budget guards the sandboxed skills.
                let host = RequestHost::new(Effects::for_builtin(
                    self.env.clone(),
                    skill.info.clone(),
                    &intent.satellite,
                    &intent.id,
                    ctx.protocol,
                ));
                let answer = builtin.handle(intent, &host).map_err(skill_failure);
                let finished = host.finish();
                if let Some((question, yes)) = &finished.answered {
                    let answer = if *yes { "yes" } else { "no" };
                    ctx.notes
                        .push(format!("{answer} to {}", question.described()));
                }
                ctx.answered = finished.answered;
                // A timer the reply speaks of is on disk before it is spoken of.
                if let Some(ticket) = finished.ticket
                    && let Err(e) = self.services().timers.settled(ticket).await
                {
                    tracing::error!("{e}");
                    return Err(Failure {
                        status: Status::Error,
                        code: ErrorCode::Storage,
                        message: e.to_string(),
                        details: Vec::new(),
                        speech: Some(
                            "The timers could not be saved, so nothing was changed.".to_string(),
                        ),
                    });
                }
                // The gate refused one of its effects (audited with its
                // rule): the request is denied, as a run the gate refuses is,
                // whatever the skill made of the refusal.
                if let Some(denial) = finished.denied {
                    return Err(Failure::new(
                        ErrorCode::Denied,
                        format!("{} (rule {})", denial.reason, denial.rule),
                    ));
                }
                answer
            }
            Runner::Wasm(wasm) => self.run_wasm(ctx, wasm, intent, &call.flag).await,
            Runner::Unavailable => Err(Failure::new(
                ErrorCode::Denied,
                format!("{} is not enabled under tier {}", skill.name(), self.tier()),
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
                ErrorCode::NoSandbox,
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
            return Err(Failure::new(ErrorCode::Busy, message));
        }
        // The worker enforces the budget; this only guards against a worker
        // that never answers (queue wait included).
        let backstop = self.budget * 4 + Duration::from_secs(5);
        let outcome = match tokio::time::timeout(backstop, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => {
                return Err(Failure::new(
                    ErrorCode::WorkerLost,
                    "the skill's worker stopped",
                ));
            }
            Err(_) => {
                cancel.raise();
                return Err(Failure::new(
                    ErrorCode::Timeout,
                    format!("no answer from the skill's worker within {backstop:?}"),
                ));
            }
        };
        self.services()
            .metrics
            .sandboxed(&wasm.info.name, outcome.fuel_used, outcome.memory_bytes);
        let ms = |d: Duration| d.as_millis();
        outcome.result.map_err(|e| match e {
            CallError::Deadline { limit } => Failure::new(
                ErrorCode::Timeout,
                format!(
                    "{} ran past its {} ms budget and was stopped",
                    wasm.info.name,
                    ms(limit)
                ),
            ),
            CallError::FuelExhausted { limit } => Failure::new(
                ErrorCode::Timeout,
                format!(
                    "{} used all its fuel ({} ms at this board's speed) and was stopped",
                    wasm.info.name,
                    ms(limit)
                ),
            ),
            CallError::Cancelled => Failure::new(
                ErrorCode::Cancelled,
                "cancelled by system.cancel from this satellite",
            ),
            CallError::Limit(message) => Failure::new(
                ErrorCode::Limit,
                format!("{} was stopped: {message}", wasm.info.name),
            ),
            CallError::Trap(message) => Failure::new(
                ErrorCode::Trap,
                format!("{} crashed: {message}", wasm.info.name),
            ),
            CallError::BadOutput(message) => Failure::new(
                ErrorCode::BadOutput,
                format!(
                    "{} answered with something that is not a reply: {message}",
                    wasm.info.name
                ),
            ),
            CallError::Failed { code, message } => Failure {
                status: Status::Error,
                code: ErrorCode::Skill(code),
                message: message.clone(),
                details: Vec::new(),
                speech: Some(message),
            },
        })
    }

    fn finish(&self, ctx: Context, outcome: Result<SkillReply, Failure>) -> Reply {
        let elapsed = ctx.started.elapsed();
        let elapsed_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        let full = self.tier().audits_full_args();
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
        // A failure's record says what failed where "via hermes" would be.
        let mut notes: Vec<String> = Vec::new();
        if ctx.protocol != Protocol::NATIVE && outcome.is_ok() {
            notes.push(format!("via {}", ctx.protocol));
        }
        notes.extend(ctx.notes);
        let mut reply = Reply {
            id: ctx.id,
            intent: ctx.intent,
            status: Status::Ok,
            speech: None,
            data: None,
            error: None,
            audit: None,
            elapsed_ms: Some(elapsed_ms),
            confirm: None,
        };
        match outcome {
            Ok(answer) if ctx.asking.is_some() => {
                let token = ctx.asking.clone().unwrap_or_default();
                record.status = Some("confirm".into());
                notes.push(format!("waiting for a yes: question {token}"));
                reply.status = Status::Confirm;
                reply.speech = answer.speech;
                reply.confirm = Some(ConfirmBody {
                    token,
                    expires_s: self.services().confirmations.timeout().as_secs(),
                });
            }
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
                record.code = Some(failure.code.to_string());
                if let Some(message) = audit_message(&failure, full) {
                    notes.push(message);
                }
                reply.status = failure.status;
                reply.speech = failure.speech;
                reply.error = Some(ErrorBody {
                    code: failure.code,
                    message: failure.message,
                    details: failure.details,
                });
            }
        }
        if !notes.is_empty() {
            record.message = Some(notes.join("; "));
        }
        self.services()
            .metrics
            .answered(record.skill.as_deref(), reply.status, elapsed);
        reply.audit = self.audit(&record);
        reply
    }
}

impl Context {
    /// All of a decoded request is known before it runs.
    fn of(request: &Request) -> Context {
        let mut ctx = Context::new(&request.satellite, request.protocol);
        ctx.id = Some(request.id.clone());
        ctx.intent = Some(truncate(&request.intent, 128));
        ctx.args = Some(Value::Object(request.args.clone()));
        ctx
    }

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
            asking: None,
            answered: None,
            confirmed: false,
            notes: Vec::new(),
        }
    }
}

fn skill_failure(e: BuiltinError) -> Failure {
    match e {
        BuiltinError::Invalid { pointer, message } => {
            let pointer = format!("/args{pointer}");
            Failure {
                status: Status::Invalid,
                code: ErrorCode::BadArg,
                message: format!("{pointer}: {message}"),
                details: vec![Violation {
                    pointer,
                    message: message.clone(),
                }],
                speech: Some(message),
            }
        }
        BuiltinError::Refused { code, message } => Failure {
            status: code.status(),
            code,
            message: message.clone(),
            details: Vec::new(),
            speech: Some(message),
        },
        BuiltinError::Failed {
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

#[cfg(test)]
mod tests;
