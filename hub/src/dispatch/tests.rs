//! The dispatcher without a broker: every status it answers and every code
//! it gives, each checked in the reply and in the request's audit record.
//! Built-in skills run as they do in the hub; WebAssembly skills are small
//! hand-written modules run by a real pool of sandbox workers.

use hark_skill_sdk::Manifest;
use hark_skills_builtin::BuiltinSkill;
use hark_skills_builtin::audio::AudioPlay;
use hark_skills_builtin::cancel::SystemCancel;
use hark_skills_builtin::timer::TimerSet;

use super::*;
use crate::effects::kv::KvStore;
use crate::effects::testing::TestEnv;
use crate::policy::{Signature, SkillInfo, SkillKind};
use crate::registry::{ArgsSchema, LoadError};
use crate::sandbox::pool::Pool;
use crate::sandbox::{self, CallLimits, WasmSkill};

/// A built-in skill as the loader enters it, its manifest's permissions
/// replaced by `permissions` when given.
fn builtin(t: &TestEnv, runner: Box<dyn BuiltinSkill>, permissions: Option<&[&str]>) -> Skill {
    let mut manifest = Manifest::from_json(runner.manifest_json()).unwrap();
    if let Some(permissions) = permissions {
        manifest.permissions = permissions.iter().map(|p| p.to_string()).collect();
    }
    let schema = ArgsSchema::compile(manifest.args_schema.clone()).unwrap();
    let info = SkillInfo::new(
        SkillKind::Builtin,
        manifest,
        Signature::NotApplicable,
        Vec::new(),
    );
    let admission = policy::decide(t.env.tier.get(), &info, &Action::Load);
    Skill {
        info: Arc::new(info),
        schema,
        admission,
        runner: Runner::Builtin(runner),
    }
}

fn dispatcher(t: &TestEnv, skills: Vec<Skill>) -> Dispatcher {
    let mut registry = Registry::default();
    for skill in skills {
        registry.insert(skill);
    }
    Dispatcher::new(
        registry,
        t.env.clone(),
        1 << 16,
        Duration::from_millis(1500),
    )
}

/// A dispatcher whose one skill is the built-in `timer.set`, with its
/// manifest's permissions replaced by `permissions`.
fn timer_set_declaring(t: &TestEnv, permissions: &[&str]) -> Dispatcher {
    dispatcher(t, vec![builtin(t, Box::new(TimerSet), Some(permissions))])
}

/// The built-ins as the hub runs them.
fn builtins(t: &TestEnv) -> Dispatcher {
    dispatcher(
        t,
        vec![
            builtin(t, Box::new(TimerSet), None),
            builtin(t, Box::new(SystemCancel), None),
            builtin(t, Box::new(AudioPlay), None),
        ],
    )
}

/// Request `id` for `intent` from the kitchen.
fn request(id: &str, intent: &str, args: Value) -> Request {
    Request {
        id: id.into(),
        intent: intent.into(),
        args: args.as_object().unwrap().clone(),
        text: None,
        confidence: None,
        satellite: "kitchen".into(),
        protocol: Protocol::NATIVE,
    }
}

/// "Set a pasta timer for 5 minutes" from the kitchen.
fn pasta() -> Request {
    request(
        "r-1",
        "timer.set",
        json!({"duration": "5 minutes", "label": "pasta"}),
    )
}

/// The audit record of the request `id`.
fn record_of(t: &TestEnv, id: &str) -> Value {
    t.records()
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "request" && r["request_id"] == id)
        .unwrap_or_else(|| panic!("no request record for {id}: {:?}", t.records()))
}

/// The reply's error code, failing when it has none.
fn code(reply: &Reply) -> &ErrorCode {
    &reply.error.as_ref().expect("an error").code
}

fn message(reply: &Reply) -> &str {
    &reply.error.as_ref().expect("an error").message
}

// ---- WebAssembly skills: hand-written modules, a real pool ----

/// A module whose `hark_handle` runs `body` (which leaves an i64, the
/// packed reply) with `reply` as data at offset 16.
fn module(imports: &str, reply: &str, body: &str) -> String {
    let data: String = reply.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            (data (i32.const 16) "{data}")
            (func (export "hark_alloc") (param i32) (result i32) i32.const 1024)
            (func (export "hark_handle") (param i32 i32) (result i64) {body}))"#
    )
}

