//! Loading cannot take the hub down: a hostile `args_schema`, a payload nested
//! past any parser's patience, a module built to blow up the compiler, and a
//! SIGHUP while satellites ask. Each is tried as an attacker would, with the
//! hub's other satellites served meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_hub::sandbox::{self, Shape};
use hark_tests::skills::{self, COUNTER, install, wat};
use hark_tests::{
    Hub, PATIENCE, Satellite, Setup, TempDir, audit_records, hub_status as status, run_hark,
    runtime, skill_entry, text,
};
use serde_json::{Value, json};

fn skills_table(skills: &Path) -> String {
    format!("[skills]\ndir = \"{}\"\n", skills.display())
}

/// A convenient-tier hub serving the skills in `skills`.
fn hub(state: &Path, skills: &Path) -> Hub {
    Hub::start_with(
        state,
        &Setup {
            top: "tier = \"convenient\"".into(),
            tables: skills_table(skills),
            ..Setup::default()
        },
    )
}

/// The counter module, installed as `name` with `args_schema`.
fn install_with_schema(skills_dir: &Path, name: &str, schema: Value) {
    install(
        skills_dir,
        name,
        json!({"args_schema": schema}),
        &wat(COUNTER),
    );
}

/// Another satellite's built-in is answered, and quickly.
async fn still_serving(hub: &Hub) {
    let mut other = Satellite::connect(hub.port, &hub.prefix, "bystander").await;
    let reply = other.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    assert!(reply["elapsed_ms"].as_f64().unwrap() < 100.0, "{reply}");
}

/// The request was refused because the skill was refused at load, saying `says`.
fn assert_refused_at_load(reply: &Value, entry: &Value, says: &str) {
    assert_eq!(reply["status"], "denied", "{reply}");
    assert_eq!(reply["error"]["code"], "not_loaded", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{reply}");
    assert_eq!(entry["enabled"], false);
    assert!(entry["reason"].as_str().unwrap().contains(says), "{entry}");
}

/// The load refusal of `name` in the audit log says `says`.
fn assert_refusal_audited(hub: &Hub, name: &str, says: &str) {
    let records = audit_records(&hub.audit_path());
    assert!(
        records.iter().any(|r| r["kind"] == "refusal"
            && r["skill"] == name
            && r["rule"] == "load.invalid"
            && r["message"].as_str().unwrap_or_default().contains(says)),
        "no refusal of {name} saying {says:?} in the audit log"
    );
}

#[test]
fn schemas_with_ref_cycles_are_refused_at_load_and_the_hub_keeps_answering() {
    let (state, skills_dir) = (TempDir::new("lb-cycle"), TempDir::new("lb-cycle-skills"));
    install_with_schema(skills_dir.path(), "mirror", json!({"$ref": "#"}));
    install_with_schema(
        skills_dir.path(),
        "pingpong",
        json!({
            "type": "object",
            "properties": {"ball": {"$ref": "#/definitions/ping"}},
            "definitions": {
                "ping": {"type": "object", "properties": {"back": {"$ref": "#/definitions/pong"}}},
                "pong": {"allOf": [{"$ref": "#/definitions/ping"}]}
            }
        }),
    );
    let hub = hub(state.path(), skills_dir.path());
    runtime().block_on(async {
        let mut attacker = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let status = status(&hub).await;
        for (name, cycle) in [
            ("mirror", "$ref cycle # -> #"),
            (
                "pingpong",
                "$ref cycle #/definitions/ping -> #/definitions/pong -> #/definitions/ping",
            ),
        ] {
            let reply = attacker
                .request(name, json!({"ball": {"back": {"back": {}}}}))
                .await;
            assert_refused_at_load(&reply, &skill_entry(&status, name), cycle);
            assert_refusal_audited(&hub, name, cycle);
            still_serving(&hub).await;
        }
    });
    hub.stop().unwrap();

    // `hark skills list` says the same, without starting a hub.
    let config = state.path().join("hark.toml");
    std::fs::write(
        &config,
        format!(
            "tier = \"convenient\"\nstate_dir = \"{}\"\n{}",
            state.path().display(),
            skills_table(skills_dir.path())
        ),
    )
    .unwrap();
    let out = run_hark(
        state.path(),
        &["--config", config.to_str().unwrap(), "skills", "list"],
    );
    let listing = text(&out.stdout);
    assert!(listing.contains("$ref cycle # -> #"), "{listing}");
}

#[test]
fn a_remote_ref_is_refused_at_load() {
    let (state, skills_dir) = (TempDir::new("lb-remote"), TempDir::new("lb-remote-skills"));
    install_with_schema(
        skills_dir.path(),
        "fetcher",
        json!({"properties": {"x": {"$ref": "http://attacker.example/schema.json"}}}),
    );
    let hub = hub(state.path(), skills_dir.path());
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("fetcher", json!({"x": 1})).await;
        let entry = skill_entry(&status(&hub).await, "fetcher");
        assert_refused_at_load(&reply, &entry, "is not a local reference");
        still_serving(&hub).await;
    });
    assert_refusal_audited(&hub, "fetcher", "http://attacker.example/schema.json");
    hub.stop().unwrap();
}

