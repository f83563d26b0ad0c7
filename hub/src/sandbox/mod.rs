//! The WebAssembly sandbox: third-party skills run in the wasmi interpreter,
//! each call in a fresh instance, under a fuel and wall-clock budget, a memory
//! cap and a stack limit, on a bounded pool of worker threads. Its host
//! functions act only through the [effects layer](crate::effects), which
//! asks the policy gate first.
//!
//! Layout:
//! - this file: the engine's configuration and the load-time checks of a module
//! - [`exec`]: one call: instantiate, write the input, run in fuel slices, read the reply
//! - [`host`]: the `hark` host functions, the one place guest memory is touched
//! - [`pool`]: worker threads and their bounded queue (full = `busy`)
//! - [`calibrate`]: this board's interpreter speed, to turn milliseconds into fuel

use std::sync::Arc;
use std::time::Duration;

use hark_skill_sdk::abi::{self, Needs, Ty};
use hark_skill_sdk::{Manifest, Permission};
use wasmi::{CompilationMode, Config, EnforcedLimits, Engine, ExternType, Module, ValType};

use crate::effects::kv::KvStore;
use crate::policy::SkillInfo;

pub mod calibrate;
pub mod exec;
pub mod host;
pub(crate) mod pool;

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
    /// Its facts: the same `Arc` as its registry entry's.
    pub info: Arc<SkillInfo>,
    /// Its private key/value store.
    pub kv: Arc<KvStore>,
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
    /// Largest response body `http_request` hands the skill.
    pub http_response_bytes: usize,
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
            http_response_bytes: crate::http::DEFAULT_RESPONSE_KIB as usize * 1024,
        }
        .http_response(limits.http_response_kib, crate::http::DEFAULT_RESPONSE_KIB)
    }

    /// The response cap: the hub's `net.http_response_kib`, lowered by the
    /// manifest's `limits.http_response_kib`.
    pub fn http_response(mut self, manifest_kib: Option<u32>, hub_kib: u32) -> CallLimits {
        let kib = manifest_kib.map_or(hub_kib, |m| m.min(hub_kib));
        self.http_response_bytes = kib as usize * 1024;
        self
    }
}

/// Where the manifest asks for more than the hub allows.
pub fn limits_problems(
    manifest: &Manifest,
    hub_timeout: Duration,
    hub_memory_mib: u32,
    hub_http_kib: u32,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(limits) = manifest.limits {
        if let Some(t) = limits.timeout_ms
            && u128::from(t) > hub_timeout.as_millis()
        {
            problems.push(format!(
                "limits.timeout_ms {t} is above the hub's {} ms; a manifest may only lower it",
                hub_timeout.as_millis()
            ));
        }
        if let Some(m) = limits.memory_mib
            && m > hub_memory_mib
        {
            problems.push(format!(
                    "limits.memory_mib {m} is above the hub's {hub_memory_mib}; a manifest may only lower it"
                ));
        }
        if let Some(k) = limits.http_response_kib
            && k > hub_http_kib
        {
            problems.push(format!(
                "limits.http_response_kib {k} is above the hub's {hub_http_kib} \
                 (net.http_response_kib); a manifest may only lower it"
            ));
        }
    }
    problems
}

// The shape of a module, bounded before wasmi compiles it: compiling costs
// memory per open block, per operator of the function being translated, and
// per operator of the module (its compiled code stays). A module of nested
// blocks within the 8 MiB file cap took 470 MB to compile; the heaviest
// module within these limits we found (2 million `call`s) takes 58 MB peak
// RSS on x86_64. The SDK's examples use at most 26 levels, 1,105 operators a
// function, 21k operators, 322 functions, 14 locals a function, 606 locals.

/// Deepest nesting of blocks, loops, ifs and trys in one function.
pub const MAX_NESTING: u32 = 1_000;
/// Most operators in one function (a `br_table` counts its targets).
pub const MAX_FUNCTION_OPERATORS: u64 = 200_000;
/// Most operators in the module.
pub const MAX_MODULE_OPERATORS: u64 = 2_000_000;
/// Most functions a module defines (wasmi's strict limits say the same).
pub const MAX_FUNCTIONS: u32 = 10_000;
/// Most locals one function declares (wasmparser alone allows 50,000).
pub const MAX_FUNCTION_LOCALS: u64 = 10_000;
/// Most locals all functions declare together.
pub const MAX_MODULE_LOCALS: u64 = 500_000;