/// A module that answers `reply` at once.
fn answering(reply: &str) -> String {
    let packed = hark_skill_sdk::abi::pack(16, reply.len() as u32);
    module("", reply, &format!("i64.const {packed}"))
}

/// A module that never returns.
const SPINNING: &str = "(loop $l (br $l)) i64.const 0";

/// The WebAssembly skill `name` made of `wat`, signed by a trusted key,
/// its calls limited to `timeout_ms`, compiled for `engine`.
fn wasm(t: &TestEnv, engine: &wasmi::Engine, name: &str, wat: &str, timeout_ms: u64) -> Skill {
    let manifest: Manifest = serde_json::from_value(json!({
        "name": name, "version": "1.0.0", "trusted": true, "permissions": [],
        "limits": {"timeout_ms": timeout_ms},
    }))
    .unwrap();
    let limits = CallLimits::new(&manifest, Duration::from_millis(1500), 16, 100_000);
    let schema = ArgsSchema::compile(manifest.args_schema.clone()).unwrap();
    let info = Arc::new(SkillInfo::new(
        SkillKind::Wasm,
        manifest,
        Signature::Verified {
            signer: "ed25519:test".into(),
        },
        Vec::new(),
    ));
    let bytes = wat::parse_str(wat).unwrap();
    let module = sandbox::compile(engine, &bytes, &info.permissions, limits.memory_bytes)
        .unwrap_or_else(|problems| panic!("{name} does not load: {problems:?}"));
    let kv = Arc::new(KvStore::open(&t.dir.join("kv"), name).unwrap());
    let admission = policy::decide(t.env.tier.get(), &info, &Action::Load);
    Skill {
        info: info.clone(),
        schema,
        admission,
        runner: Runner::Wasm(Arc::new(WasmSkill {
            info,
            kv,
            module,
            limits,
        })),
    }
}

/// A dispatcher with `system.cancel` and the WebAssembly skills `(name,
/// wat)`, each allowed 200 ms, and a pool of two workers behind a queue of
/// four (one waiting call per satellite).
fn sandboxed(t: &TestEnv, skills: &[(&str, String)]) -> Dispatcher {
    let engine = sandbox::engine();
    let mut all = vec![builtin(t, Box::new(SystemCancel), None)];
    for (name, wat) in skills {
        all.push(wasm(t, &engine, name, wat, 200));
    }
    let d = dispatcher(t, all);
    let runtime = tokio::runtime::Handle::current();
    d.set_pool(Pool::start(2, 4, engine, t.env.clone(), runtime).unwrap());
    d
}

// ---- ok ----

#[tokio::test]
async fn a_builtin_that_succeeds_answers_ok_and_audits_its_rule() {
    let t = TestEnv::new("dispatch-ok", Tier::Trusted);
    let reply = builtins(&t).handle(pasta()).await;
    assert_eq!(reply.status, Status::Ok, "{reply:?}");
    assert!(reply.error.is_none());
    assert_eq!(reply.id.as_deref(), Some("r-1"));
    assert!(reply.speech.unwrap().to_lowercase().contains("pasta"));
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "ok");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["rule"], "builtin");
    assert_eq!(record["skill"], "timer.set");
    assert!(record["code"].is_null());
}

#[tokio::test]
async fn a_reply_carries_the_seq_of_its_audit_record() {
    let t = TestEnv::new("dispatch-seq", Tier::Trusted);
    let reply = builtins(&t).handle(pasta()).await;
    assert_eq!(
        Some(&json!(reply.audit.unwrap())),
        record_of(&t, "r-1").get("seq")
    );
}

#[tokio::test]
async fn args_are_redacted_in_the_audit_outside_the_convenient_tier() {
    let t = TestEnv::new("dispatch-redacted", Tier::Trusted);
    builtins(&t).handle(pasta()).await;
    let record = record_of(&t, "r-1");
    assert_eq!(record["args"]["label"], "<redacted>");
    assert!(record["result"].is_null());
}

#[tokio::test]
async fn args_and_result_are_audited_in_full_in_the_convenient_tier() {
    let t = TestEnv::new("dispatch-full", Tier::Convenient);
    builtins(&t).handle(pasta()).await;
    let record = record_of(&t, "r-1");
    assert_eq!(record["args"]["label"], "pasta");
    assert!(record["result"]["speech"].is_string(), "{record}");
}

