//! Host calls are inside the budget: a skill that does nothing but call the
//! hub is stopped on time, can do only so much per call, and leaves the other
//! satellites served. Each test is the attack as a skill author would write
//! it: a module that loops forever on one host function and ignores what it
//! answers (issue 10, items 2, 3 and 7).
//!
//! Functions without a per-call cap (`now_ms`, `last_error`, `kv_get`, `log`
//! past its 64 lines) end at the deadline: `timeout`. Functions with a cap
//! answer `limit` (-6) once past it, and trap the call when asked again:
//! `error` with code `limit`, long before the deadline.
//!
//! The hubs here pin `fuel_per_ms` far above any machine, so the fuel ceiling
//! cannot stop a loop and the deadline checks in the host functions must.
//! Timing assertions have margins a busy CI machine cannot break; the exact
//! figures are printed (`--no-capture`).

use std::path::Path;
use std::time::{Duration, Instant};

use hark_hub::sandbox::host::{
    MAX_AUDIO_PLAYS_PER_CALL, MAX_AUDITED_DENIALS, MAX_DENIALS_PER_CALL,
    MAX_KV_WRITE_BYTES_PER_CALL, MAX_KV_WRITES_PER_CALL, MAX_PUBLISHES_PER_CALL,
    MAX_RANDOM_CALLS_PER_CALL, MAX_SECRET_READS_PER_CALL, MAX_TIMERS_PER_CALL,
};
use hark_skill_sdk::abi::MAX_KV_TOTAL;
use hark_tests::hermes::Rhasspy;
use hark_tests::skills::{host_loop, install, wat};
use hark_tests::{Hub, PATIENCE, Satellite, Setup, TempDir, audit_records, runtime};
use serde_json::{Value, json};

/// The deadline ends the call, never the fuel (see the module doc).
const CLOCK_ONLY: &str = "fuel_per_ms = 1000000000";
/// The budget is 1.5 s and the hub stops a call within a few ms of it; this
/// is the margin for a machine busy with other builds.
const ENDS_BY: Duration = Duration::from_millis(2500);
/// The brief is < 50 ms; this is the margin for a busy machine. The printed
/// figures are the measurement.
const BYSTANDER_BY: Duration = Duration::from_millis(500);

fn hub(state: &Path, skills: &Path, extra: &str) -> Hub {
    Hub::start_with(
        state,
        &Setup {
            top: "tier = \"convenient\"".into(),
            tables: format!(
                "[skills]\ndir = \"{}\"\n{CLOCK_ONLY}\n{extra}\n",
                skills.display()
            ),
            ..Setup::default()
        },
    )
}

/// Bytes this process has passed to `write(2)` and friends so far (the hub
/// under test runs in this process): a ceiling on what it wrote to disk.
fn bytes_written() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io (Linux)");
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a wchar line in /proc/self/io")
}

/// What one attack did, as the attacker and a bystander saw it.
#[derive(Debug)]
struct Attack {
    reply: Value,
    /// From publishing the intent to its reply.
    answered: Duration,
    /// A `system.cancel` round trip from another satellite while the attack ran.
    bystander: Duration,
    /// Bytes the process wrote from the intent to its reply.
    written: u64,
}

impl Attack {
    fn hub_ms(&self) -> f64 {
        self.reply["elapsed_ms"].as_f64().unwrap_or(f64::NAN)
    }

    fn print(&self, what: &str) {
        eprintln!(
            "{what}: {} / {} after {:.1} ms (hub {:.1} ms); bystander system.cancel {:.2} ms; \
             {} bytes written; {}",
            self.reply["status"],
            self.reply["error"]["code"],
            self.answered.as_secs_f64() * 1e3,
            self.hub_ms(),
            self.bystander.as_secs_f64() * 1e3,
            self.written,
            self.reply["error"]["message"]
        );
    }

