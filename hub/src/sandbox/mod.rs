//! The WebAssembly sandbox: third-party skills run in the wasmi interpreter,
//! each call in a fresh instance, under a fuel and wall-clock budget, a memory
//! cap and a stack limit, on a bounded pool of worker threads. Every host
//! function checks the policy gate before it acts.
//!
//! Layout:
//! - this file: the engine's configuration and the load-time checks of a module
//! - [`exec`]: one call: instantiate, write the input, run in fuel slices, read the reply
//! - [`host`]: the `hark` host functions, the one place guest memory is touched
//! - [`pool`]: worker threads and their bounded queue (full = `busy`)
//! - [`kv`], [`secrets`]: the per-skill store and the secret file
//! - [`calibrate`]: this board's interpreter speed, to turn milliseconds into fuel

use std::time::Duration;

use hark_skill_sdk::abi::{self, Needs, Ty};
use hark_skill_sdk::{Manifest, Permission};
use wasmi::{CompilationMode, Config, EnforcedLimits, Engine, ExternType, Module, ValType};

pub mod calibrate;
pub mod exec;
pub mod host;
pub mod kv;
pub mod pool;
pub mod secrets;

/// Deepest call stack a skill may build (frames); unbounded recursion traps here.
pub const MAX_RECURSION_DEPTH: usize = 512;
/// Largest value stack of one call, in bytes of wasmi's stack.
pub const MAX_STACK_HEIGHT: usize = 256 * 1024;
/// Largest module file the hub reads.
pub const MAX_MODULE_BYTES: usize = 8 * 1024 * 1024;
/// Largest intent JSON handed to a skill.
pub const MAX_INPUT: usize = 256 * 1024;

/// The one engine all skills share: fuel metering on, eager compilation
/// (lazy translation could run out of fuel mid-translation, which cannot be
/// resumed), wasmi's strict limits against hostile modules, no start functions.
pub fn engine() -> Engine {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::Eager)
        .enforced_limits(EnforcedLimits::strict())
        .allow_start_fn(false)
        .set_max_recursion_depth(MAX_RECURSION_DEPTH)
        .set_max_stack_height(MAX_STACK_HEIGHT)
        .wasm_multi_memory(false)
        .ignore_custom_sections(true);
    Engine::new(&config)
}

/// A loaded, compiled skill: what a worker needs to run it.
#[derive(Debug)]
pub struct WasmSkill {
    pub info: std::sync::Arc<host::SkillInfo>,
    pub module: Module,
    pub limits: CallLimits,
}

/// The most fuel between two looks at the clock: about half a millisecond on
/// a fast desktop, a few tens of milliseconds on the slowest Pi.
pub const MAX_SLICE: u64 = 1 << 20;

/// The budget and caps of one skill's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Total fuel of one call: the timeout at this board's calibrated speed,
    /// so the budget is the same on a Pi Zero 2 as on a Pi 5, and a call is
    /// stopped deterministically even when the clock check comes late.
    pub fuel: u64,
    /// Fuel between two looks at the clock and the cancel flag.
    pub slice: u64,
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
}

impl CallLimits {
    /// The hub's limits, tightened by the manifest's.
    pub fn new(
        manifest: &Manifest,
        hub_timeout: Duration,
        hub_memory_mib: u32,
        fuel_per_ms: u64,
    ) -> CallLimits {
        let limits = manifest.limits.unwrap_or_default();
        let timeout = limits
            .timeout_ms
            .map(Duration::from_millis)
            .map_or(hub_timeout, |t| t.min(hub_timeout));
        let memory_mib = limits
            .memory_mib
            .map_or(hub_memory_mib, |m| m.min(hub_memory_mib));
        let ms = timeout.as_millis().max(1) as u64;
        CallLimits {
            timeout,
            fuel: fuel_per_ms.saturating_mul(ms),
            // ~5 ms of work per slice: fine-grained enough for a 1.5 s budget.
            // Capped, so a figure that overstates the board (a wrong
            // `skills.fuel_per_ms`) cannot stretch one slice past the deadline.
            slice: fuel_per_ms.saturating_mul(5).clamp(10_000, MAX_SLICE),
            memory_bytes: memory_mib as usize * 1024 * 1024,
        }
    }
}

