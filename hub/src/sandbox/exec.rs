//! One call of a WebAssembly skill: a fresh store and instance (nothing
//! survives between calls or satellites), the input written through
//! `hark_alloc`, `hark_handle` run in fuel slices with the clock and the
//! cancel flag checked between slices, and the reply read back and checked.

use std::time::{Duration, Instant};

use hark_skill_sdk::SkillReply;
use hark_skill_sdk::abi::{self, MAX_OUTPUT};
use serde_json::Value;
use wasmi::{
    Engine, Linker, Module, Store, StoreLimitsBuilder, TypedFunc, TypedResumableCall, WasmParams,
    WasmResults,
};

use super::CallLimits;
use super::host::CallState;
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
}

struct Budget<'a> {
    limits: &'a CallLimits,
    deadline: Instant,
    /// Fuel not yet handed to the store.
    left: u64,
    cancel: &'a CancelFlag,
}

impl Budget<'_> {
    /// Hands the store its next slice, or says why there is none.
    fn refill(&mut self, store: &mut Store<CallState>, required: u64) -> Result<(), CallError> {
        if self.cancel.is_raised() {
            return Err(CallError::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(CallError::Deadline {
                limit: self.limits.timeout,
            });
        }
        let slice = self.limits.slice.max(required);
        if slice > self.left {
            return Err(CallError::FuelExhausted {
                limit: self.limits.timeout,
            });
        }
        self.left -= slice;
        store.set_fuel(slice).expect("fuel metering is on");
        Ok(())
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
    cancel: &CancelFlag,
) -> Outcome {
    let started = Instant::now();
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
    let mut budget = Budget {
        limits,
        deadline: started + limits.timeout,
        left: limits.fuel,
        cancel,
    };
    let result = run(&mut store, linker, module, input, &mut budget);
    let fuel_used = limits.fuel - budget.left - store.get_fuel().unwrap_or(0);
    Outcome {
        result,
        elapsed: started.elapsed(),
        fuel_used,
    }
}

fn run(
    store: &mut Store<CallState>,
    linker: &Linker<CallState>,
    module: &Module,
    input: &[u8],
    budget: &mut Budget<'_>,
) -> Result<SkillReply, CallError> {
    budget.refill(store, 0)?;
    let instance = linker
        .instantiate_and_start(&mut *store, module)
        .map_err(trap)?;
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

    let len = i32::try_from(input.len()).expect("input is capped far below 2 GiB");
    let ptr = metered(store, &alloc, len, budget)?;
    memory.write(&mut *store, ptr as u32 as usize, input).map_err(|_| {
        CallError::BadOutput(format!(
            "hark_alloc({len}) returned {ptr}, which has no room for the input in the skill's memory"
        ))
    })?;

    let packed = metered(store, &handle, (ptr, len), budget)?;
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
    budget: &mut Budget<'_>,
) -> Result<R, CallError> {
    let mut call = func.call_resumable(&mut *store, params).map_err(trap)?;
    loop {
        match call {
            TypedResumableCall::Finished(results) => return Ok(results),
            TypedResumableCall::HostTrap(host) => {
                return Err(CallError::Trap(host.host_error().to_string()));
            }
            TypedResumableCall::OutOfFuel(paused) => {
                budget.refill(store, paused.required_fuel())?;
                call = paused.resume(&mut *store).map_err(trap)?;
            }
        }
    }
}

fn trap(e: wasmi::Error) -> CallError {
    use wasmi::TrapCode;
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