    /// Stopped at the deadline: `timeout`, on time.
    fn assert_timed_out(&self) {
        assert_eq!(self.reply["status"], "timeout", "{}", self.reply);
        assert!(
            self.reply["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("ran past its 1500 ms budget"),
            "{}",
            self.reply
        );
        assert!(
            self.answered < ENDS_BY,
            "answered after {:?}",
            self.answered
        );
        assert!(
            self.hub_ms() >= 1450.0,
            "stopped early: {:.1} ms",
            self.hub_ms()
        );
        self.assert_bystander_served();
    }

    /// Stopped at a per-call cap: `error` / `limit`, naming the function.
    fn assert_limited(&self, function: &str) {
        assert_eq!(self.reply["status"], "error", "{}", self.reply);
        assert_eq!(self.reply["error"]["code"], "limit", "{}", self.reply);
        let message = self.reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("hark.{function} called"))
                && message.contains("the limit per call is"),
            "{message}"
        );
        assert!(
            self.answered < ENDS_BY,
            "answered after {:?}",
            self.answered
        );
        self.assert_bystander_served();
    }

    fn assert_bystander_served(&self) {
        assert!(
            self.bystander < BYSTANDER_BY,
            "another satellite's system.cancel took {:?}",
            self.bystander
        );
    }
}

/// Satellite `attic` asks for `intent` once; `hall` asks for `system.cancel`
/// while it runs.
async fn attack(hub: &Hub, intent: &str) -> Attack {
    let mut attic = Satellite::connect(hub.port, &hub.prefix, "attic").await;
    let mut hall = Satellite::connect(hub.port, &hub.prefix, "hall").await;
    let before = bytes_written();
    let sent = Instant::now();
    attic
        .send_raw(json!({"id": "attack-1", "intent": intent}).to_string())
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let asked = Instant::now();
    let other = hall.request("system.cancel", json!({})).await;
    let bystander = asked.elapsed();
    assert_eq!(other["status"], "ok", "{other}");
    let reply = attic.reply_for(Some("attack-1")).await;
    let answered = sent.elapsed();
    Attack {
        reply,
        answered,
        bystander,
        written: bytes_written() - before,
    }
}

/// Installs `module` as `name` with `manifest`, starts a hub (with `extra`
/// TOML), runs the attack, and hands the hub back for inspection.
fn run_attack(
    name: &str,
    manifest: Value,
    module: &str,
    prepare: impl FnOnce(&Path),
    extra: &str,
) -> (Attack, Hub, TempDir, TempDir) {
    let (state, skills_dir) = (TempDir::new(name), TempDir::new(&format!("{name}-skills")));
    install(skills_dir.path(), name, manifest, &wat(module));
    prepare(state.path());
    let hub = hub(state.path(), skills_dir.path(), extra);
    let outcome = runtime().block_on(attack(&hub, name));
    outcome.print(name);
    (outcome, hub, state, skills_dir)
}

fn simple_attack(name: &str, manifest: Value, module: &str) -> Attack {
    let (outcome, hub, _state, _skills) = run_attack(name, manifest, module, |_| {}, "");
    hub.stop().unwrap();
    outcome
}

const RANDOM: &str = r#"(import "hark" "random" (func $random (param i32 i32) (result i32)))"#;
const NOW_MS: &str = r#"(import "hark" "now_ms" (func $now (result i64)))"#;
const LAST_ERROR: &str =
    r#"(import "hark" "last_error" (func $last_error (param i32 i32) (result i32)))"#;
const LOG: &str = r#"(import "hark" "log" (func $log (param i32 i32 i32)))"#;
const KV_GET: &str =
    r#"(import "hark" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))"#;
const KV_SET: &str =
    r#"(import "hark" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))"#;
const KV_DELETE: &str =
    r#"(import "hark" "kv_delete" (func $kv_delete (param i32 i32) (result i32)))"#;
const AUDIO_PLAY: &str =
    r#"(import "hark" "audio_play" (func $play (param i32 i32 i32 i32) (result i32)))"#;
const SECRET_READ: &str =
    r#"(import "hark" "secret_read" (func $read (param i32 i32 i32 i32) (result i32)))"#;
const MQTT_PUBLISH: &str =
    r#"(import "hark" "mqtt_publish" (func $pub (param i32 i32 i32 i32) (result i32)))"#;
const TIMER_START: &str =
    r#"(import "hark" "timer_start" (func $timer (param i64 i32 i32) (result i64)))"#;

/// Sets the one-letter key at 1024 to `a` + `$i` mod 15: fifteen keys that
/// keep the store just under its cap once full of 16 KiB values.
const NEXT_KEY: &str = "(i32.store8 (i32.const 1024) \
     (i32.add (i32.const 97) (i32.rem_u (local.get $i) (i32.const 15))))";