// ---- unknown_intent ----

#[tokio::test]
async fn an_intent_no_skill_serves_is_unknown_with_a_suggestion() {
    let t = TestEnv::new("dispatch-unknown", Tier::Trusted);
    let reply = builtins(&t)
        .handle(request("r-1", "timer.sett", json!({})))
        .await;
    assert_eq!(reply.status, Status::UnknownIntent);
    assert_eq!(code(&reply), &ErrorCode::UnknownIntent);
    assert!(
        message(&reply).contains("did you mean timer.set?"),
        "{reply:?}"
    );
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "unknown_intent");
    assert_eq!(record["code"], "unknown_intent");
    assert!(record["skill"].is_null() && record["decision"].is_null());
}

// ---- denied ----

#[tokio::test]
async fn a_skill_refused_at_load_is_not_loaded_and_denied() {
    let t = TestEnv::new("dispatch-not-loaded", Tier::Trusted);
    let mut registry = Registry::default();
    registry.insert_broken(LoadError {
        name: "weather".into(),
        problems: "the signature does not match".into(),
    });
    let d = dispatcher(&t, Vec::new());
    d.replace_registry(registry);
    let reply = d.handle(request("r-1", "weather", json!({}))).await;
    assert_eq!(reply.status, Status::Denied);
    assert_eq!(code(&reply), &ErrorCode::NotLoaded);
    assert!(message(&reply).contains("the signature does not match"));
    let record = record_of(&t, "r-1");
    assert_eq!(record["code"], "not_loaded");
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["rule"], "load.invalid");
    assert_eq!(record["skill"], "weather");
}

#[tokio::test]
async fn a_wasm_skill_in_the_paranoid_tier_is_denied_with_the_tiers_rule() {
    let t = TestEnv::new("dispatch-paranoid", Tier::Paranoid);
    let engine = sandbox::engine();
    let skill = wasm(&t, &engine, "dice", &answering("{}"), 200);
    let reply = dispatcher(&t, vec![skill])
        .handle(request("r-1", "dice", json!({})))
        .await;
    assert_eq!(reply.status, Status::Denied);
    assert_eq!(code(&reply), &ErrorCode::Denied);
    assert!(message(&reply).ends_with("(rule tier.paranoid.builtins_only)"));
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "denied");
    assert_eq!(record["code"], "denied");
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["rule"], "tier.paranoid.builtins_only");
}

#[tokio::test]
async fn a_skill_without_a_runner_is_denied() {
    let t = TestEnv::new("dispatch-unavailable", Tier::Trusted);
    let mut skill = builtin(&t, Box::new(TimerSet), None);
    skill.runner = Runner::Unavailable;
    let reply = dispatcher(&t, vec![skill]).handle(pasta()).await;
    assert_eq!(reply.status, Status::Denied);
    assert_eq!(code(&reply), &ErrorCode::Denied);
    assert_eq!(
        message(&reply),
        "timer.set is not enabled under tier trusted"
    );
    assert_eq!(record_of(&t, "r-1")["code"], "denied");
}

#[tokio::test]
async fn a_builtin_effect_the_gate_refuses_is_denied_with_its_rule_in_every_tier() {
    for tier in [Tier::Paranoid, Tier::Trusted, Tier::Convenient] {
        let t = TestEnv::new(&format!("builtin-denied-{tier}"), tier);
        let dispatcher = timer_set_declaring(&t, &["audio.play"]);
        let reply = dispatcher.handle(pasta()).await;
        assert_eq!(reply.status, Status::Denied, "{tier}: {reply:?}");
        let error = reply.error.unwrap();
        assert_eq!(error.code, ErrorCode::Denied);
        assert_eq!(
            error.message,
            "timer.set does not declare the permission timer (rule permission.undeclared)",
            "{tier}"
        );
        assert!(t.env.services.timers.of_satellite("kitchen").is_empty());

        // The refusal, named as a WebAssembly skill's denied host call
        // is, then the request's own record.
        let records = t.records();
        let refusal = records
            .iter()
            .find(|r| r["kind"] == "refusal")
            .expect("a refusal record");
        assert_eq!(refusal["rule"], "permission.undeclared", "{tier}");
        assert_eq!(refusal["decision"], "deny");
        assert_eq!(refusal["skill"], "timer.set");
        assert_eq!(refusal["request_id"], "r-1");
        assert_eq!(refusal["satellite"], "kitchen");
        let request = records.last().unwrap();
        assert_eq!(request["kind"], "request");
        assert_eq!(request["status"], "denied", "{request}");
    }
}