/// Compiles `bytes` and checks it keeps ABI 1 and its manifest's word (see
/// [`check_module`]). Before compiling, the module's shape is bounded
/// ([`check_shape`]), so compiling cannot take unbounded memory or time.
/// Every problem found is listed.
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
    check_shape(bytes)?;
    let module = Module::new(engine, bytes).map_err(|e| vec![explain_compile_error(&e)])?;
    check_module(&module, permissions, memory_cap)?;
    Ok(module)
}

/// What compiling a module will have to hold, read from its bytes in one
/// pass that keeps nothing per operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub functions: u32,
    pub operators: u64,
    pub locals: u64,
    pub max_nesting: u32,
    pub max_function_operators: u64,
    pub max_function_locals: u64,
}

impl Shape {
    /// Reads the shape of `bytes`; an error says where the module is malformed.
    pub fn of(bytes: &[u8]) -> Result<Shape, String> {
        use wasmparser::{Operator, Parser, Payload};
        let mut shape = Shape::default();
        for payload in Parser::new(0).parse_all(bytes) {
            let body = match payload.map_err(|e| e.to_string())? {
                Payload::CodeSectionEntry(body) => body,
                _ => continue,
            };
            shape.functions = shape.functions.saturating_add(1);
            let mut locals: u64 = 0;
            let mut reader = body.get_locals_reader().map_err(|e| e.to_string())?;
            for _ in 0..reader.get_count() {
                let (count, _) = reader.read().map_err(|e| e.to_string())?;
                locals = locals.saturating_add(u64::from(count));
            }
            let (mut operators, mut nesting, mut deepest) = (0u64, 0u32, 0u32);
            let mut reader = body.get_operators_reader().map_err(|e| e.to_string())?;
            while !reader.eof() {
                operators += 1;
                match reader.read().map_err(|e| e.to_string())? {
                    Operator::Block { .. }
                    | Operator::Loop { .. }
                    | Operator::If { .. }
                    | Operator::TryTable { .. }
                    | Operator::Try { .. } => {
                        nesting += 1;
                        deepest = deepest.max(nesting);
                    }
                    Operator::End => nesting = nesting.saturating_sub(1),
                    Operator::BrTable { targets } => {
                        operators += u64::from(targets.len());
                    }
                    _ => {}
                }
            }
            shape.operators = shape.operators.saturating_add(operators);
            shape.locals = shape.locals.saturating_add(locals);
            shape.max_nesting = shape.max_nesting.max(deepest);
            shape.max_function_operators = shape.max_function_operators.max(operators);
            shape.max_function_locals = shape.max_function_locals.max(locals);
        }
        Ok(shape)
    }

    /// Where this shape is beyond the hub's limits.
    pub fn problems(&self) -> Vec<String> {
        let checks = [
            (
                "nests blocks, loops and ifs",
                u64::from(self.max_nesting),
                "deep",
                u64::from(MAX_NESTING),
            ),
            (
                "has a function of",
                self.max_function_operators,
                "operators",
                MAX_FUNCTION_OPERATORS,
            ),
            (
                "has",
                self.operators,
                "operators in all",
                MAX_MODULE_OPERATORS,
            ),
            (
                "defines",
                u64::from(self.functions),
                "functions",
                u64::from(MAX_FUNCTIONS),
            ),
            (
                "has a function with",
                self.max_function_locals,
                "locals",
                MAX_FUNCTION_LOCALS,
            ),
            ("declares", self.locals, "locals in all", MAX_MODULE_LOCALS),
        ];
        let mut problems = Vec::new();
        for (before, value, after, limit) in checks {
            if value > limit {
                problems.push(format!("{before} {value} {after}; the limit is {limit}"));
            }
        }
        problems
    }
}