/// A kv store for `skill` with fifteen 16 KiB values under `a`..`o`, as
/// the hub writes it (values in hex).
fn seed_kv(state: &Path, skill: &str) {
    let dir = state.join("kv");
    std::fs::create_dir_all(&dir).unwrap();
    let value = "07".repeat(16 * 1024);
    let store: serde_json::Map<String, Value> = (b'a'..=b'o')
        .map(|k| ((k as char).to_string(), json!(value)))
        .collect();
    std::fs::write(
        dir.join(format!("{skill}.json")),
        serde_json::to_vec(&store).unwrap(),
    )
    .unwrap();
}

fn kv_file_size(state: &Path, skill: &str) -> u64 {
    std::fs::metadata(state.join("kv").join(format!("{skill}.json")))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// What one request may write to disk through kv, with room for the audit
/// records, the timers file and the test's own MQTT traffic.
const WRITE_CEILING: u64 = MAX_KV_WRITE_BYTES_PER_CALL as u64 + 512 * 1024;

#[test]
fn a_random_loop_is_stopped_with_limit_after_its_calls_per_call() {
    let module = host_loop(
        RANDOM,
        "(drop (call $random (i32.const 8192) (i32.const 16)))",
        &[],
    );
    let attack = simple_attack("rng", json!({}), &module);
    attack.assert_limited("random");
    let message = attack.reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{MAX_RANDOM_CALLS_PER_CALL} calls")),
        "{message}"
    );
}

#[test]
fn a_random_loop_of_large_reads_is_stopped_with_limit_at_its_bytes_per_call() {
    let module = host_loop(
        RANDOM,
        "(drop (call $random (i32.const 8192) (i32.const 4096)))",
        &[],
    );
    let attack = simple_attack("rng_big", json!({}), &module);
    attack.assert_limited("random");
    assert!(
        attack.reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bytes"),
        "{}",
        attack.reply
    );
}

#[test]
fn a_now_ms_loop_times_out_at_the_deadline() {
    let module = host_loop(NOW_MS, "(drop (call $now))", &[]);
    simple_attack("clock", json!({}), &module).assert_timed_out();
}

#[test]
fn a_last_error_loop_times_out_at_the_deadline() {
    let module = host_loop(
        LAST_ERROR,
        "(drop (call $last_error (i32.const 8192) (i32.const 1024)))",
        &[],
    );
    simple_attack("why", json!({}), &module).assert_timed_out();
}

#[test]
fn a_log_loop_times_out_at_the_deadline() {
    let module = host_loop(
        LOG,
        "(call $log (i32.const 3) (i32.const 1024) (i32.const 5))",
        &[(1024, "hello")],
    );
    simple_attack("chatter", json!({}), &module).assert_timed_out();
}

#[test]
fn a_kv_get_loop_times_out_at_the_deadline_and_writes_nothing() {
    let module = host_loop(
        KV_GET,
        "(drop (call $kv_get (i32.const 1024) (i32.const 1) (i32.const 8192) (i32.const 32768)))",
        &[(1024, "a")],
    );
    let (attack, hub, state, _skills) = run_attack(
        "reader",
        json!({"permissions": ["kv"]}),
        &module,
        |state| seed_kv(state, "reader"),
        "",
    );
    let size = kv_file_size(state.path(), "reader");
    hub.stop().unwrap();
    attack.assert_timed_out();
    assert!(attack.written < WRITE_CEILING, "{} bytes", attack.written);
    assert!(size > 0, "the seeded store is still there");
}

#[test]
fn a_kv_set_loop_of_large_values_is_stopped_and_writes_a_bounded_amount_to_disk() {
    let module = host_loop(
        KV_SET,
        &format!(
            "{NEXT_KEY} (drop (call $kv_set (i32.const 1024) (i32.const 1) (i32.const 8192) \
             (i32.const 16384)))"
        ),
        &[],
    );
    let (attack, hub, state, _skills) = run_attack(
        "hoarder",
        json!({"permissions": ["kv"]}),
        &module,
        |_| {},
        "",
    );
    let size = kv_file_size(state.path(), "hoarder");
    let records = audit_records(&hub.audit_path());
    hub.stop().unwrap();
    eprintln!("kv file {size} bytes; {} audit records", records.len());
    // Eight synced rewrites of a growing store reach the byte cap in well
    // under the budget, unless the disk is busy with other work: then the
    // clock stops the call first. Either way, what one call may write is
    // bounded, which is the attack's point.
    if attack.reply["status"] == "timeout" {
        attack.print("kv_set, stopped by the clock on a busy disk");
        attack.assert_timed_out();
    } else {
        attack.assert_limited("kv_set");
    }
    // Values are kept in hex: twice the bytes, plus the JSON around them.
    assert!(size <= 2 * MAX_KV_TOTAL as u64 + 4096, "{size} bytes");
    assert!(
        attack.written < WRITE_CEILING,
        "one request wrote {} bytes",
        attack.written
    );
}

