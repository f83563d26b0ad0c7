//! The `hark` host functions of ABI 1 (see `hark_skill_sdk::abi`), one small
//! function each: copy the skill's arguments out of its memory, charge the
//! call's budget, ask the [effects layer](crate::effects) to act, and copy
//! the answer back. The effects layer asks the policy gate and audits a
//! denial; nothing here decides what a skill may do.
//!
//! This is the only place guest memory is touched. Every pointer/length pair
//! is checked against the guest's memory first: one outside it traps the
//! call (the skill is broken or hostile). A refusal returns a negative
//! [`Code`] and leaves a sentence for `last_error`.
//!
//! Host calls are inside the call's budget. Every host function passes
//! [`enter`] first: it stops the call at its deadline or on `system.cancel`
//! (a typed [`Stop`], so the call ends `timeout` or `cancelled`, never a bare
//! trap), and charges the call's fuel; the work done after it (bytes copied,
//! written, read) is charged through [`charge`] at the [`cost`] table's
//! rates. Every function with a cost has a per-call cap (the `MAX_*`
//! constants): the first call past it is answered [`Code::Limit`]; a skill
//! that calls that function past its cap again has ignored the answer, and
//! the call is stopped (`error`, code `limit`). A call the gate denies does
//! not count toward its function's cap but toward the call's denials: the
//! effects layer audits them one by one up to [`MAX_AUDITED_DENIALS`], then
//! counts them into one summary record at the end of the call; past
//! [`MAX_DENIALS_PER_CALL`] they are answered `limit`, then stopped.
//!
//! A host function checks, in order: its arguments (bad pointers trap, bad
//! values are answered `Invalid` or `TooLarge`), its per-call cap, the fuel
//! for the work it is about to do; then the effects layer asks the gate, and
//! acts.

use std::time::Duration;

use hark_skill_sdk::abi::{self, Code};
use hark_skills_builtin::Target;
use wasmi::{Caller, Error, Extern, Linker, Memory, StoreLimits};

use super::exec::Budget;
use crate::effects::kv::KvError;
use crate::effects::{Effects, HttpError, PublishError, Refused};
use crate::timers::StartError;

pub use crate::effects::MAX_AUDITED_DENIALS;

/// Most log lines one call may write (the rest are dropped, and counted in
/// one warning at the end of the call).
pub const MAX_LOGS_PER_CALL: u32 = 64;
/// Most messages one call may publish.
pub const MAX_PUBLISHES_PER_CALL: u32 = 16;
/// Most timers one call may start.
pub const MAX_TIMERS_PER_CALL: u32 = 4;
/// Most `timer_cancel` calls per call (a satellite holds at most 32 timers).
pub const MAX_TIMER_CANCELS_PER_CALL: u32 = 32;
/// Most random bytes per `random` call.
pub const MAX_RANDOM: usize = 4096;
/// Most `random` calls per call.
pub const MAX_RANDOM_CALLS_PER_CALL: u32 = 64;
/// Most random bytes per call, all `random` calls together.
pub const MAX_RANDOM_BYTES_PER_CALL: usize = 64 * 1024;
/// Most `kv_set` and `kv_delete` calls per call, together.
pub const MAX_KV_WRITES_PER_CALL: u32 = 16;
/// Most bytes the kv store may write to disk for one call. Every change
/// rewrites the skill's whole store (values in hex: up to twice
/// [`abi::MAX_KV_TOTAL`]), so this allows two rewrites of a full store, or
/// sixteen of a small one.
pub const MAX_KV_WRITE_BYTES_PER_CALL: usize = 4 * abi::MAX_KV_TOTAL;
/// Most sounds one call may play.
pub const MAX_AUDIO_PLAYS_PER_CALL: u32 = 4;
/// Most secrets one call may read.
pub const MAX_SECRET_READS_PER_CALL: u32 = 8;
/// Most HTTP requests per call (SPEC §11).
pub const MAX_HTTP_REQUESTS_PER_CALL: u32 = 4;
/// Most denied host calls per call.
pub const MAX_DENIALS_PER_CALL: u32 = 32;

