//! One call of a WebAssembly skill: a fresh store and instance (nothing
//! survives between calls or satellites), the input written through
//! `hark_alloc`, `hark_handle` run in fuel slices with the clock and the
//! cancel flag checked between slices (and by every host call, see
//! [`Budget`]), and the reply read back and checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_skill_sdk::SkillReply;
use hark_skill_sdk::abi::{self, MAX_OUTPUT};
use serde_json::Value;
use wasmi::{
    Engine, Linker, Module, Store, StoreLimitsBuilder, TypedFunc, TypedResumableCall, WasmParams,
    WasmResults,
};

use super::CallLimits;
use super::host::{CallState, Stop};
use crate::inflight::CancelFlag;

/// Why a call gave no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The wall-clock deadline passed.
    Deadline { limit: Duration },
    /// The fuel ceiling (the budget at this board's speed) ran out first.
    FuelExhausted { limit: Duration },
    /// `system.cancel` from the same satellite.
    Cancelled,
    /// The skill kept calling a host function past its per-call cap after
    /// it was answered `limit` (see `host`).
    Limit(String),
    /// The skill trapped: a bug, a memory or stack limit, a bad pointer.
    Trap(String),
    /// The skill returned something that is not a reply.
    BadOutput(String),
    /// The skill answered `{"error": {"code", "message"}}`.
    Failed { code: String, message: String },
}

/// A call's result with what it cost.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<SkillReply, CallError>,
    pub elapsed: Duration,
    pub fuel_used: u64,
    /// The skill's linear memory when the call ended (its largest: wasm
    /// memory never shrinks); 0 when it never got one.
    pub memory_bytes: usize,
}

/// A call's time and fuel, kept in the store's data so that both ends can
/// reach them: the exec layer between fuel slices, and every host function
/// before it acts (`host::enter`). Without the second, a host call costs the
/// interpreter about one fuel, and a skill made of host calls could run
/// ~10^5 of them between two looks at the clock.
#[derive(Debug)]
pub struct Budget {
    timeout: Duration,
    deadline: Instant,
    cancel: Arc<CancelFlag>,
    /// Fuel not yet handed to the store.
    left: u64,
}

impl Budget {
    pub(super) fn new(limits: &CallLimits, started: Instant, cancel: Arc<CancelFlag>) -> Budget {
        Budget {
            timeout: limits.timeout,
            deadline: started + limits.timeout,
            cancel,
            left: limits.fuel,
        }
    }

    /// A budget that is already spent: what a call state holds until
    /// [`call`] gives it the real one, so a host function can never run
    /// unbudgeted.
    pub(super) fn spent() -> Budget {
        Budget {
            timeout: Duration::ZERO,
            deadline: Instant::now(),
            cancel: Arc::default(),
            left: 0,
        }
    }