#[test]
fn a_kv_set_loop_of_small_values_is_stopped_with_limit_after_its_writes_per_call() {
    let module = host_loop(
        KV_SET,
        &format!(
            "{NEXT_KEY} (drop (call $kv_set (i32.const 1024) (i32.const 1) (i32.const 8192) \
             (i32.const 8)))"
        ),
        &[],
    );
    let (attack, hub, state, _skills) = run_attack(
        "scribbler",
        json!({"permissions": ["kv"]}),
        &module,
        |_| {},
        "",
    );
    let size = kv_file_size(state.path(), "scribbler");
    hub.stop().unwrap();
    attack.assert_limited("kv_set");
    let message = attack.reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{MAX_KV_WRITES_PER_CALL} writes")),
        "{message}"
    );
    assert!(size < 4096, "{size} bytes");
    assert!(attack.written < WRITE_CEILING, "{} bytes", attack.written);
}

#[test]
fn a_kv_delete_loop_is_stopped_with_limit_and_writes_a_bounded_amount_to_disk() {
    let module = host_loop(
        KV_DELETE,
        &format!("{NEXT_KEY} (drop (call $kv_delete (i32.const 1024) (i32.const 1)))"),
        &[],
    );
    let (attack, hub, _state, _skills) = run_attack(
        "shredder",
        json!({"permissions": ["kv"]}),
        &module,
        |state| seed_kv(state, "shredder"),
        "",
    );
    hub.stop().unwrap();
    attack.assert_limited("kv_delete");
    assert!(
        attack.written < WRITE_CEILING,
        "one request wrote {} bytes",
        attack.written
    );
}

#[test]
fn a_secret_read_loop_is_stopped_with_limit_after_its_reads_per_call() {
    let module = host_loop(
        SECRET_READ,
        "(drop (call $read (i32.const 1024) (i32.const 4) (i32.const 8192) (i32.const 64)))",
        &[(1024, "mine")],
    );
    let manifest = json!({"trusted": true, "permissions": ["secrets.read:mine"]});
    let (attack, hub, _state, _skills) = run_attack(
        "snoop",
        manifest,
        &module,
        |state| std::fs::write(state.join("secrets.toml"), "mine = \"s3cret\"\n").unwrap(),
        "",
    );
    hub.stop().unwrap();
    attack.assert_limited("secret_read");
    let message = attack.reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{MAX_SECRET_READS_PER_CALL} reads")),
        "{message}"
    );
}

#[test]
fn a_denied_call_loop_writes_at_most_its_audited_denials_and_one_summary() {
    // Declares one secret and asks for another: every call is denied.
    let module = host_loop(
        SECRET_READ,
        "(drop (call $read (i32.const 1024) (i32.const 5) (i32.const 8192) (i32.const 64)))",
        &[(1024, "other")],
    );
    let manifest = json!({"trusted": true, "permissions": ["secrets.read:mine"]});
    let (attack, hub, _state, _skills) = run_attack("prober", manifest, &module, |_| {}, "");
    let records = audit_records(&hub.audit_path());
    hub.stop().unwrap();
    let refusals: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "refusal" && r["request_id"] == "attack-1")
        .collect();
    eprintln!(
        "{} refusal records for one call; the last: {}",
        refusals.len(),
        refusals.last().map(|r| r.to_string()).unwrap_or_default()
    );
    attack.assert_limited("secret_read");
    assert!(
        attack.reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{MAX_DENIALS_PER_CALL} denied calls")),
        "{}",
        attack.reply
    );
    assert_eq!(
        refusals.len(),
        MAX_AUDITED_DENIALS as usize + 1,
        "{refusals:#?}"
    );
    let summary = refusals.last().unwrap();
    let more = MAX_DENIALS_PER_CALL + 2 - MAX_AUDITED_DENIALS;
    assert!(
        summary["message"]
            .as_str()
            .unwrap()
            .contains(&format!("and {more} more denied host calls")),
        "{summary}"
    );
    assert!(
        refusals[..MAX_AUDITED_DENIALS as usize]
            .iter()
            .all(|r| r["rule"] == "permission.undeclared"),
        "{refusals:#?}"
    );
}