#[test]
fn a_deep_but_legal_schema_validates_and_names_the_wrong_value_by_its_pointer() {
    let (state, skills_dir) = (TempDir::new("lb-deep"), TempDir::new("lb-deep-skills"));
    let mut schema = json!({"type": "integer"});
    let mut args = json!(7);
    let mut wrong = json!("seven");
    for _ in 0..20 {
        schema = json!({
            "type": "object",
            "properties": {"a": schema},
            "required": ["a"],
            "additionalProperties": false
        });
        args = json!({"a": args});
        wrong = json!({"a": wrong});
    }
    install_with_schema(skills_dir.path(), "deep", schema);
    let hub = hub(state.path(), skills_dir.path());
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("deep", args).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let reply = sat.request("deep", wrong).await;
        assert_eq!(reply["status"], "invalid", "{reply}");
        assert_eq!(reply["error"]["code"], "schema", "{reply}");
        assert_eq!(
            reply["error"]["details"][0]["pointer"],
            format!("/args{}", "/a".repeat(20)),
            "{reply}"
        );
    });
    hub.stop().unwrap();
}

#[test]
fn payloads_nested_past_any_limit_are_answered_invalid_and_the_hub_keeps_serving() {
    let (state, skills_dir) = (TempDir::new("lb-nest"), TempDir::new("lb-nest-skills"));
    install_with_schema(skills_dir.path(), "counter", json!({"type": "object"}));
    let hub = hub(state.path(), skills_dir.path());
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        // 60,000 brackets (the most mqtt.max_payload lets through): the JSON
        // parser stops at its recursion limit.
        sat.send_raw("[".repeat(60_000)).await;
        let reply = sat.reply_for(None).await;
        assert_eq!(reply["status"], "invalid", "{reply}");
        assert_eq!(reply["error"]["code"], "not_json", "{reply}");

        // The same inside a well-formed request.
        let deep = format!(
            "{{\"id\": \"n-1\", \"intent\": \"counter\", \"args\": {{\"a\": {}1{}}}}}",
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        sat.send_raw(deep).await;
        let reply = sat.reply_for(None).await;
        assert_eq!(reply["status"], "invalid", "{reply}");
        assert_eq!(reply["error"]["code"], "not_json", "{reply}");

        // Deep enough to parse, too deep to validate: refused with the place.
        let args = (0..100).fold(json!(1), |inner, _| json!({"a": inner}));
        let reply = sat.request("counter", args).await;
        assert_eq!(reply["status"], "invalid", "{reply}");
        let pointer = reply["error"]["details"][0]["pointer"].as_str().unwrap();
        assert!(pointer.starts_with("/args/a/a/a"), "{reply}");

        still_serving(&hub).await;
    });
    hub.stop().unwrap();
}