/// Refuses a module whose compilation would be unbounded: too deeply nested,
/// too many operators, functions or locals (the `MAX_*` limits above).
pub fn check_shape(bytes: &[u8]) -> Result<Shape, Vec<String>> {
    let shape = Shape::of(bytes)
        .map_err(|e| vec![format!("is not a WebAssembly module the hub accepts: {e}")])?;
    let mut problems = shape.problems();
    match problems.last_mut() {
        None => Ok(shape),
        Some(last) => {
            last.push_str(" (refused before compiling)");
            Err(problems)
        }
    }
}

/// Checks a compiled module keeps ABI 1 and its manifest's word: only `hark`
/// imports, each covered by a declared permission and of the right type;
/// the three exports; a memory that fits the cap. Cheap: a module kept
/// across a reload is checked again against its (maybe new) manifest.
pub fn check_module(
    module: &Module,
    permissions: &[Permission],
    memory_cap: usize,
) -> Result<(), Vec<String>> {
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
        if let Some(needs) = spec.needs
            && !permissions.iter().any(|p| covers(p, needs))
        {
            problems.push(format!(
                    "imports hark.{name}, which needs the permission {}; the manifest does not declare it",
                    needs.permission()
                ));
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
        module,
        abi::EXPORT_ALLOC,
        &[Ty::I32],
        &[Ty::I32],
        &mut problems,
    );
    check_export(
        module,
        abi::EXPORT_HANDLE,
        &[Ty::I32, Ty::I32],
        &[Ty::I64],
        &mut problems,
    );

    if problems.is_empty() {
        Ok(())
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
        let problems = limits_problems(&m, Duration::from_millis(1500), 16, 256);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("memory_mib 64"));

        let m: Manifest = serde_json::from_value(serde_json::json!({
            "name": "x", "version": "1.0.0", "limits": {"http_response_kib": 64}
        }))
        .unwrap();
        let hub_limits = |hub_kib| {
            CallLimits::new(&m, Duration::from_millis(1500), 16, 1000)
                .http_response(m.limits.and_then(|l| l.http_response_kib), hub_kib)
        };
        assert_eq!(hub_limits(256).http_response_bytes, 64 * 1024);
        assert_eq!(hub_limits(32).http_response_bytes, 32 * 1024);
        let problems = limits_problems(&m, Duration::from_millis(1500), 16, 32);
        assert!(problems[0].contains("http_response_kib 64"), "{problems:?}");
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

    /// A module (binary, fast to build at any size) with the ABI's exports and
    /// one extra `() -> ()` function per body (raw code, without its final `end`).
    fn with_bodies(bodies: &[Vec<u8>], locals: u32) -> Vec<u8> {
        fn leb(mut n: u64, out: &mut Vec<u8>) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    return;
                }
                out.push(byte | 0x80);
            }
        }
        fn section(id: u8, payload: &[u8], out: &mut Vec<u8>) {
            out.push(id);
            leb(payload.len() as u64, out);
            out.extend_from_slice(payload);
        }
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        section(
            1,
            b"\x03\x60\x01\x7f\x01\x7f\x60\x02\x7f\x7f\x01\x7e\x60\x00\x00",
            &mut m,
        );
        let mut funcs = Vec::new();
        leb(2 + bodies.len() as u64, &mut funcs);
        funcs.extend([0, 1]);
        funcs.extend(std::iter::repeat_n(2, bodies.len()));
        section(3, &funcs, &mut m);
        section(5, b"\x01\x00\x01", &mut m);
        section(
            7,
            b"\x03\x06memory\x02\x00\x0ahark_alloc\x00\x00\x0bhark_handle\x00\x01",
            &mut m,
        );
        let mut code = Vec::new();
        leb(2 + bodies.len() as u64, &mut code);
        code.extend(b"\x04\x00\x41\x00\x0b\x04\x00\x42\x00\x0b");
        for body in bodies {
            let mut f = Vec::new();
            if locals == 0 {
                f.push(0);
            } else {
                f.push(1);
                leb(u64::from(locals), &mut f);
                f.push(0x7f);
            }
            f.extend_from_slice(body);
            f.push(0x0b);
            leb(f.len() as u64, &mut code);
            code.extend(f);
        }
        section(10, &code, &mut m);
        m
    }

    fn nested_blocks(depth: usize) -> Vec<u8> {
        let mut body = b"\x02\x40".repeat(depth);
        body.extend(std::iter::repeat_n(0x0b, depth));
        body
    }

    fn shape_problems(bytes: &[u8]) -> Vec<String> {
        compile(&engine(), bytes, &[], 16 << 20).unwrap_err()
    }

    #[test]
    fn a_module_at_every_shape_limit_compiles() {
        let deep = with_bodies(&[nested_blocks(MAX_NESTING as usize)], 0);
        assert!(compile(&engine(), &deep, &[], 16 << 20).is_ok());
        let locals = with_bodies(&[Vec::new()], MAX_FUNCTION_LOCALS as u32);
        assert!(compile(&engine(), &locals, &[], 16 << 20).is_ok());
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_before_compiling() {
        let problems = shape_problems(&with_bodies(&[nested_blocks(MAX_NESTING as usize + 1)], 0));
        assert_eq!(
            problems,
            ["nests blocks, loops and ifs 1001 deep; the limit is 1000 (refused before compiling)"]
        );
        // Loops and ifs count too.
        let mut body = b"\x03\x40\x41\x00\x04\x40".repeat(600);
        body.extend(std::iter::repeat_n(0x0b, 1200));
        assert!(shape_problems(&with_bodies(&[body], 0))[0].contains("1200 deep"));
    }

    #[test]
    fn too_many_operators_in_a_function_or_in_all_are_refused() {
        // i32.const 0; drop: two operators.
        let ops = |n: u64| b"\x41\x00\x1a".repeat(n as usize / 2);
        let big = ops(MAX_FUNCTION_OPERATORS + 2);
        let problems = shape_problems(&with_bodies(&[big], 0));
        assert!(
            problems[0].starts_with("has a function of 200003 operators"),
            "{problems:?}"
        );

        let legal = ops(MAX_FUNCTION_OPERATORS - 2);
        let count = (MAX_MODULE_OPERATORS / MAX_FUNCTION_OPERATORS) as usize + 1;
        let problems = shape_problems(&with_bodies(&vec![legal; count], 0));
        assert!(
            problems[0].contains("operators in all; the limit is 2000000"),
            "{problems:?}"
        );
    }

    #[test]
    fn br_table_targets_count_as_operators() {
        // block; (i32.const 0; br_table with 110,000 targets) x 2; end. A
        // br_table may have at most 131,072 targets (wasmparser's limit).
        let n: u32 = 110_000;
        let mut body = b"\x02\x40".to_vec();
        for _ in 0..2 {
            body.extend(b"\x41\x00\x0e");
            body.extend([0xb0, 0xdb, 0x06]); // 110,000 as LEB128
            body.extend(std::iter::repeat_n(0, n as usize + 1));
        }
        body.push(0x0b);
        let problems = shape_problems(&with_bodies(&[body], 0));
        assert!(
            problems[0].starts_with("has a function of 220007 operators"),
            "{problems:?}"
        );
    }

    #[test]
    fn too_many_functions_or_locals_are_refused() {
        let functions = vec![b"\x01".repeat(40); MAX_FUNCTIONS as usize];
        let problems = shape_problems(&with_bodies(&functions, 0));
        assert!(
            problems[0].starts_with("defines 10002 functions"),
            "{problems:?}"
        );

        let problems = shape_problems(&with_bodies(&[Vec::new()], MAX_FUNCTION_LOCALS as u32 + 1));
        assert!(
            problems[0].starts_with("has a function with 10001 locals"),
            "{problems:?}"
        );

        let count = (MAX_MODULE_LOCALS / MAX_FUNCTION_LOCALS) as usize + 1;
        let problems = shape_problems(&with_bodies(
            &vec![b"\x01".repeat(40); count],
            MAX_FUNCTION_LOCALS as u32,
        ));
        assert!(
            problems[0].starts_with("declares 510000 locals in all"),
            "{problems:?}"
        );
    }
}