#[test]
fn an_mqtt_publish_loop_is_stopped_with_limit_after_its_messages_per_call() {
    let module = host_loop(
        MQTT_PUBLISH,
        "(drop (call $pub (i32.const 1024) (i32.const 9) (i32.const 2048) (i32.const 2)))",
        &[(1024, "home/spam"), (2048, "on")],
    );
    let (state, skills_dir) = (TempDir::new("spammer"), TempDir::new("spammer-skills"));
    let manifest = json!({"trusted": true, "permissions": ["mqtt.publish:home/#"]});
    install(skills_dir.path(), "spammer", manifest, &wat(&module));
    let hub = hub(state.path(), skills_dir.path(), "");
    runtime().block_on(async {
        let mut lamp = Satellite::connect_as(hub.port, &hub.prefix, "lamp").await;
        lamp.subscribe("home/#").await;
        let outcome = attack(&hub, "spammer").await;
        outcome.print("spammer");
        let mut heard = 0;
        while lamp
            .next_message(Duration::from_millis(500))
            .await
            .is_some()
        {
            heard += 1;
        }
        eprintln!("the subscriber heard {heard} messages");
        outcome.assert_limited("mqtt_publish");
        assert_eq!(heard, MAX_PUBLISHES_PER_CALL as usize);
    });
    hub.stop().unwrap();
}

#[test]
fn a_timer_start_loop_is_stopped_with_limit_after_its_timers_per_call() {
    let module = host_loop(
        TIMER_START,
        "(drop (call $timer (i64.const 60000) (i32.const 1024) (i32.const 0)))",
        &[],
    );
    let (state, skills_dir) = (TempDir::new("egg"), TempDir::new("egg-skills"));
    install(
        skills_dir.path(),
        "egg",
        json!({"permissions": ["timer"]}),
        &wat(&module),
    );
    let hub = hub(state.path(), skills_dir.path(), "");
    runtime().block_on(async {
        let outcome = attack(&hub, "egg").await;
        outcome.print("egg");
        let mut attic = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let cancelled = attic
            .request("system.cancel", json!({"target": "timers"}))
            .await;
        eprintln!("timers left by one call: {cancelled}");
        outcome.assert_limited("timer_start");
        assert_eq!(
            cancelled["data"]["timers"].as_array().map_or(0, Vec::len),
            MAX_TIMERS_PER_CALL as usize,
            "{cancelled}"
        );
    });
    hub.stop().unwrap();
}

/// Plays `chime` on the asking satellite's speaker forever.
fn audio_loop() -> String {
    host_loop(
        AUDIO_PLAY,
        "(drop (call $play (i32.const 1024) (i32.const 5) (i32.const 1) (i32.const 1000)))",
        &[(1024, "chime")],
    )
}

#[test]
fn an_audio_play_loop_is_stopped_with_limit_after_its_playbacks_per_call() {
    let (state, skills_dir) = (TempDir::new("siren"), TempDir::new("siren-skills"));
    install(
        skills_dir.path(),
        "siren",
        json!({"permissions": ["audio.play"]}),
        &wat(&audio_loop()),
    );
    let hub = hub(state.path(), skills_dir.path(), "");
    runtime().block_on(async {
        let mut listener = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let outcome = attack(&hub, "siren").await;
        outcome.print("siren");
        let mut started = 0;
        while let Some((topic, event)) = listener.next_message(Duration::from_millis(500)).await {
            if topic.ends_with("/event/attic") && event["event"] == "playback_started" {
                started += 1;
            }
        }
        eprintln!("playback_started events on the satellite: {started}");
        outcome.assert_limited("audio_play");
        assert_eq!(started, MAX_AUDIO_PLAYS_PER_CALL as usize);
    });
    hub.stop().unwrap();
}

