//! WebAssembly skills end to end over MQTT: the tiers, hostile modules
//! refused at load or stopped at call while everyone else is served, and
//! host functions that hold against a skill trying to reach past its grant.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_tests::skills::{self, COUNTER, hostile, install, probe, wat};
use hark_tests::{
    Hub, PATIENCE, Satellite, Setup, TempDir, audit_records, hub_status as status, runtime,
    skill_entry,
};
use serde_json::{Value, json};

/// A hub in `tier` serving the skills in `skills`, plus `extra` TOML tables.
fn hub(state: &Path, tier: &str, skills: &Path, extra: &str) -> Hub {
    Hub::start_with(
        state,
        &Setup {
            top: format!("tier = \"{tier}\""),
            tables: format!("[skills]\ndir = \"{}\"\n{extra}\n", skills.display()),
            ..Setup::default()
        },
    )
}

/// For tests that time an endless loop against the wall clock or a cancel: a
/// board figure far above any machine leaves the fuel ceiling out of it. The
/// hub's own start-up measurement can understate a machine whose speed
/// wanders (qemu's, or any machine busy with other tests) and stop the loop
/// early by fuel; tests/budget.rs covers the fuel ceiling itself.
const CLOCK_ONLY: &str = "fuel_per_ms = 1000000000";

fn dice_manifest() -> Value {
    let mut m = skills::example_manifest("dice");
    m["entrypoint"] = json!("dice.wasm");
    m
}

fn install_dice(skills_dir: &Path) -> std::path::PathBuf {
    install(
        skills_dir,
        "dice",
        dice_manifest(),
        &skills::example_wasm("dice"),
    )
}

/// The hub still answers a built-in for another satellite, at once.
async fn still_serving(hub: &Hub) {
    let mut other = Satellite::connect(hub.port, &hub.prefix, "bystander").await;
    let reply = other.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
}

#[test]
fn a_well_behaved_skill_answers_in_the_convenient_tier() {
    let (state, skills_dir) = (TempDir::new("sb-dice"), TempDir::new("sb-dice-skills"));
    install_dice(skills_dir.path());
    let hub = hub(state.path(), "convenient", skills_dir.path(), "");
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("dice", json!({"sides": 6, "count": 3})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let rolls = reply["data"]["rolls"].as_array().unwrap();
        assert_eq!(rolls.len(), 3);
        assert!(rolls.iter().all(|r| (1..=6).contains(&r.as_u64().unwrap())));
        assert!(
            reply["speech"].as_str().unwrap().starts_with("You rolled "),
            "{reply}"
        );

        let reply = sat.request("dice", json!({"sides": 1})).await;
        assert_eq!(
            reply["status"], "invalid",
            "the manifest's schema runs first"
        );

        let entry = skill_entry(&status(&hub).await, "dice");
        assert_eq!(entry["enabled"], true);
        assert_eq!(entry["kind"], "wasm");
        assert_eq!(entry["signer"], Value::Null, "unsigned");
    });
    let records = audit_records(&hub.audit_path());
    let call = records
        .iter()
        .find(|r| r["intent"] == "dice" && r["status"] == "ok")
        .unwrap();
    assert_eq!(
        call["args"],
        json!({"sides": 6, "count": 3}),
        "convenient audits full args"
    );
    assert!(call["result"]["data"]["rolls"].is_array(), "and results");
    hub.stop().unwrap();
}

#[test]
fn paranoid_refuses_a_wasm_skill_with_denied_and_the_reason() {
    let (state, skills_dir) = (
        TempDir::new("sb-paranoid"),
        TempDir::new("sb-paranoid-skills"),
    );
    install_dice(skills_dir.path());
    let hub = hub(state.path(), "paranoid", skills_dir.path(), "");
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("dice", json!({})).await;
        assert_eq!(reply["status"], "denied", "{reply}");
        assert_eq!(
            reply["error"]["message"],
            "tier paranoid allows built-in skills only (rule tier.paranoid.builtins_only)"
        );
        let entry = skill_entry(&status(&hub).await, "dice");
        assert_eq!(entry["enabled"], false);
        assert_eq!(entry["reason"], "tier paranoid allows built-in skills only");
    });
    hub.stop().unwrap();
}