/// What host work costs, in fuel: the interpreter's unit, about one simple
/// instruction. Host calls are paid from the same budget as the skill's own
/// code, so a skill made of nothing but host calls runs out of fuel as a
/// loop does. The figures are generous for the development machine (2
/// million fuel per ms: 1,000 fuel is 0.5 µs); where they fall short of a
/// board's real cost, the deadline, checked at every host call, stops the call.
pub mod cost {
    /// Every host call: the checks, the clock, the way in and out.
    pub const CALL: u64 = 1_000;
    /// Per byte copied between the skill's memory and the hub.
    pub const BYTE: u64 = 1;
    /// Per byte of randomness from the OS.
    pub const RANDOM_BYTE: u64 = 8;
    /// Per file written, synced and renamed into place (kv store, timers).
    pub const FILE_WRITE: u64 = 1_000_000;
    /// Per byte written to disk (serialized, encoded, written, synced).
    pub const DISK_BYTE: u64 = 16;
    /// Per look at a file's metadata.
    pub const FILE_STAT: u64 = 5_000;
    /// Per file read and parsed, plus [`BYTE`] per byte of it.
    pub const FILE_READ: u64 = 100_000;
    /// Per message queued for the broker, plus its bytes.
    pub const MESSAGE: u64 = 20_000;
    /// Per sound played: a file read and decoded, or sent to a satellite.
    pub const PLAYBACK: u64 = 1_000_000;
    /// Per HTTP request made (the waiting is paid in wall-clock time, from
    /// the call's deadline), plus [`BYTE`] per byte of the answer.
    pub const HTTP_REQUEST: u64 = 200_000;
}

/// Why a host function stopped the whole call. It travels as a wasmi host
/// error and the exec layer maps it back by type (`exec::CallError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The call's deadline passed.
    Deadline,
    /// The call's fuel is gone.
    FuelExhausted,
    /// `system.cancel` from the same satellite.
    Cancelled,
    /// A host function called past its cap after it answered `limit`.
    Limit(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Deadline => f.write_str("the call's deadline passed"),
            Stop::FuelExhausted => f.write_str("the call's fuel is gone"),
            Stop::Cancelled => f.write_str("the call was cancelled"),
            Stop::Limit(message) => f.write_str(message),
        }
    }
}

impl wasmi::errors::HostError for Stop {}

/// The host functions, to count calls to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostFn {
    Log,
    LastError,
    NowMs,
    Random,
    KvGet,
    KvSet,
    KvDelete,
    TimerStart,
    TimerCancel,
    AudioPlay,
    MqttPublish,
    SecretRead,
    HttpRequest,
}

impl HostFn {
    /// Every host function, in the order of `abi::IMPORTS`.
    const ALL: [HostFn; 13] = [
        HostFn::Log,
        HostFn::LastError,
        HostFn::NowMs,
        HostFn::Random,
        HostFn::KvGet,
        HostFn::KvSet,
        HostFn::KvDelete,
        HostFn::TimerStart,
        HostFn::TimerCancel,
        HostFn::AudioPlay,
        HostFn::MqttPublish,
        HostFn::SecretRead,
        HostFn::HttpRequest,
    ];
    const COUNT: usize = HostFn::ALL.len();

    fn name(self) -> &'static str {
        match self {
            HostFn::Log => "log",
            HostFn::LastError => "last_error",
            HostFn::NowMs => "now_ms",
            HostFn::Random => "random",
            HostFn::KvGet => "kv_get",
            HostFn::KvSet => "kv_set",
            HostFn::KvDelete => "kv_delete",
            HostFn::TimerStart => "timer_start",
            HostFn::TimerCancel => "timer_cancel",
            HostFn::AudioPlay => "audio_play",
            HostFn::MqttPublish => "mqtt_publish",
            HostFn::SecretRead => "secret_read",
            HostFn::HttpRequest => "http_request",
        }
    }
}

/// What one call has used of its per-call caps.
#[derive(Debug, Default)]
struct Used {
    /// Calls per host function, refused ones included.
    calls: [u32; HostFn::COUNT],
    /// Host functions that have answered `limit` for a per-call cap.
    limited: [bool; HostFn::COUNT],
    logs: u32,
    dropped_logs: u32,
    publishes: u32,
    timers: u32,
    timer_cancels: u32,
    random_calls: u32,
    random_bytes: usize,
    kv_writes: u32,
    kv_bytes_written: usize,
    plays: u32,
    secret_reads: u32,
    http_requests: u32,
    /// Whether a denial has been answered `limit`.
    denials_limited: bool,
}

/// The store data of one call.
#[derive(Debug)]
pub struct CallState {
    pub limits: StoreLimits,
    /// What the call may cause, for its skill, satellite and request.
    effects: Effects,
    /// Set by `exec::call`; until then, already spent.
    pub(super) budget: Budget,
    last_error: String,
    used: Used,
    /// Largest response body `http_request` hands over (set by `exec::call`).
    pub(super) http_response_bytes: usize,
    /// The last HTTP answer too big for the skill's buffer, with the request
    /// it answered: asked again (with a bigger buffer), it is handed over
    /// without a second request to the server.
    http_kept: Option<(Vec<u8>, Vec<u8>)>,
    /// The skill's exported memory, once instantiated (for its size at the end).
    pub(super) memory: Option<Memory>,
}