#[test]
fn an_audio_play_loop_for_a_hermes_site_sends_at_most_its_playbacks_per_call() {
    let (state, skills_dir) = (TempDir::new("hsiren"), TempDir::new("hsiren-skills"));
    install(
        skills_dir.path(),
        "siren",
        json!({"permissions": ["audio.play"]}),
        &wat(&audio_loop()),
    );
    let hub = hub(
        state.path(),
        skills_dir.path(),
        "[hermes]\nenabled = true\n",
    );
    runtime().block_on(async {
        let mut rhasspy = Rhasspy::connect(hub.port).await;
        let mut hall = Satellite::connect(hub.port, &hub.prefix, "hall").await;
        // An NluIntent as Rhasspy 2.5 sends it; the unmapped name is tried as is.
        let intent = json!({
            "input": "sound the siren", "intent": {"intentName": "siren", "confidenceScore": 1.0},
            "slots": [], "siteId": "kitchen", "sessionId": "s-siren", "customData": null,
        });
        let before = bytes_written();
        let sent = Instant::now();
        rhasspy
            .publish("hermes/intent/siren", intent.to_string())
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let asked = Instant::now();
        let other = hall.request("system.cancel", json!({})).await;
        let bystander = asked.elapsed();
        assert_eq!(other["status"], "ok", "{other}");
        let end = rhasspy.end_session("s-siren").await;
        let answered = sent.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let plays: Vec<usize> = rhasspy
            .drain()
            .into_iter()
            .filter(|(topic, _)| topic.starts_with("hermes/audioServer/kitchen/playBytes/"))
            .map(|(_, wav)| wav.len())
            .collect();
        let record = audit_records(&hub.audit_path())
            .into_iter()
            .find(|r| r["kind"] == "request" && r["request_id"] == "s-siren")
            .expect("the call is audited");
        eprintln!(
            "hermes siren: ended after {:.1} ms ({}), {} playBytes, {} bytes; bystander {:.2} ms; \
             {} bytes written; {record}",
            answered.as_secs_f64() * 1e3,
            String::from_utf8_lossy(&end),
            plays.len(),
            plays.iter().sum::<usize>(),
            bystander.as_secs_f64() * 1e3,
            bytes_written() - before
        );
        assert_eq!(record["status"], "error", "{record}");
        assert_eq!(record["code"], "limit", "{record}");
        assert!(answered < ENDS_BY, "{answered:?}");
        assert!(bystander < BYSTANDER_BY, "{bystander:?}");
        assert!(
            plays.len() <= MAX_AUDIO_PLAYS_PER_CALL as usize && !plays.is_empty(),
            "{} playBytes",
            plays.len()
        );
    });
    hub.stop().unwrap();
}

#[test]
fn host_calls_are_charged_fuel_so_a_host_call_loop_runs_out_of_fuel_not_time() {
    // 1.5 s x 300,000 fuel/ms: the interpreter alone would need ~10^8 rounds
    // of this loop to burn it, longer than the budget on any machine, so the
    // deadline would end the call (it did before host calls were charged);
    // the host calls' cost burns it in ~450,000 rounds.
    let (state, skills_dir) = (TempDir::new("fuel"), TempDir::new("fuel-skills"));
    install(
        skills_dir.path(),
        "clock",
        json!({}),
        &wat(&host_loop(NOW_MS, "(drop (call $now))", &[])),
    );
    let hub = Hub::start_with(
        state.path(),
        &Setup {
            top: "tier = \"convenient\"".into(),
            tables: format!(
                "[skills]\ndir = \"{}\"\nfuel_per_ms = 300000\n",
                skills_dir.path().display()
            ),
            ..Setup::default()
        },
    );
    let reply = runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        sat.request("clock", json!({})).await
    });
    hub.stop().unwrap();
    eprintln!("now_ms loop on 300,000 fuel/ms: {reply}");
    assert_eq!(reply["status"], "timeout", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("used all its fuel"),
        "{reply}"
    );
}

#[test]
fn a_cap_resets_with_every_call() {
    // Two rounds of the same skill each get the full allowance: the caps are
    // per call, not per skill or per satellite.
    let module = host_loop(
        RANDOM,
        "(drop (call $random (i32.const 8192) (i32.const 16)))",
        &[],
    );
    let (state, skills_dir) = (TempDir::new("rng2"), TempDir::new("rng2-skills"));
    install(skills_dir.path(), "rng", json!({}), &wat(&module));
    let hub = hub(state.path(), skills_dir.path(), "");
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        for _ in 0..2 {
            let reply = sat.request("rng", json!({})).await;
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!(
                    "hark.random called {} times",
                    MAX_RANDOM_CALLS_PER_CALL + 2
                )),
                "{reply}"
            );
        }
    });
    let _ = PATIENCE;
    hub.stop().unwrap();
}
