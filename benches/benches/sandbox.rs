//! The sandbox's costs: compiling a skill, one call in a fresh instance,
//! the JSON round trip around it, and a whole request through the
//! dispatcher for a built-in next to a WebAssembly skill.
//!
//! Needs the example skills built:
//! `cargo build --release --target wasm32-unknown-unknown --manifest-path skill-sdk/examples/Cargo.toml`
//!
//! `cargo bench -p hark-benches --bench sandbox`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use hark_benches::{Bench, scratch};
use hark_hub::effects::Effects;
use hark_hub::events::Protocol;
use hark_hub::inflight::CancelFlag;
use hark_hub::registry::Runner;
use hark_hub::sandbox::{self, exec, host};
use sha2::{Digest, Sha256};

const TRIVIAL: &str = r#"(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"speech\":\"hi\"}")
  (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "hark_handle") (param i32 i32) (result i64) (i64.const 15)))"#;

fn dice_wasm() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../skill-sdk/examples/target/wasm32-unknown-unknown/release/dice.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example skills first: cargo build --release --target \
             wasm32-unknown-unknown --manifest-path skill-sdk/examples/Cargo.toml",
            path.display()
        )
    })
}

fn install(skills: &Path, name: &str, module: &[u8], extra: serde_json::Value) {
    let dir = skills.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let sha: String = Sha256::digest(module)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut manifest = serde_json::json!({
        "name": name, "version": "1.0.0", "abi": 1, "entrypoint": "skill.wasm", "sha256": sha,
        "args_schema": {"type": "object"}
    });
    for (k, v) in extra.as_object().unwrap() {
        manifest[k] = v.clone();
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("skill.wasm"), module).unwrap();
}

fn sandbox_benches(c: &mut Criterion) {
    let dice = dice_wasm();
    let trivial = wat::parse_str(TRIVIAL).unwrap();
    let engine = sandbox::engine();

    c.bench_function("sandbox/compile_dice", |b| {
        b.iter(|| sandbox::compile(&engine, black_box(&dice), &[], 16 << 20).unwrap())
    });

    let root = scratch("sandbox");
    let skills = root.join("skills");
    install(&skills, "trivial", &trivial, serde_json::json!({}));
    install(
        &skills,
        "dice",
        &dice,
        serde_json::json!({"entrypoint": "skill.wasm"}),
    );
    let bench = Bench::assemble(
        &root.join("state"),
        "tier = \"convenient\"\n",
        &format!("[skills]\ndir = \"{}\"\n", skills.display()),
    );
    let (rt, assembly) = (&bench.rt, &bench.assembly);
    let d = assembly.dispatcher.clone();
    let registry = d.registry();
    let Runner::Wasm(trivial_skill) = &registry.get("trivial").unwrap().runner else {
        panic!("trivial did not load: {:?}", registry.broken())
    };
    let env = d.env().clone();
    // Modules belong to the engine that compiled them: the hub's.
    let engine = assembly.engine.clone();
    let linker = host::linker(&engine);
    let cancel = Arc::new(CancelFlag::default());
    // One call in a fresh instance, as a worker runs it.
    let call = |skill: &sandbox::WasmSkill, input: &[u8]| {
        let state = host::CallState::new(Effects::for_call(
            env.clone(),
            skill.info.clone(),
            skill.kv.clone(),
            "kitchen",
            "r",
            Protocol::NATIVE,
        ));
        exec::call(
            &engine,
            &linker,
            &skill.module,
            &skill.limits,
            state,
            input,
            &cancel,
        )
        .result
        .unwrap()
    };
    let input = br#"{"id":"r","intent":"trivial","args":{},"satellite":"kitchen"}"#;
    c.bench_function("sandbox/instantiate_and_call_trivial", |b| {
        b.iter(|| call(trivial_skill, black_box(input)))
    });
    let Runner::Wasm(dice_skill) = &registry.get("dice").unwrap().runner else {
        panic!("dice did not load: {:?}", registry.broken())
    };
    let dice_input =
        br#"{"id":"r","intent":"dice","args":{"sides":6,"count":3},"satellite":"kitchen"}"#;
    c.bench_function("sandbox/instantiate_and_call_dice", |b| {
        b.iter(|| call(dice_skill, black_box(dice_input)))
    });

    let intent = hark_skill_sdk::Intent {
        id: "r-1".into(),
        intent: "dice".into(),
        args: serde_json::json!({"sides": 6, "count": 3})
            .as_object()
            .unwrap()
            .clone(),
        text: Some("roll three dice".into()),
        confidence: Some(0.9),
        satellite: "kitchen".into(),
    };
    let reply = br#"{"speech":"You rolled 3, 5 and 6: 14 in total.","data":{"rolls":[3,5,6],"total":14,"sides":6}}"#;
    c.bench_function("sandbox/json_round_trip", |b| {
        b.iter(|| {
            let input = serde_json::to_vec(black_box(&intent)).unwrap();
            let out = exec::parse_reply(black_box(reply)).unwrap();
            (input, out)
        })
    });

    let mut group = c.benchmark_group("dispatch_kind");
    let builtin = br#"{"id":"r-1","intent":"system.cancel","args":{}}"#;
    group.bench_function("builtin_system_cancel", |b| {
        b.iter(|| {
            rt.block_on(hark_hub::protocols::native::answer(
                &d,
                "kitchen",
                black_box(builtin),
            ))
        })
    });
    let wasm = br#"{"id":"r-2","intent":"dice","args":{"sides":6,"count":3}}"#;
    group.bench_function("wasm_dice", |b| {
        b.iter(|| {
            let reply = rt.block_on(hark_hub::protocols::native::answer(
                &d,
                "kitchen",
                black_box(wasm),
            ));
            assert_eq!(reply.status, hark_skill_sdk::Status::Ok, "{reply:?}");
            reply
        })
    });
    group.finish();
    drop(bench);
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(benches, sandbox_benches);
criterion_main!(benches);