impl CallState {
    /// The state of a call that acts through `effects`; [`super::exec::call`]
    /// sets its store limits and its budget.
    pub fn new(effects: Effects) -> CallState {
        CallState {
            limits: StoreLimits::default(),
            effects,
            budget: Budget::spent(),
            last_error: String::new(),
            used: Used::default(),
            http_response_bytes: 0,
            http_kept: None,
            memory: None,
        }
    }

    /// Records why a host call failed and returns its code.
    fn fail(&mut self, code: Code, message: impl Into<String>) -> i32 {
        self.last_error = message.into();
        code as i32
    }

    /// A per-call cap of `f`, checked before it acts: `Ok(Ok(()))` to go
    /// on; when `over`, the first time `Ok(Err(Code::Limit))`, and after
    /// that a [`Stop::Limit`]. `limit` says the cap ("16 writes").
    fn cap(
        &mut self,
        f: HostFn,
        over: bool,
        limit: impl std::fmt::Display,
    ) -> Result<Result<(), i32>, Error> {
        if !over {
            return Ok(Ok(()));
        }
        self.over_cap(f, limit).map(Err)
    }

    /// A call of `f` past its per-call cap: answered [`Code::Limit`] the
    /// first time, stopped after that.
    fn over_cap(&mut self, f: HostFn, limit: impl std::fmt::Display) -> Result<i32, Error> {
        let (name, i) = (f.name(), f as usize);
        if self.used.limited[i] {
            return Err(Error::host(Stop::Limit(format!(
                "hark.{name} called {} times; the limit per call is {limit}, and the skill kept \
                 calling after it was answered `limit`",
                self.used.calls[i]
            ))));
        }
        self.used.limited[i] = true;
        Ok(self.fail(
            Code::Limit,
            format!("{name}: the limit per call is {limit}"),
        ))
    }

    /// An effect of `f` that did not happen, as ABI 1 answers it: a denial
    /// is `Denied` (`limit` past [`MAX_DENIALS_PER_CALL`], then a stop); a
    /// failure is the code and sentence `failed` gives it.
    fn refused<E>(
        &mut self,
        f: HostFn,
        refused: Refused<E>,
        failed: impl FnOnce(E) -> (Code, String),
    ) -> Result<i32, Error> {
        let denial = match refused {
            Refused::Failed(e) => {
                let (code, message) = failed(e);
                return Ok(self.fail(code, message));
            }
            Refused::Denied(denial) => denial,
        };
        self.last_error = denial.reason;
        if denial.count <= MAX_DENIALS_PER_CALL {
            return Ok(Code::Denied as i32);
        }
        if self.used.denials_limited {
            return Err(Error::host(Stop::Limit(format!(
                "hark.{} called {} times; the limit per call is {MAX_DENIALS_PER_CALL} denied \
                 calls, and the skill kept calling after it was answered `limit`",
                f.name(),
                self.used.calls[f as usize]
            ))));
        }
        self.used.denials_limited = true;
        let message = format!(
            "{}: {}; the limit per call is {MAX_DENIALS_PER_CALL} denied calls",
            f.name(),
            self.last_error
        );
        Ok(self.fail(Code::Limit, message))
    }

    /// The end of the call: the effects layer's summary of the denials not
    /// audited one by one, and one warning for the log lines dropped.
    pub(super) fn finish(&mut self) {
        self.effects.finish();
        if self.used.dropped_logs > 0 {
            tracing::warn!(
                skill = %self.effects.skill().name,
                satellite = %self.effects.satellite(),
                "dropped {} log lines past the limit of {MAX_LOGS_PER_CALL} per call",
                self.used.dropped_logs
            );
        }
    }
}

/// Whether the gate let an effect through: a denied call counts toward the
/// call's denials, not toward its function's cap.
fn passed_gate<T, E>(result: &Result<T, Refused<E>>) -> bool {
    !matches!(result, Err(Refused::Denied(_)))
}

/// The gate every host function passes first: stops the call at its
/// deadline or on `system.cancel`, counts the call, and charges its base cost.
fn enter(caller: &mut Caller<'_, CallState>, f: HostFn) -> Result<(), Error> {
    let calls = &mut caller.data_mut().used.calls[f as usize];
    *calls = calls.saturating_add(1);
    charge(caller, cost::CALL)
}