#[test]
fn a_skill_reply_nested_past_the_parsers_limit_is_bad_output() {
    let (state, skills_dir) = (TempDir::new("lb-reply"), TempDir::new("lb-reply-skills"));
    let brackets = 100_000;
    let module = format!(
        r#"(module
          (memory (export "memory") 4)
          (data (i32.const 0) "{}")
          (func (export "hark_alloc") (param i32) (result i32) (i32.const 200000))
          (func (export "hark_handle") (param i32 i32) (result i64) (i64.const {brackets})))"#,
        "[".repeat(brackets)
    );
    install(skills_dir.path(), "nest", json!({}), &wat(&module));
    let hub = hub(state.path(), skills_dir.path());
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let reply = sat.request("nest", json!({})).await;
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(reply["error"]["code"], "bad_output", "{reply}");
        still_serving(&hub).await;
    });
    hub.stop().unwrap();
}

/// Minimal module builder, binary (a near-8 MiB module in WebAssembly text
/// would take longer to assemble than to refuse): the ABI's exports plus one
/// `() -> ()` function per body (its code, without the final `end`).
mod module {
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

    pub fn with_bodies(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // (i32) -> i32, (i32, i32) -> i64, () -> ()
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
        // hark_alloc: i32.const 0; hark_handle: i64.const 0 (an empty reply).
        code.extend(b"\x04\x00\x41\x00\x0b\x04\x00\x42\x00\x0b");
        for body in bodies {
            leb(body.len() as u64 + 2, &mut code);
            code.push(0); // no locals
            code.extend_from_slice(body);
            code.push(0x0b);
        }
        section(10, &code, &mut m);
        m
    }

    /// One function of `depth` nested empty blocks.
    pub fn nested_blocks(depth: usize) -> Vec<u8> {
        let mut body = b"\x02\x40".repeat(depth);
        body.extend(std::iter::repeat_n(0x0b, depth));
        with_bodies(&[body])
    }

    /// `functions` functions of `operators` operators each (i32.const 0; drop).
    pub fn flat(functions: usize, operators: usize) -> Vec<u8> {
        with_bodies(&vec![b"\x41\x00\x1a".repeat(operators / 2); functions])
    }
}

/// The peak resident memory of this process (the hub runs in it), in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib / 1024
}

#[test]
fn a_nested_blocks_module_near_the_size_cap_is_refused_at_load_with_the_reason() {
    let (state, skills_dir) = (TempDir::new("lb-blocks"), TempDir::new("lb-blocks-skills"));
    // Three bytes a level (block, empty type, end): as deep as 8 MiB allows.
    let depth = (sandbox::MAX_MODULE_BYTES - 200) / 3;
    let bomb = module::nested_blocks(depth);
    assert!(bomb.len() <= sandbox::MAX_MODULE_BYTES && bomb.len() > 8_300_000);
    install(skills_dir.path(), "blocks", json!({}), &bomb);
    drop(bomb);
    let hub = hub(state.path(), skills_dir.path());
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let reply = sat.request("blocks", json!({})).await;
        let entry = skill_entry(&status(&hub).await, "blocks");
        assert_refused_at_load(
            &reply,
            &entry,
            &format!("nests blocks, loops and ifs {depth} deep; the limit is 1000"),
        );
        still_serving(&hub).await;
    });
    // Compiling it took 470-600 MB; refusing it takes a few file buffers.
    let peak = peak_rss_mib();
    eprintln!("peak RSS of the test process with the hub: {peak} MiB");
    assert!(peak < 200, "peak RSS {peak} MiB");
    assert_refusal_audited(&hub, "blocks", "refused before compiling");
    hub.stop().unwrap();
}

#[test]
fn the_sdk_examples_pass_the_module_limits_by_a_wide_margin() {
    for name in ["dice", "lights", "shopping_list", "tea"] {
        let shape = Shape::of(&skills::example_wasm(name)).unwrap();
        eprintln!("{name}: {shape:?}");
        let margins = [
            (
                u64::from(shape.max_nesting),
                u64::from(sandbox::MAX_NESTING),
            ),
            (
                shape.max_function_operators,
                sandbox::MAX_FUNCTION_OPERATORS,
            ),
            (shape.operators, sandbox::MAX_MODULE_OPERATORS),
            (
                u64::from(shape.functions),
                u64::from(sandbox::MAX_FUNCTIONS),
            ),
            (shape.max_function_locals, sandbox::MAX_FUNCTION_LOCALS),
            (shape.locals, sandbox::MAX_MODULE_LOCALS),
        ];
        for (value, limit) in margins {
            assert!(value * 10 <= limit, "{name}: {shape:?}");
        }
    }
}