#[test]
fn trusted_refuses_unsigned_and_unknown_signers_and_runs_signed_skills() {
    let (state, skills_dir) = (
        TempDir::new("sb-trusted"),
        TempDir::new("sb-trusted-skills"),
    );
    let dice = install_dice(skills_dir.path());
    let counter = install(skills_dir.path(), "counter", json!({}), &wat(COUNTER));
    let stranger = install(skills_dir.path(), "stranger", json!({}), &wat(COUNTER));
    let (ours, theirs) = (skills::test_key(1), skills::test_key(2));
    skills::sign(&dice, &ours);
    skills::sign(&stranger, &theirs);
    let _ = counter;
    let trust = format!("[trust]\nkeys = [\"{}\"]\n", skills::public_key(&ours));
    let hub = hub(state.path(), "trusted", skills_dir.path(), &trust);
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("dice", json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");

        let reply = sat.request("counter", json!({})).await;
        assert_eq!(reply["status"], "denied", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unsigned"),
            "{reply}"
        );

        let reply = sat.request("stranger", json!({})).await;
        assert_eq!(reply["status"], "denied", "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("not there") && message.contains(&skills::public_key(&theirs)),
            "{message}"
        );

        let entry = skill_entry(&status(&hub).await, "dice");
        assert_eq!(entry["signer"], skills::public_key(&ours));
    });
    hub.stop().unwrap();
}

/// Installs `module` as skill `name` in a convenient hub and returns its reply.
fn reply_of_hostile(name: &str, module: &[u8], manifest: Value) -> (Value, Value) {
    let (state, skills_dir) = (TempDir::new(name), TempDir::new(&format!("{name}-skills")));
    install(skills_dir.path(), name, manifest, module);
    let hub = hub(state.path(), "convenient", skills_dir.path(), "");
    let (reply, status) = runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request(name, json!({})).await;
        still_serving(&hub).await;
        (reply, status(&hub).await)
    });
    hub.stop().unwrap();
    (reply, skill_entry(&status, name))
}

#[test]
fn an_infinite_loop_is_stopped_at_the_budget_while_builtins_answer_meanwhile() {
    let (state, skills_dir) = (TempDir::new("sb-loop"), TempDir::new("sb-loop-skills"));
    install(
        skills_dir.path(),
        "spin",
        json!({}),
        &wat(hostile::INFINITE_LOOP),
    );
    let hub = hub(state.path(), "convenient", skills_dir.path(), CLOCK_ONLY);
    runtime().block_on(async {
        let mut spinner = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let sent = Instant::now();
        spinner
            .send_raw(json!({"id": "spin-1", "intent": "spin"}).to_string())
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // While the loop burns a worker, a built-in from another satellite answers.
        let reply = kitchen
            .request("timer.set", json!({"duration": "5m"}))
            .await;
        assert_eq!(reply["status"], "ok");
        // Had the built-in queued behind the loop it would have taken ~1,400 ms
        // (sent 100 ms into a 1,500 ms budget). How fast it answers is for the
        // benchmarks: under qemu in CI a journalled timer.set took 126 ms.
        let answered_in = reply["elapsed_ms"].as_f64().unwrap();
        eprintln!("timer.set answered in {answered_in} ms while the loop ran");
        assert!(
            answered_in < 1000.0,
            "the built-in waited for the loop: {reply}"
        );
        assert!(
            sent.elapsed() < Duration::from_millis(1400),
            "the built-in did not wait for the loop"
        );

        let reply = spinner.reply_for(Some("spin-1")).await;
        let stopped_after = sent.elapsed();
        eprintln!("infinite loop stopped after {stopped_after:?}: {reply}");
        assert_eq!(reply["status"], "timeout", "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ran past its 1500 ms budget"),
            "{reply}"
        );
        // 1.5 s budget; generous margin for a loaded CI machine.
        assert!(
            stopped_after < Duration::from_millis(4000),
            "stopped after {stopped_after:?}"
        );
        assert!(
            stopped_after >= Duration::from_millis(1450),
            "stopped early, after {stopped_after:?}"
        );
    });
    hub.stop().unwrap();
}

