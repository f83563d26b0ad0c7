//! The `hark` host functions of ABI 1 (see `hark_skill_sdk::abi`).
//!
//! This is the only place guest memory is touched. Every pointer/length pair
//! is checked against the guest's memory first: one outside it traps the
//! call (the skill is broken or hostile). Every function that acts asks the
//! policy gate first, and every denial is audited with the rule that decided.
//! A refusal returns a negative [`Code`] and leaves a sentence for
//! `last_error`.

use std::sync::Arc;
use std::time::Duration;

use hark_skill_sdk::abi::{self, Code};
use hark_skill_sdk::manifest::topic_matches;
use hark_skill_sdk::{Manifest, Permission};
use hark_skills_builtin::Target;
use wasmi::{Caller, Error, Extern, Linker, Memory, StoreLimits};

use super::kv::KvStore;
use super::secrets::SecretStore;
use crate::audit::{self, Audit};
use crate::events::{Message, Outbox, Protocol};
use crate::host::Services;
use crate::mqtt::topics::Topics;
use crate::policy::{self, Action, Signature, SkillKind, Subject, Tier};

/// Most log lines one call may write (the rest are dropped).
pub const MAX_LOGS_PER_CALL: u32 = 64;
/// Most messages one call may publish.
pub const MAX_PUBLISHES_PER_CALL: u32 = 16;
/// Most timers one call may start.
pub const MAX_TIMERS_PER_CALL: u32 = 4;
/// Most random bytes per `random` call.
pub const MAX_RANDOM: usize = 4096;

/// What one skill is, for its host calls.
#[derive(Debug)]
pub struct SkillInfo {
    pub name: String,
    pub manifest: Manifest,
    pub permissions: Vec<Permission>,
    pub signature: Signature,
    pub grants: Vec<Permission>,
    pub kv: Arc<KvStore>,
}

impl SkillInfo {
    fn subject(&self) -> Subject<'_> {
        Subject {
            kind: SkillKind::Wasm,
            manifest: &self.manifest,
            signature: &self.signature,
            grants: &self.grants,
        }
    }
}

/// What the hub lends every call: its services and its rules.
#[derive(Debug)]
pub struct HostEnv {
    pub tier: Tier,
    pub services: Services,
    pub outbox: Outbox,
    pub topics: Topics,
    pub audit: Arc<Audit>,
    /// `<state_dir>/secrets.toml`, read once and kept until it changes.
    pub secrets: SecretStore,
}

/// The store data of one call.
#[derive(Debug)]
pub struct CallState {
    pub limits: StoreLimits,
    pub skill: Arc<SkillInfo>,
    pub env: Arc<HostEnv>,
    pub satellite: String,
    pub request_id: String,
    pub protocol: Protocol,
    last_error: String,
    logs: u32,
    publishes: u32,
    timers: u32,
}

impl CallState {
    /// The state of a call; [`super::exec::call`] sets its store limits.
    pub fn new(
        skill: Arc<SkillInfo>,
        env: Arc<HostEnv>,
        satellite: &str,
        request_id: &str,
        protocol: Protocol,
    ) -> CallState {
        CallState {
            limits: StoreLimits::default(),
            skill,
            env,
            satellite: satellite.to_string(),
            request_id: request_id.to_string(),
            protocol,
            last_error: String::new(),
            logs: 0,
            publishes: 0,
            timers: 0,
        }
    }

    /// Records why a host call failed and returns its code.
    fn fail(&mut self, code: Code, message: impl Into<String>) -> i32 {
        self.last_error = message.into();
        code as i32
    }

    fn kv_failed(&mut self, e: &super::kv::KvError) -> i32 {
        self.fail(e.code(), e.to_string())
    }

    /// Asks the gate; a denial is audited and becomes `Code::Denied`.
    fn allowed(&mut self, permission: &Permission) -> Result<(), i32> {
        let decision = policy::decide(
            self.env.tier,
            &self.skill.subject(),
            &Action::Use(permission),
        );
        if decision.allow {
            return Ok(());
        }
        self.deny(decision.rule, &decision.reason);
        Err(Code::Denied as i32)
    }