/// How long a built-in takes to answer, seen from the satellite.
async fn round_trip(sat: &mut Satellite) -> Duration {
    let sent = Instant::now();
    let reply = sat.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    sent.elapsed()
}

const BIG: [&str; 5] = ["big1", "big2", "big3", "big4", "big5"];

#[test]
fn a_sighup_while_a_satellite_asks_does_not_delay_built_in_replies() {
    let (state, skills_dir) = (TempDir::new("lb-hup"), TempDir::new("lb-hup-skills"));
    for name in ["dice", "lights", "shopping_list", "tea"] {
        let mut manifest = skills::example_manifest(name);
        manifest["entrypoint"] = json!(format!("{name}.wasm"));
        install(
            skills_dir.path(),
            name,
            manifest,
            &skills::example_wasm(name),
        );
    }
    // Five of the largest legal modules: every operator the hub allows, of
    // a kind that is slow to compile but small once compiled. The reload
    // takes longer than the assertion below allows a reply to wait.
    let functions = (sandbox::MAX_MODULE_OPERATORS / sandbox::MAX_FUNCTION_OPERATORS) as usize;
    let big = module::flat(functions, sandbox::MAX_FUNCTION_OPERATORS as usize - 2);
    for name in BIG {
        install(skills_dir.path(), name, json!({}), &big);
    }
    let hub = hub(state.path(), skills_dir.path());
    let hup = hark_tests::sighup_this_process;
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let mut watcher = Satellite::connect_as(hub.port, &hub.prefix, "watch").await;
        watcher
            .subscribe(&format!("{}/hub/status", hub.prefix))
            .await;
        watcher
            .next_message(PATIENCE)
            .await
            .expect("the retained status");
        for name in BIG {
            let entry = skill_entry(&status(&hub).await, name);
            assert_eq!(entry["enabled"], true, "{entry}");
        }

        let mut quiet = Duration::ZERO;
        for _ in 0..20 {
            quiet = quiet.max(round_trip(&mut sat).await);
        }

        // Change every module, so the reload compiles them all again.
        for name in ["dice", "lights", "shopping_list", "tea"]
            .iter()
            .chain(&BIG)
        {
            let dir = skills_dir.path().join(name);
            let manifest_path = dir.join("manifest.json");
            let mut manifest: Value =
                serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
            let module_path = dir.join(manifest["entrypoint"].as_str().unwrap());
            let mut module = std::fs::read(&module_path).unwrap();
            // A custom section at the end: same code, another sha256.
            module.extend(b"\x00\x05\x04note");
            manifest["sha256"] = json!(skills::sha256_hex(&module));
            std::fs::write(&module_path, &module).unwrap();
            std::fs::write(&manifest_path, manifest.to_string()).unwrap();
        }

        let hupped = Instant::now();
        hup();
        let mut during = Vec::new();
        let reloaded = loop {
            during.push(round_trip(&mut sat).await);
            let status = watcher.next_message(Duration::ZERO).await;
            if status.is_some_and(|(_, status)| status["online"] == true) {
                break hupped.elapsed();
            }
            assert!(hupped.elapsed() < PATIENCE, "the reload never finished");
        };
        let worst = during.iter().max().copied().unwrap_or_default();
        eprintln!(
            "SIGHUP: reload took {reloaded:?}; {} built-in round trips meanwhile, worst {worst:?} \
             (before the SIGHUP, worst of 20: {quiet:?})",
            during.len()
        );
        assert!(
            worst < Duration::from_millis(500),
            "a built-in waited {worst:?} during the reload"
        );
        let entry = skill_entry(&status(&hub).await, "big5");
        assert_eq!(entry["enabled"], true, "{entry}");
        still_serving(&hub).await;
    });
    hub.stop().unwrap();
}