/// The reply failed with `status`/`code` and its message says `says`.
fn assert_failed(reply: &Value, status: &str, code: &str, says: &str) {
    assert_eq!(reply["status"], status, "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{reply}");
}

#[test]
fn a_memory_grow_bomb_is_stopped_at_the_memory_cap() {
    let (reply, _) = reply_of_hostile("bomb", &wat(hostile::MEMORY_BOMB), json!({}));
    assert_failed(&reply, "error", "trap", "memory limit");
}

#[test]
fn unbounded_recursion_is_stopped_at_the_stack_limit() {
    let (reply, _) = reply_of_hostile("deep", &wat(hostile::RECURSION), json!({}));
    assert_failed(&reply, "error", "trap", "stack overflow");
}

#[test]
fn an_output_bigger_than_the_cap_is_refused() {
    let (reply, _) = reply_of_hostile("chatty", &wat(hostile::HUGE_OUTPUT), json!({}));
    assert_failed(&reply, "error", "bad_output", "1048576 bytes");
}

#[test]
fn a_pointer_outside_memory_in_a_host_call_stops_the_call() {
    let (reply, _) = reply_of_hostile("wild", &wat(hostile::WILD_POINTER), json!({}));
    assert_failed(&reply, "error", "trap", "outside the skill's memory");
}

#[test]
fn a_trap_is_an_error_reply() {
    let (reply, _) = reply_of_hostile("boom", &wat(hostile::TRAP), json!({}));
    assert_failed(&reply, "error", "trap", "unreachable");
}

fn assert_refused_at_load(reply: &Value, entry: &Value, says: &str) {
    assert_eq!(reply["status"], "denied", "{reply}");
    assert_eq!(reply["error"]["code"], "not_loaded", "{reply}");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains(says),
        "{reply}"
    );
    assert_eq!(entry["enabled"], false);
    assert!(entry["reason"].as_str().unwrap().contains(says), "{entry}");
}

#[test]
fn an_import_not_covered_by_permissions_is_refused_at_load() {
    let (reply, entry) = reply_of_hostile("sneaky", &wat(hostile::UNDECLARED_IMPORT), json!({}));
    assert_refused_at_load(&reply, &entry, "hark.kv_get, which needs the permission kv");
}

#[test]
fn a_start_function_is_refused_at_load() {
    let (reply, entry) = reply_of_hostile("eager", &wat(hostile::START_FUNCTION), json!({}));
    assert_refused_at_load(&reply, &entry, "start function");
}

#[test]
fn a_module_whose_sha256_does_not_match_is_refused_at_load() {
    let manifest = json!({"sha256": "0".repeat(64)});
    let (reply, entry) = reply_of_hostile("swapped", &wat(COUNTER), manifest);
    assert_refused_at_load(&reply, &entry, "sha256");
}

#[test]
fn a_manifest_that_lies_about_trust_is_refused_at_load() {
    let manifest = json!({"trusted": false, "permissions": ["mqtt.publish:home/#"]});
    let (reply, entry) = reply_of_hostile("liar", &wat(COUNTER), manifest);
    assert_refused_at_load(&reply, &entry, "\"trusted\": true");
}