    /// When the call must end: what a host call that waits (HTTP) waits until.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the call may go on: not cancelled, not past its deadline.
    pub(super) fn check(&self) -> Result<(), Stop> {
        if self.cancel.is_raised() {
            return Err(Stop::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(Stop::Deadline);
        }
        Ok(())
    }

    /// Pays `cost` from `in_store` (what is left of the store's slice), then
    /// from the fuel not yet handed out; returns what the store keeps. When
    /// both together fall short, the whole budget is gone.
    pub(super) fn take(&mut self, in_store: u64, cost: u64) -> Result<u64, Stop> {
        if let Some(rest) = in_store.checked_sub(cost) {
            return Ok(rest);
        }
        let more = cost - in_store;
        if more > self.left {
            self.left = 0;
            return Err(Stop::FuelExhausted);
        }
        self.left -= more;
        Ok(0)
    }

    /// Hands the store its next slice, or says why there is none.
    fn refill(
        store: &mut Store<CallState>,
        limits: &CallLimits,
        required: u64,
    ) -> Result<(), CallError> {
        let budget = &mut store.data_mut().budget;
        budget.check().map_err(|stop| budget.error(stop))?;
        let slice = limits.slice.max(required);
        if slice > budget.left {
            return Err(budget.error(Stop::FuelExhausted));
        }
        budget.left -= slice;
        store.set_fuel(slice).expect("fuel metering is on");
        Ok(())
    }

    fn error(&self, stop: Stop) -> CallError {
        match stop {
            Stop::Deadline => CallError::Deadline {
                limit: self.timeout,
            },
            Stop::FuelExhausted => CallError::FuelExhausted {
                limit: self.timeout,
            },
            Stop::Cancelled => CallError::Cancelled,
            Stop::Limit(message) => CallError::Limit(message),
        }
    }
}

/// Runs one call to completion, failure or budget's end.
pub fn call(
    engine: &Engine,
    linker: &Linker<CallState>,
    module: &Module,
    limits: &CallLimits,
    mut state: CallState,
    input: &[u8],
    cancel: &Arc<CancelFlag>,
) -> Outcome {
    let started = Instant::now();
    state.budget = Budget::new(limits, started, cancel.clone());
    state.http_response_bytes = limits.http_response_bytes;
    state.limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .memories(1)
        .tables(4)
        .table_elements(10_000)
        .instances(1)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    let result = run(&mut store, linker, module, input, limits);
    store.data_mut().finish();
    let fuel_used = limits.fuel - store.data().budget.left - store.get_fuel().unwrap_or(0);
    Outcome {
        result,
        elapsed: started.elapsed(),
        fuel_used,
        memory_bytes: store.data().memory.map_or(0, |m| m.data_size(&store)),
    }
}

fn run(
    store: &mut Store<CallState>,
    linker: &Linker<CallState>,
    module: &Module,
    input: &[u8],
    limits: &CallLimits,
) -> Result<SkillReply, CallError> {
    Budget::refill(store, limits, 0)?;
    let instance = linker
        .instantiate_and_start(&mut *store, module)
        .map_err(|e| trap(store, &e))?;
    let alloc: TypedFunc<i32, i32> = instance
        .get_typed_func(&*store, abi::EXPORT_ALLOC)
        .map_err(|e| CallError::BadOutput(format!("{}: {e}", abi::EXPORT_ALLOC)))?;
    let handle: TypedFunc<(i32, i32), i64> =
        instance
            .get_typed_func(&*store, abi::EXPORT_HANDLE)
            .map_err(|e| CallError::BadOutput(format!("{}: {e}", abi::EXPORT_HANDLE)))?;
    let memory = instance
        .get_memory(&*store, abi::EXPORT_MEMORY)
        .ok_or_else(|| CallError::BadOutput("the skill exports no memory".into()))?;
    store.data_mut().memory = Some(memory);

    let len = i32::try_from(input.len()).expect("input is capped far below 2 GiB");
    let ptr = metered(store, &alloc, len, limits)?;
    memory.write(&mut *store, ptr as u32 as usize, input).map_err(|_| {
        CallError::BadOutput(format!(
            "hark_alloc({len}) returned {ptr}, which has no room for the input in the skill's memory"
        ))
    })?;

    let packed = metered(store, &handle, (ptr, len), limits)?;
    // A reply made after the deadline (a host call that waited until it,
    // answered `limit`, and the skill returned at once) is still late.
    let budget = &store.data().budget;
    budget.check().map_err(|stop| budget.error(stop))?;
    let (out_ptr, out_len) = abi::unpack(packed);
    if out_len as usize > MAX_OUTPUT {
        return Err(CallError::BadOutput(format!(
            "the reply is {out_len} bytes; the limit is {MAX_OUTPUT}"
        )));
    }
    let mut output = vec![0; out_len as usize];
    memory
        .read(&*store, out_ptr as usize, &mut output)
        .map_err(|_| {
            CallError::BadOutput(format!(
                "the reply at {out_ptr} with length {out_len} is outside the skill's memory"
            ))
        })?;
    parse_reply(&output)
}

/// Calls `func` in fuel slices until it finishes or the budget says stop.
fn metered<P: WasmParams, R: WasmResults>(
    store: &mut Store<CallState>,
    func: &TypedFunc<P, R>,
    params: P,
    limits: &CallLimits,
) -> Result<R, CallError> {
    let mut call = func
        .call_resumable(&mut *store, params)
        .map_err(|e| trap(store, &e))?;
    loop {
        match call {
            TypedResumableCall::Finished(results) => return Ok(results),
            TypedResumableCall::HostTrap(host) => return Err(trap(store, host.host_error())),
            TypedResumableCall::OutOfFuel(paused) => {
                Budget::refill(store, limits, paused.required_fuel())?;
                call = paused.resume(&mut *store).map_err(|e| trap(store, &e))?;
            }
        }
    }
}

/// Why the call stopped: a host function's [`Stop`] (the budget or a cap,
/// typed, never read back from a message), or a trap of the skill's own.
fn trap(store: &Store<CallState>, e: &wasmi::Error) -> CallError {
    use wasmi::TrapCode;
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return store.data().budget.error(stop.clone());
    }
    let text = match e.as_trap_code() {
        Some(TrapCode::StackOverflow) => "stack overflow (recursion too deep)".to_string(),
        Some(TrapCode::GrowthOperationLimited) => "memory limit reached".to_string(),
        Some(TrapCode::UnreachableCodeReached) => {
            "reached unreachable code (a panic in the skill?)".to_string()
        }
        Some(code) => format!("trap: {code}"),
        None if e.to_string().contains("limit") => format!("resource limit: {e}"),
        None => e.to_string(),
    };
    CallError::Trap(text)
}