    fn deny(&mut self, rule: &str, reason: &str) {
        self.env.audit.record(&audit::Record {
            kind: audit::Kind::Refusal,
            satellite: Some(self.satellite.clone()),
            request_id: Some(self.request_id.clone()),
            skill: Some(self.skill.name.clone()),
            decision: Some(audit::Decision::Deny),
            rule: Some(rule.to_string()),
            message: Some(reason.to_string()),
            ..Default::default()
        });
        tracing::warn!(skill = %self.skill.name, satellite = %self.satellite, rule, "host call denied: {reason}");
        self.last_error = reason.to_string();
    }
}

fn memory(caller: &Caller<'_, CallState>) -> Result<Memory, Error> {
    caller
        .get_export(abi::EXPORT_MEMORY)
        .and_then(Extern::into_memory)
        .ok_or_else(|| Error::new("the skill exports no memory"))
}

/// Checks `ptr..ptr+len` lies inside the guest's memory, or traps.
fn range(
    caller: &Caller<'_, CallState>,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<(usize, usize), Error> {
    let size = memory(caller)?.data_size(caller);
    let (start, n) = (ptr as u32 as usize, len as u32 as usize);
    if ptr < 0 || len < 0 || start.checked_add(n).is_none_or(|end| end > size) {
        return Err(Error::new(format!(
            "hark.{what}: pointer {ptr} with length {len} is outside the skill's memory ({size} bytes)"
        )));
    }
    Ok((start, n))
}

fn read(caller: &Caller<'_, CallState>, what: &str, ptr: i32, len: i32) -> Result<Vec<u8>, Error> {
    let (start, n) = range(caller, what, ptr, len)?;
    let mut buf = vec![0; n];
    memory(caller)?
        .read(caller, start, &mut buf)
        .map_err(|e| Error::new(format!("hark.{what}: {e}")))?;
    Ok(buf)
}

/// Writes `bytes` at `out` when they fit in `cap`; returns their length
/// either way, as ABI 1 says.
fn write_out(
    caller: &mut Caller<'_, CallState>,
    what: &str,
    out: i32,
    cap: i32,
    bytes: &[u8],
) -> Result<i32, Error> {
    let (start, cap) = range(caller, what, out, cap)?;
    if bytes.len() <= cap {
        memory(caller)?
            .write(&mut *caller, start, bytes)
            .map_err(|e| Error::new(format!("hark.{what}: {e}")))?;
    }
    Ok(i32::try_from(bytes.len()).unwrap_or(i32::MAX))
}

/// Reads a UTF-8 string of at most `max` bytes; `Err(code)` when it is
/// too long or not UTF-8 (after the range check, which traps).
fn read_str(
    caller: &mut Caller<'_, CallState>,
    what: &str,
    ptr: i32,
    len: i32,
    max: usize,
) -> Result<Result<String, i32>, Error> {
    range(caller, what, ptr, len)?;
    if len as usize > max {
        let code = caller.data_mut().fail(
            Code::TooLarge,
            format!("{what}: {len} bytes; the limit is {max}"),
        );
        return Ok(Err(code));
    }
    let bytes = read(caller, what, ptr, len)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(_) => Err(caller
            .data_mut()
            .fail(Code::Invalid, format!("{what}: not UTF-8"))),
    })
}

/// Unwraps `Result<Result<T, code>, trap>` inside a host function.
macro_rules! try_code {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(code) => return Ok(code.into()),
        }
    };
}

/// A linker with every host function of ABI 1.
pub fn linker(engine: &wasmi::Engine) -> Linker<CallState> {
    let mut linker = Linker::new(engine);
    define(&mut linker).expect("host functions are defined once each");
    linker
}