#[tokio::test]
async fn a_builtin_effect_its_manifest_declares_passes_the_gate_in_every_tier() {
    for tier in [Tier::Paranoid, Tier::Trusted, Tier::Convenient] {
        let t = TestEnv::new(&format!("builtin-allowed-{tier}"), tier);
        let dispatcher = timer_set_declaring(&t, &["timer", "audio.play"]);
        let reply = dispatcher.handle(pasta()).await;
        assert_eq!(reply.status, Status::Ok, "{tier}: {reply:?}");
        assert_eq!(t.env.services.timers.of_satellite("kitchen").len(), 1);
        assert!(t.refusals().is_empty(), "{tier}");
    }
}

// ---- invalid ----

#[tokio::test]
async fn args_that_fail_the_schema_are_invalid_with_each_violation() {
    let t = TestEnv::new("dispatch-schema", Tier::Trusted);
    let reply = builtins(&t)
        .handle(request("r-1", "timer.set", json!({"label": "pasta"})))
        .await;
    assert_eq!(reply.status, Status::Invalid);
    assert_eq!(code(&reply), &ErrorCode::Schema);
    assert!(message(&reply).starts_with("args do not match the schema of timer.set"));
    assert!(!reply.error.unwrap().details.is_empty());
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "invalid");
    assert_eq!(record["code"], "schema");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid at ")
    );
}

#[tokio::test]
async fn an_arg_the_skill_cannot_use_is_a_bad_arg_at_its_pointer() {
    let t = TestEnv::new("dispatch-bad-arg", Tier::Trusted);
    let reply = builtins(&t)
        .handle(request("r-1", "timer.set", json!({"duration": "5 blorps"})))
        .await;
    assert_eq!(reply.status, Status::Invalid);
    assert_eq!(code(&reply), &ErrorCode::BadArg);
    assert!(reply.speech.is_some(), "a person hears why");
    assert_eq!(reply.error.unwrap().details[0].pointer, "/args/duration");
    let record = record_of(&t, "r-1");
    assert_eq!(record["code"], "bad_arg");
    assert_eq!(record["message"], "invalid at /args/duration");
}

#[tokio::test]
async fn a_sound_the_host_cannot_use_is_a_bad_arg_not_bad_sound() {
    let t = TestEnv::new("dispatch-bad-sound", Tier::Trusted);
    let reply = builtins(&t)
        .handle(request(
            "r-1",
            "audio.play",
            json!({"sound": "doorbell.wav"}),
        ))
        .await;
    assert_eq!(reply.status, Status::Invalid);
    assert_eq!(code(&reply), &ErrorCode::BadArg);
    assert_eq!(reply.error.unwrap().details[0].pointer, "/args/sound");
    assert_eq!(record_of(&t, "r-1")["code"], "bad_arg");
}

// ---- error (built-ins) ----

#[tokio::test]
async fn a_timer_past_the_satellites_limit_is_too_many_timers() {
    let t = TestEnv::new("dispatch-too-many", Tier::Trusted);
    let d = builtins(&t);
    let limit = t.env.services.timers.limits().per_satellite;
    for n in 0..limit {
        let reply = d
            .handle(request(
                &format!("r-{n}"),
                "timer.set",
                json!({"duration": "5 minutes"}),
            ))
            .await;
        assert_eq!(reply.status, Status::Ok, "{reply:?}");
    }
    let reply = d.handle(pasta()).await;
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::TooManyTimers);
    assert!(reply.speech.is_some(), "a person hears why");
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "error");
    assert_eq!(record["code"], "too_many_timers");
}

// ---- busy, shutting down: refused before running ----

#[tokio::test]
async fn a_refused_request_is_answered_busy_and_audited_without_a_decision() {
    let t = TestEnv::new("dispatch-refuse-busy", Tier::Trusted);
    let failure = Failure::new(ErrorCode::Busy, "the queue is full");
    let reply = builtins(&t).refuse(Known::of(&pasta()), failure);
    assert_eq!(reply.status, Status::Busy);
    assert_eq!(code(&reply), &ErrorCode::Busy);
    assert_eq!(reply.id.as_deref(), Some("r-1"));
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "busy");
    assert_eq!(record["code"], "busy");
    assert!(record["decision"].is_null() && record["skill"].is_null());
}