#[test]
fn two_satellites_calling_the_same_skill_concurrently_share_no_state() {
    let (state, skills_dir) = (
        TempDir::new("sb-counter"),
        TempDir::new("sb-counter-skills"),
    );
    install(skills_dir.path(), "counter", json!({}), &wat(COUNTER));
    let hub = hub(state.path(), "convenient", skills_dir.path(), "");
    runtime().block_on(async {
        let mut tasks = Vec::new();
        for name in ["kitchen", "hall"] {
            let (port, prefix) = (hub.port, hub.prefix.clone());
            tasks.push(tokio::spawn(async move {
                let mut sat = Satellite::connect(port, &prefix, name).await;
                for _ in 0..10 {
                    let reply = sat.request("counter", json!({})).await;
                    assert_eq!(reply["speech"], "count 1", "{reply}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    hub.stop().unwrap();
}

#[test]
fn a_skill_cannot_read_another_skills_kv_store() {
    let (state, skills_dir) = (TempDir::new("sb-kv"), TempDir::new("sb-kv-skills"));
    let imports_set =
        r#"(import "hark" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))"#;
    let imports_get =
        r#"(import "hark" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))"#;
    let writer = probe(
        imports_set,
        "(call $kv_set (i32.const 1024) (i32.const 3) (i32.const 1040) (i32.const 6))",
        &[(1024, "key"), (1040, "secret")],
    );
    // Reads "key" into a buffer; answers by the status (length 6 -> "other").
    let reader = probe(
        imports_get,
        "(call $kv_get (i32.const 1024) (i32.const 3) (i32.const 2048) (i32.const 64))",
        &[(1024, "key")],
    );
    let kv = json!({"permissions": ["kv"]});
    install(skills_dir.path(), "writer", kv.clone(), &wat(&writer));
    install(skills_dir.path(), "reader", kv, &wat(&reader));
    let hub = hub(state.path(), "convenient", skills_dir.path(), "");
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        assert_eq!(
            sat.request("reader", json!({})).await["speech"],
            "not_found"
        );
        assert_eq!(sat.request("writer", json!({})).await["speech"], "ok");
        assert_eq!(
            sat.request("reader", json!({})).await["speech"],
            "not_found",
            "the reader's store is its own, the writer's secret is not in it"
        );
    });
    hub.stop().unwrap();
    let stored = std::fs::read_to_string(state.path().join("kv/writer.json")).unwrap();
    assert!(
        stored.contains("key"),
        "the writer's store persisted: {stored}"
    );
}

#[test]
fn a_skill_reads_only_granted_secrets_and_never_the_environment() {
    let (state, skills_dir) = (TempDir::new("sb-secret"), TempDir::new("sb-secret-skills"));
    std::fs::write(
        state.path().join("secrets.toml"),
        "mine = \"s3cret\"\nother = \"not yours\"\n",
    )
    .unwrap();
    let import =
        r#"(import "hark" "secret_read" (func $read (param i32 i32 i32 i32) (result i32)))"#;
    let reads = |id: &str| {
        probe(
            import,
            &format!(
                "(call $read (i32.const 1024) (i32.const {}) (i32.const 2048) (i32.const 64))",
                id.len()
            ),
            &[(1024, id)],
        )
    };
    let manifest =
        json!({"trusted": true, "permissions": ["secrets.read:mine", "secrets.read:PATH"]});
    install(
        skills_dir.path(),
        "reads_mine",
        manifest.clone(),
        &wat(&reads("mine")),
    );
    install(
        skills_dir.path(),
        "reads_other",
        manifest.clone(),
        &wat(&reads("other")),
    );
    install(
        skills_dir.path(),
        "reads_env",
        manifest,
        &wat(&reads("PATH")),
    );
    let hub = hub(state.path(), "convenient", skills_dir.path(), "");
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        // "s3cret" is 6 bytes: a length, not a code, so "other".
        assert_eq!(
            sat.request("reads_mine", json!({})).await["speech"],
            "other"
        );
        assert_eq!(
            sat.request("reads_other", json!({})).await["speech"],
            "denied"
        );
        assert!(std::env::var("PATH").is_ok());
        assert_eq!(
            sat.request("reads_env", json!({})).await["speech"],
            "not_found",
            "declared and granted, but PATH lives in the environment, which skills never see"
        );
    });
    let records = audit_records(&hub.audit_path());
    assert!(
        records.iter().any(|r| r["kind"] == "refusal"
            && r["skill"] == "reads_other"
            && r["rule"] == "permission.undeclared"),
        "the denial is audited with its rule"
    );
    hub.stop().unwrap();
}

#[test]
fn a_skill_publishes_only_inside_its_granted_filter_and_never_to_the_hubs_topics() {
    let (state, skills_dir) = (TempDir::new("sb-mqtt"), TempDir::new("sb-mqtt-skills"));
    let import =
        r#"(import "hark" "mqtt_publish" (func $pub (param i32 i32 i32 i32) (result i32)))"#;
    let publishes = |topic: &str| {
        probe(
            import,
            &format!(
                "(call $pub (i32.const 1024) (i32.const {}) (i32.const 2048) (i32.const 2))",
                topic.len()
            ),
            &[(1024, topic), (2048, "on")],
        )
    };
    let key = skills::test_key(7);
    for (name, filter, topic) in [
        ("inside", "home/lights/+/set", "home/lights/kitchen/set"),
        ("outside", "home/lights/+/set", "home/doors/front/open"),
        // A filter that can reach the hub's own topics is refused at load.
        ("hubtopic", "#", "hark/reply/kitchen"),
    ] {
        let manifest = json!({"trusted": true, "permissions": [format!("mqtt.publish:{filter}")]});
        let dir = install(skills_dir.path(), name, manifest, &wat(&publishes(topic)));
        skills::sign(&dir, &key);
    }
    let extra = format!(
        "[trust]\nkeys = [\"{}\"]\n[grants]\ninside = [\"mqtt.publish:home/lights/+/set\"]\n\
         outside = [\"mqtt.publish:home/lights/+/set\"]\n",
        skills::public_key(&key)
    );
    let hub = hub(state.path(), "trusted", skills_dir.path(), &extra);
    runtime().block_on(async {
        let mut lamp = Satellite::connect_as(hub.port, &hub.prefix, "lamp").await;
        lamp.subscribe("home/#").await;
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        assert_eq!(sat.request("inside", json!({})).await["speech"], "ok");
        let (topic, _) = lamp
            .next_message(PATIENCE)
            .await
            .expect("the lamp hears it");
        assert_eq!(topic, "home/lights/kitchen/set");
        assert_eq!(sat.request("outside", json!({})).await["speech"], "denied");
        let refused = sat.request("hubtopic", json!({})).await;
        assert_eq!(refused["status"], "denied", "{refused}");
        let why = refused["error"]["message"].as_str().unwrap();
        assert!(
            why.contains("mqtt.reserved_topic") && why.contains("hark/#"),
            "{why}"
        );
        assert!(
            lamp.next_message(Duration::from_millis(300))
                .await
                .is_none(),
            "nothing else was published"
        );
        let replies: Vec<_> = sat.drain();
        assert!(
            replies.iter().all(|(_, v)| v["status"] != json!(null)),
            "no forged reply reached the satellite"
        );
    });
    hub.stop().unwrap();
}

#[test]
fn trusted_refuses_a_high_risk_permission_without_a_grant() {
    let (state, skills_dir) = (TempDir::new("sb-grant"), TempDir::new("sb-grant-skills"));
    let key = skills::test_key(8);
    let manifest = json!({"trusted": true, "permissions": ["mqtt.publish:home/#"]});
    let dir = install(skills_dir.path(), "ungranted", manifest, &wat(COUNTER));
    skills::sign(&dir, &key);
    let trust = format!("[trust]\nkeys = [\"{}\"]\n", skills::public_key(&key));
    let hub = hub(state.path(), "trusted", skills_dir.path(), &trust);
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("ungranted", json!({})).await;
        assert_eq!(reply["status"], "denied");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("ungranted = [\"mqtt.publish:home/#\"]"),
            "{message}"
        );
    });
    hub.stop().unwrap();
}

#[test]
fn net_http_loads_when_declared_and_a_request_that_is_not_json_is_invalid() {
    let import =
        r#"(import "hark" "http_request" (func $http (param i32 i32 i32 i32) (result i32)))"#;
    let module = probe(
        import,
        "(call $http (i32.const 1024) (i32.const 2) (i32.const 2048) (i32.const 64))",
        &[(1024, "{}")],
    );
    let manifest = json!({"trusted": true, "permissions": ["net.http:api.example.com"]});
    let (reply, entry) = reply_of_hostile("fetcher", &wat(&module), manifest);
    assert_eq!(entry["enabled"], true);
    assert_eq!(reply["speech"], "invalid", "{reply}");
}

#[test]
fn a_full_worker_queue_answers_busy() {
    let (state, skills_dir) = (TempDir::new("sb-busy"), TempDir::new("sb-busy-skills"));
    let manifest = json!({"limits": {"timeout_ms": 300}});
    install(
        skills_dir.path(),
        "spin",
        manifest,
        &wat(hostile::INFINITE_LOOP),
    );
    let hub = hub(
        state.path(),
        "convenient",
        skills_dir.path(),
        &format!("workers = 1\n{CLOCK_ONLY}"),
    );
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        // One running, four queued: the sixth finds the queue full.
        for i in 0..6 {
            sat.send_raw(json!({"id": format!("s-{i}"), "intent": "spin"}).to_string())
                .await;
        }
        let mut statuses = Vec::new();
        for i in 0..6 {
            statuses.push(sat.reply_for(Some(&format!("s-{i}"))).await["status"].clone());
        }
        assert!(statuses.contains(&json!("busy")), "{statuses:?}");
        assert!(statuses.contains(&json!("timeout")), "{statuses:?}");
    });
    hub.stop().unwrap();
}