/// `{"speech": ..., "data": ...}` or `{"error": {"code", "message"}}`
/// (or `{"error": "message"}`); nothing else.
pub fn parse_reply(bytes: &[u8]) -> Result<SkillReply, CallError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| CallError::BadOutput(format!("the reply is not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| CallError::BadOutput(format!("the reply is not JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(CallError::BadOutput(
            "the reply is not a JSON object".into(),
        ));
    };
    if let Some(error) = map.remove("error") {
        let (code, message) = match error {
            Value::String(message) => ("skill_error".to_string(), message),
            Value::Object(e) => (
                e.get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("skill_error")
                    .to_string(),
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the skill failed")
                    .to_string(),
            ),
            _ => {
                return Err(CallError::BadOutput(
                    "\"error\" must be a string or an object".into(),
                ));
            }
        };
        return Err(CallError::Failed {
            code: truncate(&code, 64),
            message: truncate(&message, 1000),
        });
    }
    let speech = match map.remove("speech") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(CallError::BadOutput("\"speech\" must be a string".into())),
    };
    let data = map.remove("data").filter(|d| !d.is_null());
    if let Some(extra) = map.keys().next() {
        return Err(CallError::BadOutput(format!(
            "the reply has an unknown field \"{extra}\"; only speech, data and error"
        )));
    }
    Ok(SkillReply { speech, data })
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(fuel: u64) -> CallLimits {
        CallLimits {
            timeout: Duration::from_secs(60),
            fuel,
            slice: 100,
            memory_bytes: 1 << 20,
            http_response_bytes: 1024,
        }
    }

    #[test]
    fn a_host_charge_takes_the_slice_first_then_the_fuel_not_yet_handed_out() {
        let mut budget = Budget::new(&limits(1_000), Instant::now(), Arc::default());
        assert_eq!(budget.take(100, 30), Ok(70), "from the slice alone");
        assert_eq!(budget.take(70, 170), Ok(0), "the slice and 100 more");
        assert_eq!(budget.left, 900);
        assert_eq!(budget.take(0, 901), Err(Stop::FuelExhausted));
        assert_eq!(budget.left, 0, "an unpaid charge spends the whole budget");
    }

    #[test]
    fn the_budget_stops_on_cancel_first_then_on_the_deadline() {
        let cancel = Arc::new(CancelFlag::default());
        let budget = Budget::new(&limits(1_000), Instant::now(), cancel.clone());
        assert_eq!(budget.check(), Ok(()));
        cancel.raise();
        assert_eq!(budget.check(), Err(Stop::Cancelled));
        assert_eq!(
            Budget::spent().check(),
            Err(Stop::Deadline),
            "a call state without its budget cannot run a host call"
        );
        let past = Budget::new(
            &limits(1_000),
            Instant::now() - Duration::from_secs(61),
            Arc::default(),
        );
        assert_eq!(past.check(), Err(Stop::Deadline));
        assert_eq!(
            past.error(Stop::Deadline),
            CallError::Deadline {
                limit: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn replies_parse_strictly() {
        assert_eq!(
            parse_reply(br#"{"speech":"hi","data":{"n":1}}"#).unwrap(),
            SkillReply {
                speech: Some("hi".into()),
                data: Some(serde_json::json!({"n": 1}))
            }
        );
        assert_eq!(
            parse_reply(br#"{"error":{"code":"no_sides","message":"A die needs sides."}}"#),
            Err(CallError::Failed {
                code: "no_sides".into(),
                message: "A die needs sides.".into()
            })
        );
        assert!(matches!(parse_reply(b"[1]"), Err(CallError::BadOutput(_))));
        assert!(matches!(parse_reply(b"\xff"), Err(CallError::BadOutput(_))));
        assert!(matches!(
            parse_reply(br#"{"speech":1}"#),
            Err(CallError::BadOutput(_))
        ));
        assert!(matches!(
            parse_reply(br#"{"speech":"a","shell":"rm"}"#),
            Err(CallError::BadOutput(_))
        ));
    }
}