#[tokio::test]
async fn a_request_refused_at_shutdown_is_busy_with_its_own_code() {
    let t = TestEnv::new("dispatch-refuse-shutdown", Tier::Trusted);
    let failure = Failure::new(ErrorCode::ShuttingDown, "the hub is shutting down");
    let reply = builtins(&t).refuse(Known::of(&pasta()), failure);
    assert_eq!(reply.status, Status::Busy);
    assert_eq!(code(&reply), &ErrorCode::ShuttingDown);
    assert_eq!(record_of(&t, "r-1")["code"], "shutting_down");
}

#[tokio::test]
async fn a_refused_request_with_an_invalid_id_is_answered_without_it() {
    let t = TestEnv::new("dispatch-refuse-bad-id", Tier::Trusted);
    let mut known = Known::new("kitchen", Protocol::NATIVE);
    known.id = Some("x".repeat(65));
    let reply = builtins(&t).refuse(known, Failure::new(ErrorCode::BadId, "too long"));
    assert_eq!(reply.status, Status::Invalid);
    assert_eq!(reply.id, None);
    let records = t.records();
    let record = records.last().unwrap();
    assert_eq!(record["code"], "bad_id");
    assert!(record["request_id"].is_null());
}

// ---- WebAssembly skills ----

#[tokio::test]
async fn a_wasm_skills_reply_is_answered_ok() {
    let t = TestEnv::new("dispatch-wasm-ok", Tier::Trusted);
    let skill = answering(r#"{"speech": "Four.", "data": {"roll": 4}}"#);
    let d = sandboxed(&t, &[("dice", skill)]);
    let reply = d.handle(request("r-1", "dice", json!({}))).await;
    assert_eq!(reply.status, Status::Ok, "{reply:?}");
    assert_eq!(reply.speech.as_deref(), Some("Four."));
    assert_eq!(reply.data, Some(json!({"roll": 4})));
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "ok");
    assert_eq!(record["rule"], "tier.trusted.signed");
}

#[tokio::test]
async fn a_wasm_skills_own_error_code_is_passed_on_and_spoken() {
    let t = TestEnv::new("dispatch-wasm-skill-code", Tier::Trusted);
    let reply = r#"{"error": {"code": "no_lights", "message": "There are no lights here."}}"#;
    let d = sandboxed(&t, &[("lights", answering(reply))]);
    let reply = d.handle(request("r-1", "lights", json!({}))).await;
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::Skill("no_lights".into()));
    assert_eq!(reply.speech.as_deref(), Some("There are no lights here."));
    let record = record_of(&t, "r-1");
    assert_eq!(record["code"], "no_lights");
    assert!(
        record["message"].is_null(),
        "a failure's words stay out: {record}"
    );
}

#[tokio::test]
async fn a_wasm_skill_that_traps_is_an_error() {
    let t = TestEnv::new("dispatch-wasm-trap", Tier::Trusted);
    let d = sandboxed(&t, &[("crash", module("", "", "unreachable"))]);
    let reply = d.handle(request("r-1", "crash", json!({}))).await;
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::Trap);
    assert!(message(&reply).starts_with("crash crashed: reached unreachable code"));
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "error");
    assert_eq!(record["code"], "trap");
}

#[tokio::test]
async fn a_wasm_skill_that_answers_something_else_is_bad_output() {
    let t = TestEnv::new("dispatch-wasm-bad-output", Tier::Trusted);
    let d = sandboxed(&t, &[("mumble", answering("mumble"))]);
    let reply = d.handle(request("r-1", "mumble", json!({}))).await;
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::BadOutput);
    assert!(
        message(&reply).contains("the reply is not JSON"),
        "{reply:?}"
    );
    assert_eq!(record_of(&t, "r-1")["code"], "bad_output");
}

#[tokio::test]
async fn a_wasm_skill_that_runs_past_its_budget_times_out() {
    let t = TestEnv::new("dispatch-wasm-timeout", Tier::Trusted);
    let d = sandboxed(&t, &[("spin", module("", "", SPINNING))]);
    let reply = d.handle(request("r-1", "spin", json!({}))).await;
    assert_eq!(reply.status, Status::Timeout);
    assert_eq!(code(&reply), &ErrorCode::Timeout);
    assert!(message(&reply).ends_with("and was stopped"), "{reply:?}");
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "timeout");
    assert_eq!(record["code"], "timeout");
}