#[test]
fn system_cancel_from_the_same_satellite_aborts_its_running_call() {
    let (state, skills_dir) = (TempDir::new("sb-cancel"), TempDir::new("sb-cancel-skills"));
    install(
        skills_dir.path(),
        "spin",
        json!({}),
        &wat(hostile::INFINITE_LOOP),
    );
    let hub = hub(state.path(), "convenient", skills_dir.path(), CLOCK_ONLY);
    runtime().block_on(async {
        let mut attic = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let mut hall = Satellite::connect(hub.port, &hub.prefix, "hall").await;
        let sent = Instant::now();
        attic
            .send_raw(json!({"id": "spin-1", "intent": "spin"}).to_string())
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let other = hall.request("system.cancel", json!({})).await;
        assert_eq!(
            other["data"]["calls"], 0,
            "another satellite cannot cancel the attic's call"
        );
        let reply = attic.request("system.cancel", json!({})).await;
        assert_eq!(reply["data"]["calls"], 1, "{reply}");
        assert_eq!(reply["speech"], "Stopped.");
        let spun = attic.reply_for(Some("spin-1")).await;
        assert_eq!(
            (spun["status"].as_str(), spun["error"]["code"].as_str()),
            (Some("error"), Some("cancelled"))
        );
        assert!(
            sent.elapsed() < Duration::from_millis(1400),
            "cancelled before its budget ran out"
        );
    });
    hub.stop().unwrap();
}