/// Charges `fuel` for host work (done or about to be done), and looks at the
/// clock and the cancel flag again.
fn charge(caller: &mut Caller<'_, CallState>, fuel: u64) -> Result<(), Error> {
    let in_store = caller.get_fuel().expect("fuel metering is on");
    let budget = &mut caller.data_mut().budget;
    budget.check().map_err(Error::host)?;
    match budget.take(in_store, fuel) {
        Ok(rest) => {
            caller.set_fuel(rest).expect("fuel metering is on");
            Ok(())
        }
        Err(stop) => {
            caller.set_fuel(0).expect("fuel metering is on");
            Err(Error::host(stop))
        }
    }
}

/// `cost::BYTE` for each of `n` bytes.
fn bytes(n: usize) -> u64 {
    (n as u64).saturating_mul(cost::BYTE)
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

/// Copies `ptr..ptr+len` out of the guest's memory, paying for the bytes.
fn read(
    caller: &mut Caller<'_, CallState>,
    what: &str,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, Error> {
    let (start, n) = range(caller, what, ptr, len)?;
    charge(caller, bytes(n))?;
    let mut buf = vec![0; n];
    memory(caller)?
        .read(&*caller, start, &mut buf)
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
        charge(caller, self::bytes(bytes.len()))?;
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
    linker
        .func_wrap(m, "log", log)?
        .func_wrap(m, "last_error", last_error)?
        .func_wrap(m, "now_ms", now_ms)?
        .func_wrap(m, "random", random)?
        .func_wrap(m, "kv_get", kv_get)?
        .func_wrap(m, "kv_set", kv_set)?
        .func_wrap(m, "kv_delete", kv_delete)?
        .func_wrap(m, "timer_start", timer_start)?
        .func_wrap(m, "timer_cancel", timer_cancel)?
        .func_wrap(m, "audio_play", audio_play)?
        .func_wrap(m, "mqtt_publish", mqtt_publish)?
        .func_wrap(m, "secret_read", secret_read)?
        .func_wrap(m, "http_request", http_request)?;
    Ok(())
}

/// `log(level, ptr, len)`: a line in the hub's log, at most
/// [`MAX_LOGS_PER_CALL`] per call (the rest are counted, not written).
fn log(mut caller: Caller<'_, CallState>, level: i32, ptr: i32, len: i32) -> Result<(), Error> {
    enter(&mut caller, HostFn::Log)?;
    range(&caller, "log", ptr, len)?;
    let used = &mut caller.data_mut().used;
    if used.logs >= MAX_LOGS_PER_CALL {
        used.dropped_logs = used.dropped_logs.saturating_add(1);
        return Ok(());
    }
    used.logs += 1;
    let bytes = read(&mut caller, "log", ptr, len.min(abi::MAX_LOG as i32))?;
    let text = String::from_utf8_lossy(&bytes);
    let effects = &caller.data().effects;
    let (skill, sat) = (effects.skill().name.as_str(), effects.satellite());
    match level {
        0 => tracing::error!(target: "skill", skill, satellite = sat, "{text}"),
        1 => tracing::warn!(target: "skill", skill, satellite = sat, "{text}"),
        2 => tracing::info!(target: "skill", skill, satellite = sat, "{text}"),
        3 => tracing::debug!(target: "skill", skill, satellite = sat, "{text}"),
        _ => tracing::trace!(target: "skill", skill, satellite = sat, "{text}"),
    }
    Ok(())
}

/// `last_error(out, cap) -> len`: why the last refused call was refused.
fn last_error(mut caller: Caller<'_, CallState>, out: i32, cap: i32) -> Result<i32, Error> {
    enter(&mut caller, HostFn::LastError)?;
    let message = caller.data().last_error.clone();
    write_out(&mut caller, "last_error", out, cap, message.as_bytes())
}

/// `now_ms() -> ms`: Unix time.
fn now_ms(mut caller: Caller<'_, CallState>) -> Result<i64, Error> {
    enter(&mut caller, HostFn::NowMs)?;
    Ok(crate::timers::now_ms() as i64)
}

/// `random(out, len) -> 0`: bytes from the OS's CSPRNG.
fn random(mut caller: Caller<'_, CallState>, out: i32, len: i32) -> Result<i32, Error> {
    enter(&mut caller, HostFn::Random)?;
    let (start, n) = range(&caller, "random", out, len)?;
    let state = caller.data_mut();
    if n > MAX_RANDOM {
        return Ok(state.fail(
            Code::TooLarge,
            format!("random: {n} bytes; the limit is {MAX_RANDOM}"),
        ));
    }
    let calls = state.used.random_calls;
    try_code!(state.cap(
        HostFn::Random,
        calls >= MAX_RANDOM_CALLS_PER_CALL,
        format_args!("{MAX_RANDOM_CALLS_PER_CALL} calls"),
    ));
    let total = state.used.random_bytes + n;
    try_code!(state.cap(
        HostFn::Random,
        total > MAX_RANDOM_BYTES_PER_CALL,
        format_args!("{MAX_RANDOM_BYTES_PER_CALL} bytes"),
    ));
    state.used.random_calls += 1;
    state.used.random_bytes = total;
    charge(&mut caller, (n as u64).saturating_mul(cost::RANDOM_BYTE))?;
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
}

/// `kv_get(key, key_len, out, cap) -> len`.
fn kv_get(
    mut caller: Caller<'_, CallState>,
    kp: i32,
    kl: i32,
    out: i32,
    cap: i32,
) -> Result<i32, Error> {
    enter(&mut caller, HostFn::KvGet)?;
    range(&caller, "kv_get", out, cap)?;
    let key = try_code!(read_str(&mut caller, "kv_get key", kp, kl, abi::MAX_KV_KEY));
    let state = caller.data_mut();
    match state.effects.kv_get(&key) {
        Ok(Some(value)) => {
            // The copy out of the store; `write_out` pays for the one into the skill.
            charge(&mut caller, bytes(value.len()))?;
            write_out(&mut caller, "kv_get", out, cap, &value)
        }
        Ok(None) => Ok(state.fail(Code::NotFound, format!("no value under \"{key}\""))),
        Err(refused) => state.refused(HostFn::KvGet, refused, kv_failure),
    }
}

/// `kv_set(key, key_len, value, value_len) -> 0`.
fn kv_set(
    mut caller: Caller<'_, CallState>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
) -> Result<i32, Error> {
    enter(&mut caller, HostFn::KvSet)?;
    range(&caller, "kv_set value", vp, vl)?;
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
    try_code!(kv_write_allowed(&mut caller, HostFn::KvSet));
    let value = read(&mut caller, "kv_set value", vp, vl)?;
    let state = caller.data_mut();
    let allowance = MAX_KV_WRITE_BYTES_PER_CALL - state.used.kv_bytes_written;
    let result = state.effects.kv_set(&key, value, allowance);
    kv_written(&mut caller, HostFn::KvSet, result)
}

/// `kv_delete(key, key_len) -> 0`.
fn kv_delete(mut caller: Caller<'_, CallState>, kp: i32, kl: i32) -> Result<i32, Error> {
    enter(&mut caller, HostFn::KvDelete)?;
    let key = try_code!(read_str(
        &mut caller,
        "kv_delete key",
        kp,
        kl,
        abi::MAX_KV_KEY
    ));
    try_code!(kv_write_allowed(&mut caller, HostFn::KvDelete));
    let state = caller.data_mut();
    let allowance = MAX_KV_WRITE_BYTES_PER_CALL - state.used.kv_bytes_written;
    let result = match state.effects.kv_delete(&key, allowance) {
        Ok(None) => {
            state.used.kv_writes += 1;
            return Ok(state.fail(Code::NotFound, format!("no value under \"{key}\"")));
        }
        Ok(Some(written)) => Ok(written),
        Err(refused) => Err(refused),
    };
    kv_written(&mut caller, HostFn::KvDelete, result)
}

/// The per-call cap on kv writes, before one.
fn kv_write_allowed(
    caller: &mut Caller<'_, CallState>,
    f: HostFn,
) -> Result<Result<(), i32>, Error> {
    let state = caller.data_mut();
    let writes = state.used.kv_writes;
    state.cap(
        f,
        writes >= MAX_KV_WRITES_PER_CALL,
        format_args!("{MAX_KV_WRITES_PER_CALL} writes (kv_set and kv_delete together)"),
    )
}

/// After a kv write: counts it, and charges what it wrote to disk, or
/// answers why it wrote nothing.
fn kv_written(
    caller: &mut Caller<'_, CallState>,
    f: HostFn,
    result: Result<usize, Refused<KvError>>,
) -> Result<i32, Error> {
    let state = caller.data_mut();
    if passed_gate(&result) {
        state.used.kv_writes += 1;
    }
    match result {
        Ok(written) => {
            state.used.kv_bytes_written += written;
            let fuel = (written as u64)
                .saturating_mul(cost::DISK_BYTE)
                .saturating_add(cost::FILE_WRITE);
            charge(caller, fuel)?;
            Ok(0)
        }
        Err(Refused::Failed(KvError::WriteBudget { .. })) => state.over_cap(
            f,
            format_args!("{MAX_KV_WRITE_BYTES_PER_CALL} bytes written to disk"),
        ),
        Err(refused) => state.refused(f, refused, kv_failure),
    }
}

fn kv_failure(e: KvError) -> (Code, String) {
    (e.code(), e.to_string())
}

/// `timer_start(ms, label, label_len) -> n`: timer `t-<n>` on the asking
/// satellite, on disk when this returns.
fn timer_start(mut caller: Caller<'_, CallState>, ms: i64, lp: i32, ll: i32) -> Result<i64, Error> {
    enter(&mut caller, HostFn::TimerStart)?;
    let label = try_code!(
        read_str(&mut caller, "timer_start label", lp, ll, 64).map(|r| r.map_err(i64::from))
    );
    let state = caller.data_mut();
    if !(1000..=7 * 24 * 3600 * 1000).contains(&ms) {
        return Ok(i64::from(state.fail(
            Code::Invalid,
            format!("timer_start: {ms} ms is outside 1 s to 7 days"),
        )));
    }
    let started = state.used.timers;
    try_code!(
        state
            .cap(
                HostFn::TimerStart,
                started >= MAX_TIMERS_PER_CALL,
                format_args!("{MAX_TIMERS_PER_CALL} timers"),
            )
            .map(|r| r.map_err(i64::from))
    );
    charge(&mut caller, cost::FILE_WRITE)?;
    let state = caller.data_mut();
    let label = Some(label.trim()).filter(|l| !l.is_empty());
    let result = state
        .effects
        .start_timer(label, Duration::from_millis(ms as u64));
    if passed_gate(&result) {
        state.used.timers += 1;
    }
    match result {
        Ok(timer) => Ok(timer
            .id
            .trim_start_matches("t-")
            .parse::<i64>()
            .unwrap_or(0)),
        Err(refused) => state
            .refused(HostFn::TimerStart, refused, |e| match e {
                StartError::Timer(e) => (Code::Limit, e.to_string()),
                StartError::Store(e) => (Code::Internal, e.to_string()),
            })
            .map(i64::from),
    }
}

/// `timer_cancel(n) -> 0`: only the asking satellite's timer `t-<n>`.
fn timer_cancel(mut caller: Caller<'_, CallState>, n: i64) -> Result<i32, Error> {
    enter(&mut caller, HostFn::TimerCancel)?;
    let state = caller.data_mut();
    let cancels = state.used.timer_cancels;
    try_code!(state.cap(
        HostFn::TimerCancel,
        cancels >= MAX_TIMER_CANCELS_PER_CALL,
        format_args!("{MAX_TIMER_CANCELS_PER_CALL} cancels"),
    ));
    let id = format!("t-{n}");
    let result = state.effects.cancel_timers(std::slice::from_ref(&id));
    if passed_gate(&result) {
        state.used.timer_cancels += 1;
    }
    match result {
        Ok(gone) if gone.is_empty() => {
            Ok(state.fail(Code::NotFound, format!("no timer {id} on this satellite")))
        }
        Ok(_) => {
            charge(&mut caller, cost::FILE_WRITE)?;
            Ok(0)
        }
        Err(refused) => state.refused(HostFn::TimerCancel, refused, |e| {
            (Code::Internal, e.to_string())
        }),
    }
}

/// `audio_play(name, name_len, target, permille) -> 0`: target 0 is the
/// hub's speaker, 1 the satellite's.
fn audio_play(
    mut caller: Caller<'_, CallState>,
    np: i32,
    nl: i32,
    target: i32,
    permille: i32,
) -> Result<i32, Error> {
    enter(&mut caller, HostFn::AudioPlay)?;
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
    let plays = state.used.plays;
    try_code!(state.cap(
        HostFn::AudioPlay,
        plays >= MAX_AUDIO_PLAYS_PER_CALL,
        format_args!("{MAX_AUDIO_PLAYS_PER_CALL} sounds"),
    ));
    charge(&mut caller, cost::PLAYBACK)?;
    let state = caller.data_mut();
    let volume = (permille.clamp(0, 1000) as f32) / 1000.0;
    let result = state.effects.play(&sound, target, volume);
    // Every attempt the gate allows counts: a sound that fails to play was still read.
    if passed_gate(&result) {
        state.used.plays += 1;
    }
    match result {
        Ok(_) => Ok(0),
        Err(refused) => state.refused(HostFn::AudioPlay, refused, |e| match e.pointer {
            Some(_) => (Code::Invalid, e.message),
            None => (Code::Internal, e.detail.unwrap_or(e.message)),
        }),
    }
}

/// `mqtt_publish(topic, topic_len, payload, len) -> 0`.
fn mqtt_publish(
    mut caller: Caller<'_, CallState>,
    tp: i32,
    tl: i32,
    pp: i32,
    pl: i32,
) -> Result<i32, Error> {
    enter(&mut caller, HostFn::MqttPublish)?;
    range(&caller, "mqtt_publish payload", pp, pl)?;
    let topic = try_code!(read_str(&mut caller, "mqtt_publish topic", tp, tl, 256));
    let state = caller.data_mut();
    if pl as usize > abi::MAX_PUBLISH {
        return Ok(state.fail(
            Code::TooLarge,
            format!(
                "mqtt_publish: the payload is {pl} bytes; the limit is {}",
                abi::MAX_PUBLISH
            ),
        ));
    }
    let publishes = state.used.publishes;
    try_code!(state.cap(
        HostFn::MqttPublish,
        publishes >= MAX_PUBLISHES_PER_CALL,
        format_args!("{MAX_PUBLISHES_PER_CALL} messages"),
    ));
    let payload = read(&mut caller, "mqtt_publish payload", pp, pl)?;
    charge(&mut caller, cost::MESSAGE)?;
    let state = caller.data_mut();
    match state.effects.publish(topic, payload) {
        Ok(()) => {
            state.used.publishes += 1;
            Ok(0)
        }
        Err(refused) => state.refused(HostFn::MqttPublish, refused, |e| match e {
            PublishError::NotATopic(topic) => (
                Code::Invalid,
                format!("mqtt_publish: \"{topic}\" is not a topic to publish to"),
            ),
            PublishError::QueueFull => (
                Code::Limit,
                "mqtt_publish: the hub's outgoing queue is full; try again later".to_string(),
            ),
        }),
    }
}

/// `secret_read(id, id_len, out, cap) -> len`.
fn secret_read(
    mut caller: Caller<'_, CallState>,
    ip: i32,
    il: i32,
    out: i32,
    cap: i32,
) -> Result<i32, Error> {
    enter(&mut caller, HostFn::SecretRead)?;
    range(&caller, "secret_read", out, cap)?;
    let id = try_code!(read_str(&mut caller, "secret_read id", ip, il, 64));
    let state = caller.data_mut();
    let reads = state.used.secret_reads;
    try_code!(state.cap(
        HostFn::SecretRead,
        reads >= MAX_SECRET_READS_PER_CALL,
        format_args!("{MAX_SECRET_READS_PER_CALL} reads"),
    ));
    let lookup = match state.effects.read_secret(&id) {
        Ok(lookup) => lookup,
        Err(refused) => return state.refused(HostFn::SecretRead, refused, |e| match e {}),
    };
    state.used.secret_reads += 1;
    let fuel = match lookup.file_read {
        Some(n) => cost::FILE_READ.saturating_add(bytes(n as usize)),
        None => cost::FILE_STAT,
    };
    charge(&mut caller, fuel)?;
    match lookup.value {
        Ok(Some(value)) => write_out(&mut caller, "secret_read", out, cap, value.as_bytes()),
        Ok(None) => Ok(caller
            .data_mut()
            .fail(Code::NotFound, format!("the secret store has no \"{id}\""))),
        Err(e) => Ok(caller.data_mut().fail(Code::Internal, e)),
    }
}

/// `http_request(req, req_len, out, cap)`: the request JSON of SPEC §11,
/// made by the hub to a granted origin (see [`crate::http`]) within the
/// call's deadline; the answer JSON is written to `out`. An answer that does
/// not fit is kept, and handed over when the skill asks the same again with
/// room for it.
fn http_request(
    mut caller: Caller<'_, CallState>,
    rp: i32,
    rl: i32,
    out: i32,
    cap: i32,
) -> Result<i32, Error> {
    enter(&mut caller, HostFn::HttpRequest)?;
    range(&caller, "http_request", rp, rl)?;
    range(&caller, "http_request", out, cap)?;
    if rl as usize > crate::http::MAX_ASK {
        let message = format!(
            "http_request: the request is {rl} bytes; the limit is {} (a body of at most {} KiB)",
            crate::http::MAX_ASK,
            crate::http::MAX_REQUEST_BODY / 1024
        );
        return Ok(caller.data_mut().fail(Code::TooLarge, message));
    }
    let asked = read(&mut caller, "http_request", rp, rl)?;
    if let Some((kept_for, _)) = &caller.data().http_kept
        && *kept_for == asked
    {
        let (_, answer) = caller.data_mut().http_kept.take().expect("just seen");
        return answer_http(&mut caller, asked, answer, out, cap);
    }
    let state = caller.data_mut();
    state.http_kept = None;
    let requests = state.used.http_requests;
    try_code!(state.cap(
        HostFn::HttpRequest,
        requests >= MAX_HTTP_REQUESTS_PER_CALL,
        format_args!("{MAX_HTTP_REQUESTS_PER_CALL} requests"),
    ));
    let ask = match crate::http::Ask::parse(&asked) {
        Ok(ask) => ask,
        Err(crate::http::AskError::Invalid(m)) => {
            return Ok(state.fail(Code::Invalid, format!("http_request: {m}")));
        }
        Err(crate::http::AskError::TooLarge(m)) => {
            return Ok(state.fail(Code::TooLarge, format!("http_request: {m}")));
        }
    };
    let (deadline, max_body) = (state.budget.deadline(), state.http_response_bytes);
    let result = state.effects.http_request(&ask, deadline, max_body);
    if passed_gate(&result) {
        state.used.http_requests += 1;
    }
    let answer = match result {
        Ok(answer) => answer,
        Err(refused) => {
            let grant = ask.origin.grant();
            return state.refused(HostFn::HttpRequest, refused, |e| match e {
                HttpError::Deadline => (
                    Code::Limit,
                    format!(
                        "http_request: the call's deadline passed before {grant} answered; \
                         the call ends `timeout`"
                    ),
                ),
                HttpError::TooLarge(m) => (Code::TooLarge, format!("http_request: {m}")),
                HttpError::Failed(m) => (Code::Internal, format!("http_request to {grant}: {m}")),
            });
        }
    };
    charge(
        &mut caller,
        cost::HTTP_REQUEST.saturating_add(bytes(answer.body.len())),
    )?;
    answer_http(&mut caller, asked, answer.to_json(), out, cap)
}

/// Writes `answer` to `out`, or keeps it for the same request asked again
/// with a buffer it fits in.
fn answer_http(
    caller: &mut Caller<'_, CallState>,
    asked: Vec<u8>,
    answer: Vec<u8>,
    out: i32,
    cap: i32,
) -> Result<i32, Error> {
    let written = write_out(caller, "http_request", out, cap, &answer)?;
    if answer.len() > cap as usize {
        caller.data_mut().http_kept = Some((asked, answer));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use abi::Ty;
    use wasmi::{Module, Store};

    use super::*;
    use crate::effects::testing::{TestEnv, skill};
    use crate::policy::{SkillKind, Tier};

    fn wat_types(types: &[Ty]) -> String {
        types
            .iter()
            .map(|ty| match ty {
                Ty::I32 => " i32",
                Ty::I64 => " i64",
            })
            .collect()
    }

    /// A module that imports `imports` (name, params, results) from `hark`.
    fn importing(imports: &[(&str, String, String)]) -> String {
        let mut wat = String::from("(module");
        for (name, params, results) in imports {
            wat.push_str(&format!(
                "\n  (import \"{}\" \"{name}\" (func (param{params}) (result{results})))",
                abi::MODULE
            ));
        }
        wat.push(')');
        wat
    }

    /// Instantiates `wat` against the hub's linker.
    fn link(t: &TestEnv, wat: &str) -> Result<(), wasmi::Error> {
        let engine = crate::sandbox::engine();
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let info = skill(SkillKind::Wasm, "linked", &[]);
        let mut store = Store::new(&engine, CallState::new(t.effects(&info, "r-1")));
        linker(&engine)
            .instantiate_and_start(&mut store, &module)
            .map(drop)
    }

    #[test]
    fn the_linker_defines_every_abi_import_with_its_declared_types() {
        let t = TestEnv::new("linker", Tier::Convenient);
        let declared: Vec<(&str, String, String)> = abi::IMPORTS
            .iter()
            .map(|i| (i.name, wat_types(i.params), wat_types(i.results)))
            .collect();
        // Each alone, so a failure names the import; then all of them together.
        for import in &declared {
            if let Err(e) = link(&t, &importing(std::slice::from_ref(import))) {
                panic!("hark.{} as abi::IMPORTS declares it: {e}", import.0);
            }
        }
        link(&t, &importing(&declared)).unwrap();

        // The check has teeth: a type other than the declared one does not link.
        for (name, params, results) in &declared {
            let wrong = [(*name, format!("{params} i32"), results.clone())];
            assert!(
                link(&t, &importing(&wrong)).is_err(),
                "hark.{name} linked with an extra parameter"
            );
        }
        assert!(
            link(
                &t,
                &importing(&[("fd_write", String::new(), String::new())])
            )
            .is_err()
        );
    }

    #[test]
    fn the_host_functions_are_abi_imports_in_order() {
        let names: Vec<&str> = HostFn::ALL.iter().map(|f| f.name()).collect();
        let imports: Vec<&str> = abi::IMPORTS.iter().map(|i| i.name).collect();
        assert_eq!(names, imports);
        for (i, f) in HostFn::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i, "{}", f.name());
        }
    }
}