#[tokio::test]
async fn a_wasm_skill_that_keeps_calling_past_a_cap_is_stopped_at_the_limit() {
    let t = TestEnv::new("dispatch-wasm-limit", Tier::Trusted);
    let imports = r#"(import "hark" "random" (func $random (param i32 i32) (result i32)))"#;
    let body = "(loop $l (drop (call $random (i32.const 0) (i32.const 1))) (br $l)) i64.const 0";
    let d = sandboxed(&t, &[("greedy", module(imports, "", body))]);
    let reply = d.handle(request("r-1", "greedy", json!({}))).await;
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::Limit);
    assert!(message(&reply).contains("hark.random called"), "{reply:?}");
    assert_eq!(record_of(&t, "r-1")["code"], "limit");
}

#[tokio::test]
async fn a_wasm_call_stopped_by_system_cancel_is_cancelled() {
    let t = TestEnv::new("dispatch-wasm-cancelled", Tier::Trusted);
    let d = sandboxed(&t, &[("spin", module("", "", SPINNING))]);
    let (spun, stop) = tokio::join!(
        d.handle(request("r-1", "spin", json!({}))),
        d.handle(request("r-2", "system.cancel", json!({}))),
    );
    assert_eq!(spun.status, Status::Error);
    assert_eq!(code(&spun), &ErrorCode::Cancelled);
    assert_eq!(stop.status, Status::Ok);
    assert_eq!(stop.data.unwrap()["calls"], 1);
    assert_eq!(record_of(&t, "r-1")["code"], "cancelled");
}

#[tokio::test]
async fn a_satellite_past_its_share_of_the_sandbox_queue_is_busy() {
    let t = TestEnv::new("dispatch-wasm-busy", Tier::Trusted);
    let d = sandboxed(&t, &[("spin", module("", "", SPINNING))]);
    // The first call runs or waits; while it waits or runs, only one more
    // may wait: of three at once, one at least is refused.
    let (r1, r2, r3) = tokio::join!(
        d.handle(request("r-1", "spin", json!({}))),
        d.handle(request("r-2", "spin", json!({}))),
        d.handle(request("r-3", "spin", json!({}))),
    );
    let busy: Vec<Reply> = [r1, r2, r3]
        .into_iter()
        .filter(|r| r.status == Status::Busy)
        .collect();
    assert!(!busy.is_empty(), "none of three was refused");
    for reply in busy {
        assert_eq!(code(&reply), &ErrorCode::Busy);
        assert!(
            message(&reply).contains("its share of the queue"),
            "{reply:?}"
        );
        let record = record_of(&t, reply.id.as_deref().unwrap());
        assert_eq!(record["status"], "busy");
        assert_eq!(record["code"], "busy");
    }
}

#[tokio::test]
async fn a_wasm_skill_without_a_sandbox_is_no_sandbox() {
    let t = TestEnv::new("dispatch-wasm-no-sandbox", Tier::Trusted);
    let engine = sandbox::engine();
    let skill = wasm(&t, &engine, "dice", &answering("{}"), 200);
    let reply = dispatcher(&t, vec![skill])
        .handle(request("r-1", "dice", json!({})))
        .await;
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::NoSandbox);
    let record = record_of(&t, "r-1");
    assert_eq!(record["code"], "no_sandbox");
    assert_eq!(record["decision"], "allow");
}

// ---- internal: a bug of the hub's while handling ----

/// A job whose decoding hits a bug; keeps the reply it is answered.
#[derive(Debug)]
struct Buggy(Arc<std::sync::Mutex<Option<Reply>>>);

impl crate::protocols::Job for Buggy {
    fn decode(&mut self) -> Result<Request, Box<crate::request::Rejected>> {
        panic!("a bug in decoding");
    }

    fn known(&mut self) -> Known {
        Known::of(&pasta())
    }