#[test]
fn sighup_reloads_skills_and_a_bad_new_version_leaves_the_old_one_serving() {
    let (state, skills_dir) = (TempDir::new("sb-hup"), TempDir::new("sb-hup-skills"));
    install(skills_dir.path(), "counter", json!({}), &wat(COUNTER));
    let hub = hub(state.path(), "convenient", skills_dir.path(), "");
    let hup = hark_tests::sighup_this_process;
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        assert_eq!(sat.request("counter", json!({})).await["speech"], "count 1");
        assert_eq!(
            sat.request("dice", json!({})).await["status"],
            "unknown_intent"
        );

        // A new skill appears, and the counter's new version is broken.
        install_dice(skills_dir.path());
        std::fs::write(skills_dir.path().join("counter/skill.wasm"), b"not wasm").unwrap();
        hup();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if sat.request("dice", json!({})).await["status"] == "ok" {
                break;
            }
            assert!(Instant::now() < deadline, "the reload never happened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            sat.request("counter", json!({})).await["speech"],
            "count 1",
            "the old version still serves"
        );
    });
    let records = audit_records(&hub.audit_path());
    assert!(
        records.iter().any(|r| r["rule"] == "load.kept_old_version"),
        "the kept version is audited"
    );
    hub.stop().unwrap();
}