fn define(linker: &mut Linker<CallState>) -> Result<(), wasmi::errors::LinkerError> {
    let m = abi::MODULE;

    linker.func_wrap(
        m,
        "log",
        |caller: Caller<'_, CallState>, level: i32, ptr: i32, len: i32| -> Result<(), Error> {
            range(&caller, "log", ptr, len)?;
            let state = caller.data();
            if state.logs >= MAX_LOGS_PER_CALL {
                return Ok(());
            }
            let bytes = read(&caller, "log", ptr, len.min(abi::MAX_LOG as i32))?;
            let text = String::from_utf8_lossy(&bytes);
            let state = caller.data();
            let (skill, sat) = (state.skill.name.as_str(), state.satellite.as_str());
            match level {
                0 => tracing::error!(target: "skill", skill, satellite = sat, "{text}"),
                1 => tracing::warn!(target: "skill", skill, satellite = sat, "{text}"),
                2 => tracing::info!(target: "skill", skill, satellite = sat, "{text}"),
                3 => tracing::debug!(target: "skill", skill, satellite = sat, "{text}"),
                _ => tracing::trace!(target: "skill", skill, satellite = sat, "{text}"),
            }
            let mut caller = caller;
            caller.data_mut().logs += 1;
            Ok(())
        },
    )?;

    linker.func_wrap(
        m,
        "last_error",
        |mut caller: Caller<'_, CallState>, out: i32, cap: i32| -> Result<i32, Error> {
            let message = caller.data().last_error.clone();
            write_out(&mut caller, "last_error", out, cap, message.as_bytes())
        },
    )?;

    linker.func_wrap(m, "now_ms", |_: Caller<'_, CallState>| -> i64 {
        crate::timers::now_ms() as i64
    })?;

    linker.func_wrap(
        m,
        "random",
        |mut caller: Caller<'_, CallState>, out: i32, len: i32| -> Result<i32, Error> {
            let (start, n) = range(&caller, "random", out, len)?;
            if n > MAX_RANDOM {
                return Ok(caller.data_mut().fail(
                    Code::TooLarge,
                    format!("random: {n} bytes; the limit is {MAX_RANDOM}"),
                ));
            }
            let mut buf = vec![0; n];
            if let Err(e) = getrandom::fill(&mut buf) {
                return Ok(caller
                    .data_mut()
                    .fail(Code::Internal, format!("random: {e}")));
            }
            memory(&caller)?
                .write(&mut caller, start, &buf)
                .map_err(|e| Error::new(format!("hark.random: {e}")))?;
            Ok(0)
        },
    )?;

    linker.func_wrap(
        m,
        "kv_get",
        |mut caller: Caller<'_, CallState>,
         kp: i32,
         kl: i32,
         out: i32,
         cap: i32|
         -> Result<i32, Error> {
            range(&caller, "kv_get", out, cap)?;
            try_code!(Ok::<_, Error>(caller.data_mut().allowed(&Permission::Kv)));
            let key = try_code!(read_str(&mut caller, "kv_get key", kp, kl, abi::MAX_KV_KEY));
            let value = caller.data().skill.kv.get(&key);
            match value {
                Some(value) => write_out(&mut caller, "kv_get", out, cap, &value),
                None => Ok(caller
                    .data_mut()
                    .fail(Code::NotFound, format!("no value under \"{key}\""))),
            }
        },
    )?;

    linker.func_wrap(
        m,
        "kv_set",
        |mut caller: Caller<'_, CallState>,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32|
         -> Result<i32, Error> {
            range(&caller, "kv_set value", vp, vl)?;
            try_code!(Ok::<_, Error>(caller.data_mut().allowed(&Permission::Kv)));
            let key = try_code!(read_str(&mut caller, "kv_set key", kp, kl, abi::MAX_KV_KEY));
            if vl as usize > abi::MAX_KV_VALUE {
                return Ok(caller.data_mut().fail(
                    Code::TooLarge,
                    format!(
                        "kv_set: the value is {vl} bytes; the limit is {}",
                        abi::MAX_KV_VALUE
                    ),
                ));
            }
            let value = read(&caller, "kv_set value", vp, vl)?;
            let result = caller.data().skill.kv.set(&key, value, usize::MAX);
            Ok(match result {
                Ok(_) => 0,
                Err(e) => caller.data_mut().kv_failed(&e),
            })
        },
    )?;

    linker.func_wrap(
        m,
        "kv_delete",
        |mut caller: Caller<'_, CallState>, kp: i32, kl: i32| -> Result<i32, Error> {
            try_code!(Ok::<_, Error>(caller.data_mut().allowed(&Permission::Kv)));
            let key = try_code!(read_str(
                &mut caller,
                "kv_delete key",
                kp,
                kl,
                abi::MAX_KV_KEY
            ));
            let result = caller.data().skill.kv.delete(&key, usize::MAX);
            Ok(match result {
                Ok(Some(_)) => 0,
                Ok(None) => caller
                    .data_mut()
                    .fail(Code::NotFound, format!("no value under \"{key}\"")),
                Err(e) => caller.data_mut().kv_failed(&e),
            })
        },
    )?;

    linker.func_wrap(
        m,
        "timer_start",
        |mut caller: Caller<'_, CallState>, ms: i64, lp: i32, ll: i32| -> Result<i64, Error> {
            try_code!(Ok::<_, Error>(
                caller
                    .data_mut()
                    .allowed(&Permission::Timer)
                    .map_err(i64::from)
            ));
            let label = try_code!(
                read_str(&mut caller, "timer_start label", lp, ll, 64)
                    .map(|r| r.map_err(i64::from))
            );
            let state = caller.data_mut();
            if !(1000..=7 * 24 * 3600 * 1000).contains(&ms) {
                return Ok(i64::from(state.fail(
                    Code::Invalid,
                    format!("timer_start: {ms} ms is outside 1 s to 7 days"),
                )));
            }
            if state.timers >= MAX_TIMERS_PER_CALL {
                return Ok(i64::from(state.fail(
                    Code::Limit,
                    format!("timer_start: at most {MAX_TIMERS_PER_CALL} timers per call"),
                )));
            }
            let label = Some(label.trim()).filter(|l| !l.is_empty());
            let result = state.env.services.timers.start(
                &state.satellite,
                state.protocol,
                label,
                Duration::from_millis(ms as u64),
            );
            Ok(match result {
                Ok(timer) => {
                    state.timers += 1;
                    timer
                        .id
                        .trim_start_matches("t-")
                        .parse::<i64>()
                        .unwrap_or(0)
                }
                Err(crate::timers::StartError::Timer(e)) => {
                    i64::from(state.fail(Code::Limit, e.to_string()))
                }
                Err(crate::timers::StartError::Store(e)) => {
                    i64::from(state.fail(Code::Internal, e.to_string()))
                }
            })
        },
    )?;

    linker.func_wrap(
        m,
        "timer_cancel",
        |mut caller: Caller<'_, CallState>, n: i64| -> Result<i32, Error> {
            try_code!(Ok::<_, Error>(
                caller.data_mut().allowed(&Permission::Timer)
            ));
            let state = caller.data_mut();
            let id = format!("t-{n}");
            // Only the asking satellite's timers: TimerService::cancel filters by satellite.
            match state
                .env
                .services
                .timers
                .cancel(&state.satellite, std::slice::from_ref(&id))
            {
                Ok(gone) if gone.is_empty() => {
                    Ok(state.fail(Code::NotFound, format!("no timer {id} on this satellite")))
                }
                Ok(_) => Ok(0),
                Err(e) => Ok(state.fail(Code::Internal, e.to_string())),
            }
        },
    )?;

    linker.func_wrap(
        m,
        "audio_play",
        |mut caller: Caller<'_, CallState>,
         np: i32,
         nl: i32,
         target: i32,
         permille: i32|
         -> Result<i32, Error> {
            try_code!(Ok::<_, Error>(
                caller.data_mut().allowed(&Permission::AudioPlay)
            ));
            let sound = try_code!(read_str(&mut caller, "audio_play name", np, nl, 255));
            let state = caller.data_mut();
            let target = match target {
                0 => Target::Hub,
                1 => Target::Satellite,
                other => {
                    return Ok(state.fail(
                        Code::Invalid,
                        format!("audio_play: target {other} is not 0 (hub) or 1 (satellite)"),
                    ));
                }
            };
            let volume = (permille.clamp(0, 1000) as f32) / 1000.0;
            let playback = state.env.services.playback.clone();
            match playback.play(&state.satellite, state.protocol, &sound, target, volume) {
                Ok(_) => Ok(0),
                Err(e) if e.pointer.is_some() => Ok(state.fail(Code::Invalid, e.message)),
                Err(e) => Ok(state.fail(Code::Internal, e.detail.unwrap_or(e.message))),
            }
        },
    )?;

    linker.func_wrap(m, "mqtt_publish", |mut caller: Caller<'_, CallState>, tp: i32, tl: i32, pp: i32, pl: i32| -> Result<i32, Error> {
        range(&caller, "mqtt_publish payload", pp, pl)?;
        let topic = try_code!(read_str(&mut caller, "mqtt_publish topic", tp, tl, 256));
        if pl as usize > abi::MAX_PUBLISH {
            return Ok(caller.data_mut().fail(Code::TooLarge, format!("mqtt_publish: the payload is {pl} bytes; the limit is {}", abi::MAX_PUBLISH)));
        }
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            return Ok(caller.data_mut().fail(Code::Invalid, format!("mqtt_publish: \"{topic}\" is not a topic to publish to")));
        }
        let state = caller.data_mut();
        if state.env.topics.is_own(&topic) || topic.starts_with('$') {
            state.deny("mqtt.own_topics", &format!("mqtt_publish: \"{topic}\" belongs to the hub or the broker; skills never publish there"));
            return Ok(Code::Denied as i32);
        }
        let candidates: Vec<Permission> = state
            .skill
            .permissions
            .iter()
            .filter(|p| matches!(p, Permission::MqttPublish(filter) if topic_matches(filter, &topic)))
            .cloned()
            .collect();
        if candidates.is_empty() {
            state.deny("mqtt.outside_filter", &format!("mqtt_publish: \"{topic}\" is outside every mqtt.publish filter the manifest declares"));
            return Ok(Code::Denied as i32);
        }
        if !candidates.iter().any(|p| state.allowed(p).is_ok()) {
            return Ok(Code::Denied as i32);
        }
        if state.publishes >= MAX_PUBLISHES_PER_CALL {
            return Ok(state.fail(Code::Limit, format!("mqtt_publish: at most {MAX_PUBLISHES_PER_CALL} messages per call")));
        }
        let payload = read(&caller, "mqtt_publish payload", pp, pl)?;
        let state = caller.data_mut();
        match state.env.outbox.try_send(Message { topic, payload, retain: false }) {
            Ok(()) => {
                state.publishes += 1;
                Ok(0)
            }
            Err(_) => Ok(state.fail(Code::Limit, "mqtt_publish: the hub's outgoing queue is full; try again later")),
        }
    })?;

    linker.func_wrap(
        m,
        "secret_read",
        |mut caller: Caller<'_, CallState>,
         ip: i32,
         il: i32,
         out: i32,
         cap: i32|
         -> Result<i32, Error> {
            range(&caller, "secret_read", out, cap)?;
            let id = try_code!(read_str(&mut caller, "secret_read id", ip, il, 64));
            let permission = Permission::SecretsRead(id.clone());
            try_code!(Ok::<_, Error>(caller.data_mut().allowed(&permission)));
            let env = caller.data().env.clone();
            match env.secrets.read(&id).value {
                Ok(Some(value)) => {
                    write_out(&mut caller, "secret_read", out, cap, value.as_bytes())
                }
                Ok(None) => Ok(caller
                    .data_mut()
                    .fail(Code::NotFound, format!("the secret store has no \"{id}\""))),
                Err(e) => Ok(caller.data_mut().fail(Code::Internal, e)),
            }
        },
    )?;

    linker.func_wrap(m, "http_request", |mut caller: Caller<'_, CallState>, rp: i32, rl: i32, out: i32, cap: i32| -> Result<i32, Error> {
        range(&caller, "http_request", rp, rl)?;
        range(&caller, "http_request", out, cap)?;
        let state = caller.data_mut();
        let declared: Vec<Permission> =
            state.skill.permissions.iter().filter(|p| matches!(p, Permission::NetHttp(_))).cloned().collect();
        if !declared.iter().any(|p| state.allowed(p).is_ok()) {
            return Ok(Code::Denied as i32);
        }
        Ok(state.fail(
            Code::Unsupported,
            "net.http is not supported by this hub yet: the permission was accepted, but no request is made",
        ))
    })?;

    Ok(())
}