    fn answer(self: Box<Self>, reply: Reply) -> crate::protocols::Sending {
        *self.0.lock().unwrap() = Some(reply);
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_panic_while_handling_is_answered_internal_and_audited() {
    let t = TestEnv::new("dispatch-internal", Tier::Trusted);
    let answered = Arc::default();
    crate::protocols::run(&builtins(&t), Box::new(Buggy(Arc::clone(&answered)))).await;
    let reply = answered.lock().unwrap().take().expect("an answer");
    assert_eq!(reply.status, Status::Error);
    assert_eq!(code(&reply), &ErrorCode::Internal);
    assert!(message(&reply).contains("a bug in decoding"), "{reply:?}");
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "error");
    assert_eq!(record["code"], "internal");
}

// ---- error: a sound file that cannot be played ----

/// `t`'s services, with a media folder holding `broken.wav`, which is not
/// a WAV file.
fn with_broken_sound(t: &TestEnv) -> Arc<Env> {
    use crate::audio::{AudioBackend, AudioOut};
    use crate::playback::PlaybackService;
    let media = t.dir.join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("broken.wav"), b"not a wav file").unwrap();
    let s = &t.env.services;
    let out = AudioOut::open(AudioBackend::Null).unwrap();
    Arc::new(Env {
        tier: crate::policy::TierCell::new(t.env.tier.get()),
        audit: t.env.audit.clone(),
        services: Services {
            timers: s.timers.clone(),
            playback: PlaybackService::new(out, Some(media), s.outbox.clone()),
            inflight: s.inflight.clone(),
            confirmations: s.confirmations.clone(),
            outbox: s.outbox.clone(),
            topics: s.topics.clone(),
            secrets: s.secrets.clone(),
            http: s.http.clone(),
            metrics: s.metrics.clone(),
        },
    })
}

#[tokio::test]
async fn a_sound_file_that_is_not_a_wav_is_unplayable() {
    let t = TestEnv::new("dispatch-unplayable", Tier::Trusted);
    let mut registry = Registry::default();
    registry.insert(builtin(&t, Box::new(AudioPlay), None));
    let d = Dispatcher::new(
        registry,
        with_broken_sound(&t),
        1 << 16,
        Duration::from_millis(1500),
    );
    let reply = d
        .handle(request("r-1", "audio.play", json!({"sound": "broken.wav"})))
        .await;
    assert_eq!(reply.status, Status::Error, "{reply:?}");
    assert_eq!(code(&reply), &ErrorCode::SoundUnplayable);
    assert_eq!(
        reply.speech.as_deref(),
        Some("That sound file can't be played.")
    );
    let record = record_of(&t, "r-1");
    assert_eq!(record["status"], "error");
    assert_eq!(record["code"], "sound_unplayable");
}

// ---- confirmation: a manifest that asks first ----

#[tokio::test]
async fn a_skill_whose_manifest_says_confirm_asks_its_prompt_and_a_yes_runs_it() {
    use hark_skills_builtin::confirm::SystemConfirm;
    let t = TestEnv::new("dispatch-confirm", Tier::Paranoid);
    let mut set = builtin(&t, Box::new(TimerSet), None);
    let mut info = (*set.info).clone();
    info.manifest.confirm = true;
    info.manifest.confirm_prompt = Some("Set a {label} timer for {duration}?".into());
    set.info = Arc::new(info);
    let d = dispatcher(&t, vec![set, builtin(&t, Box::new(SystemConfirm), None)]);

    let asked = d.handle(pasta()).await;
    assert_eq!(asked.status, Status::Confirm, "{asked:?}");
    assert_eq!(
        asked.speech.as_deref(),
        Some("Set a pasta timer for 5 minutes?")
    );
    let token = asked.confirm.clone().expect("a token").token;
    assert_eq!(record_of(&t, "r-1")["status"], "confirm");
    assert!(t.env.services.timers.is_empty(), "nothing ran yet");

    // Another satellite's yes, even naming the token, is nothing to confirm.
    let mut stranger = request(
        "r-2",
        "system.confirm",
        json!({"answer": "yes", "token": token}),
    );
    stranger.satellite = "hall".into();
    let refused = d.handle(stranger).await;
    assert_eq!(code(&refused), &ErrorCode::NoConfirmation, "{refused:?}");

    let ran = d
        .handle(request("r-3", "system.confirm", json!({"answer": "yes"})))
        .await;
    assert_eq!(ran.id.as_deref(), Some("r-1"), "the asking request's id");
    assert_eq!(ran.status, Status::Ok, "{ran:?}");
    assert_eq!(t.env.services.timers.len(), 1);
    assert!(t.env.services.confirmations.is_empty());
}