/// Where the manifest asks for more than the hub allows.
pub fn limits_problems(
    manifest: &Manifest,
    hub_timeout: Duration,
    hub_memory_mib: u32,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(limits) = manifest.limits {
        if let Some(t) = limits.timeout_ms {
            if u128::from(t) > hub_timeout.as_millis() {
                problems.push(format!(
                    "limits.timeout_ms {t} is above the hub's {} ms; a manifest may only lower it",
                    hub_timeout.as_millis()
                ));
            }
        }
        if let Some(m) = limits.memory_mib {
            if m > hub_memory_mib {
                problems.push(format!(
                    "limits.memory_mib {m} is above the hub's {hub_memory_mib}; a manifest may only lower it"
                ));
            }
        }
    }
    problems
}

/// Compiles `bytes` and checks it keeps ABI 1 and its manifest's word:
/// only `hark` imports, each covered by a declared permission and of the
/// right type; the three exports; a memory that fits the cap; no start
/// function. Every problem found is listed.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    permissions: &[Permission],
    memory_cap: usize,
) -> Result<Module, Vec<String>> {
    if bytes.len() > MAX_MODULE_BYTES {
        return Err(vec![format!(
            "the module is {} bytes; the limit is {MAX_MODULE_BYTES}",
            bytes.len()
        )]);
    }
    let module = Module::new(engine, bytes).map_err(|e| vec![explain_compile_error(&e)])?;
    let mut problems = Vec::new();

    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        if module_name != abi::MODULE {
            problems.push(format!(
                "imports {module_name}.{name}: a skill may import only from \"{}\"",
                abi::MODULE
            ));
            continue;
        }
        let Some(spec) = abi::import(name) else {
            problems.push(format!("imports hark.{name}, which ABI 1 does not have"));
            continue;
        };
        match import.ty() {
            ExternType::Func(ty) => {
                if !types_match(ty.params(), spec.params)
                    || !types_match(ty.results(), spec.results)
                {
                    problems.push(format!(
                        "imports hark.{name} with the wrong type: {:?} -> {:?}, ABI 1 has {:?} -> {:?}",
                        ty.params(),
                        ty.results(),
                        spec.params,
                        spec.results
                    ));
                }
            }
            _ => problems.push(format!(
                "imports hark.{name} as something other than a function"
            )),
        }
        if let Some(needs) = spec.needs {
            if !permissions.iter().any(|p| covers(p, needs)) {
                problems.push(format!(
                    "imports hark.{name}, which needs the permission {}; the manifest does not declare it",
                    needs.permission()
                ));
            }
        }
    }

    match module.get_export(abi::EXPORT_MEMORY) {
        Some(ExternType::Memory(memory)) => {
            let min_bytes = memory.minimum().saturating_mul(64 * 1024);
            if min_bytes > memory_cap as u64 {
                problems.push(format!(
                    "its memory starts at {} KiB, above the cap of {} KiB (skills.memory_mib / limits.memory_mib)",
                    min_bytes / 1024,
                    memory_cap / 1024
                ));
            }
        }
        _ => problems.push(format!(
            "does not export its memory as \"{}\"",
            abi::EXPORT_MEMORY
        )),
    }
    check_export(
        &module,
        abi::EXPORT_ALLOC,
        &[Ty::I32],
        &[Ty::I32],
        &mut problems,
    );
    check_export(
        &module,
        abi::EXPORT_HANDLE,
        &[Ty::I32, Ty::I32],
        &[Ty::I64],
        &mut problems,
    );

    if problems.is_empty() {
        Ok(module)
    } else {
        Err(problems)
    }
}

fn check_export(
    module: &Module,
    name: &str,
    params: &[Ty],
    results: &[Ty],
    problems: &mut Vec<String>,
) {
    match module.get_export(name) {
        Some(ExternType::Func(ty))
            if types_match(ty.params(), params) && types_match(ty.results(), results) => {}
        Some(ExternType::Func(ty)) => problems.push(format!(
            "exports {name} with the type {:?} -> {:?}; ABI 1 wants {params:?} -> {results:?}",
            ty.params(),
            ty.results()
        )),
        _ => problems.push(format!("does not export the function {name}")),
    }
}

fn types_match(actual: &[ValType], abi: &[Ty]) -> bool {
    actual.len() == abi.len()
        && actual
            .iter()
            .zip(abi)
            .all(|(a, b)| matches!((a, b), (ValType::I32, Ty::I32) | (ValType::I64, Ty::I64)))
}

/// Does the declared `p` cover imports that need `needs`?
pub fn covers(p: &Permission, needs: Needs) -> bool {
    matches!(
        (p, needs),
        (Permission::Kv, Needs::Kv)
            | (Permission::Timer, Needs::Timer)
            | (Permission::AudioPlay, Needs::AudioPlay)
            | (Permission::MqttPublish(_), Needs::MqttPublish)
            | (Permission::SecretsRead(_), Needs::SecretsRead)
            | (Permission::NetHttp(_), Needs::NetHttp)
    )
}

fn explain_compile_error(e: &wasmi::Error) -> String {
    let text = e.to_string();
    if text.contains("start") {
        format!("has a start function ({text}); a skill may run only when the hub calls it")
    } else {
        format!("is not a WebAssembly module the hub accepts: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    const GOOD: &str = r#"(module
        (import "hark" "kv_get" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "hark_alloc") (param i32) (result i32) i32.const 0)
        (func (export "hark_handle") (param i32 i32) (result i64) i64.const 0))"#;

    fn compile_wat(wat: &str, permissions: &[Permission]) -> Result<Module, Vec<String>> {
        compile(&engine(), &module(wat), permissions, 16 << 20)
    }

    #[test]
    fn a_module_with_declared_imports_compiles() {
        assert!(compile_wat(GOOD, &[Permission::Kv]).is_ok());
    }

    #[test]
    fn an_import_without_its_permission_is_refused_at_load() {
        let problems = compile_wat(GOOD, &[]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("hark.kv_get") && problems[0].contains("kv"),
            "{problems:?}"
        );
    }

    #[test]
    fn imports_from_elsewhere_or_unknown_names_or_wrong_types_are_refused() {
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
            (import "hark" "exec" (func))
            (import "hark" "log" (func (param i64)))
            (memory (export "memory") 1)
            (func (export "hark_alloc") (param i32) (result i32) i32.const 0)
            (func (export "hark_handle") (param i32 i32) (result i64) i64.const 0))"#;
        let problems = compile_wat(wat, &[]).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("wasi_snapshot_preview1.fd_write"));
        assert!(problems[1].contains("hark.exec"));
        assert!(problems[2].contains("wrong type"));
    }

    #[test]
    fn missing_exports_are_named() {
        let problems = compile_wat("(module (memory 1))", &[]).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("memory")));
        assert!(problems.iter().any(|p| p.contains("hark_alloc")));
        assert!(problems.iter().any(|p| p.contains("hark_handle")));
    }

    #[test]
    fn a_start_function_is_refused() {
        let wat = r#"(module (func $f) (start $f)
            (memory (export "memory") 1)
            (func (export "hark_alloc") (param i32) (result i32) i32.const 0)
            (func (export "hark_handle") (param i32 i32) (result i64) i64.const 0))"#;
        let problems = compile_wat(wat, &[]).unwrap_err();
        assert!(problems[0].contains("start function"), "{problems:?}");
    }

    #[test]
    fn a_memory_above_the_cap_is_refused_at_load() {
        let wat = GOOD.replace(
            "(memory (export \"memory\") 1)",
            "(memory (export \"memory\") 300)",
        );
        let problems = compile_wat(&wat, &[Permission::Kv]).unwrap_err();
        assert!(problems[0].contains("19200 KiB"), "{problems:?}");
    }

    #[test]
    fn garbage_is_not_a_module() {
        let problems = compile(&engine(), b"\0asm\x01\0\0\0garbage", &[], 1 << 20).unwrap_err();
        assert!(
            problems[0].contains("not a WebAssembly module"),
            "{problems:?}"
        );
    }

    #[test]
    fn manifest_limits_only_tighten() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "name": "x", "version": "1.0.0", "limits": {"timeout_ms": 200, "memory_mib": 64}
        }))
        .unwrap();
        let limits = CallLimits::new(&m, Duration::from_millis(1500), 16, 1000);
        assert_eq!(limits.timeout, Duration::from_millis(200));
        assert_eq!(limits.fuel, 200_000);
        assert_eq!(
            limits.memory_bytes,
            16 << 20,
            "the manifest cannot raise the memory cap"
        );
        let problems = limits_problems(&m, Duration::from_millis(1500), 16);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("memory_mib 64"));
    }

    #[test]
    fn an_overstated_board_figure_still_looks_at_the_clock_often() {
        let m: Manifest =
            serde_json::from_value(serde_json::json!({"name": "x", "version": "1.0.0"})).unwrap();
        let typo = CallLimits::new(&m, Duration::from_millis(1500), 16, 1_000_000_000);
        assert_eq!(typo.fuel, 1_500_000_000_000);
        assert_eq!(typo.slice, MAX_SLICE);
        let pi = CallLimits::new(&m, Duration::from_millis(1500), 16, 50_000);
        assert_eq!(pi.slice, 250_000, "~5 ms of work on a slow board");
    }
}
