//! Attacks from the network side, each written as an attacker would: forged
//! log lines, a 200 MiB packet, a thousand idle sockets, a connection flood
//! from one address, one satellite
//! hogging the skill workers, and a timer flood from made-up satellite ids.
//! Each asserts what the attacker must not get, and that the hub's other
//! satellites are served meanwhile. Timing bounds are generous (CI machines
//! are slow); the measured figures are printed for the issue notes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hark_tests::skills::{self, hostile, install, wat};
use hark_tests::{
    HubProcess, Mosquitto, PATIENCE, Satellite, Setup, TempDir, audit_records, free_port, runtime,
    test_config, wait_online,
};
use serde_json::{Value, json};

fn write_config(dir: &Path, broker_line: &str, setup: &Setup) -> PathBuf {
    let path = dir.join("hark.toml");
    std::fs::write(&path, test_config(dir, broker_line, setup)).unwrap();
    path
}

/// A skill that logs a line with a newline and a forged log line after it.
const CHATTY: &str = r#"(module
  (import "hark" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"speech\":\"logged\"}")
  (data (i32.const 64) "hello\nFORGED line from a skill")
  (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "hark_handle") (param i32 i32) (result i64)
    (call $log (i32.const 1) (i32.const 64) (i32.const 30))
    (i64.const 19)))"#;

/// A hub process with its embedded broker on a free port, online.
fn embedded_hub(name: &str) -> (TempDir, u16, HubProcess) {
    let dir = TempDir::new(name);
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\""),
        &Setup::default(),
    );
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(port, "hark");
    (dir, port, hub)
}

#[test]
fn a_newline_in_an_intent_name_or_a_skill_log_does_not_start_a_log_line() {
    let dir = TempDir::new("log-forging");
    let skills_dir = dir.path().join("skills");
    install(
        &skills_dir,
        "chatty",
        json!({"permissions": ["log"], "args_schema": {"type": "object"}}),
        &wat(CHATTY),
    );
    let port = free_port();
    let setup = Setup {
        top: "tier = \"convenient\"\n".into(),
        tables: format!("[skills]\ndir = \"{}\"\n", skills_dir.display()),
        ..Setup::default()
    };
    let config = write_config(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\""),
        &setup,
    );
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(port, "hark");
    runtime().block_on(async {
        let mut mallory = Satellite::connect(port, "hark", "mallory").await;
        let forged =
            "nope\n2026-12-02T10:00:00.000000Z  INFO hark_hub::hub: FORGED admin logged in";
        mallory
            .send_raw(json!({"id": "r-1", "intent": forged}).to_string())
            .await;
        let reply = mallory.reply_for(Some("r-1")).await;
        assert_eq!(reply["status"], "unknown_intent", "{reply}");
        let reply = mallory.request("chatty", json!({})).await;
        assert_eq!(reply["speech"], "logged", "{reply}");
    });
    // Both texts reached the log, escaped, on the line of the event that
    // carried them.
    let log = hub.log_text();
    assert!(log.contains("\\nFORGED line from a skill"), "{log}");
    assert!(
        log.contains("\\n2026-12-02T10:00:00.000000Z  INFO"),
        "{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("\\nFORGED") || line.contains("\\n2026"),
            "a forged line stands on its own:\n{line}\n\nlog:\n{log}"
        );
    }
}

/// Asks until the hub answers (it may be reconnecting with a clean session,
/// which loses what is sent meanwhile); returns the reply.
async fn ask_until_answered(sat: &mut Satellite, intent: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("{}-retry-{n}", sat.name);
        sat.send_raw(json!({"id": id, "intent": intent}).to_string())
            .await;
        let reply_topic = format!("hark/reply/{}", sat.name);
        if let Some(reply) = sat
            .wait_for(Duration::from_secs(2), |t, b| {
                t == reply_topic && b["id"] == json!(id)
            })
            .await
        {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not answer within {PATIENCE:?}"
        );
    }
}

#[test]
fn a_200_mib_packet_through_mosquitto_is_dropped_unread_and_the_hub_serves_on() {
    let dir = TempDir::new("huge-packet");
    let mosquitto = Mosquitto::start();
    let config = write_config(
        dir.path(),
        &format!("url = \"{}\"", mosquitto.url()),
        &Setup::default(),
    );
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(mosquitto.port, "hark");
    let before = hub.proc_status("VmHWM");
    runtime().block_on(async {
        // A client of its own: the test satellite caps what it sends.
        let mut options = rumqttc::MqttOptions::new("bigmouth", "127.0.0.1", mosquitto.port);
        options.set_max_packet_size(1 << 28, 1 << 28);
        options.set_keep_alive(Duration::from_secs(60));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 4);
        let payload = vec![b' '; 200 << 20];
        client
            .publish(
                "hark/intent/bigmouth",
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
        let sent = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) =
                    eventloop.poll().await
                {
                    return;
                }
            }
        })
        .await;
        assert!(sent.is_ok(), "mosquitto did not take the 200 MiB publish");

        let mut kitchen = Satellite::connect(mosquitto.port, "hark", "kitchen").await;
        let reply = ask_until_answered(&mut kitchen, "system.cancel").await;
        assert_eq!(reply["status"], "ok", "{reply}");
    });
    let peak = hub.proc_status("VmHWM");
    eprintln!("hub peak RSS: {before} KiB before, {peak} KiB after the 200 MiB packet");
    assert!(
        peak < 64 * 1024,
        "the hub peaked at {peak} KiB: it buffered the packet"
    );
    let refusals: Vec<Value> = audit_records(&dir.path().join("audit.jsonl"))
        .into_iter()
        .filter(|r| r["rule"] == "mqtt.packet_too_large")
        .collect();
    assert!(!refusals.is_empty(), "the dropped packet is audited");
    let message = refusals[0]["message"].as_str().unwrap();
    let size: u64 = message
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no size in {message:?}"));
    assert!(
        (200 << 20..201 << 20).contains(&size),
        "names the packet's size: {message}"
    );
}

#[test]
fn a_thousand_idle_sockets_do_not_lock_a_satellite_out() {
    let dir = TempDir::new("idle-sockets");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\""),
        &Setup::default(),
    );
    // As systemd starts services: a soft limit of 1,024 open files.
    let hub = HubProcess::spawn_with_open_files(dir.path(), &config, 1024);
    wait_online(port, "hark");
    let (_, ours) = hark_hub::os::raise_open_files_limit().unwrap();
    assert!(
        ours > 2_000,
        "this test needs 1,100 sockets of its own; the hard open-files limit is {ours}"
    );
    let started = Instant::now();
    let idle: Vec<std::net::TcpStream> = (0..1_100)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    eprintln!(
        "{} idle sockets opened in {:?}",
        idle.len(),
        started.elapsed()
    );
    assert!(idle.len() >= 1_000, "only {} sockets connected", idle.len());
    runtime().block_on(async {
        let asked = Instant::now();
        let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
        let reply = kitchen
            .request("timer.set", json!({"duration": "10m", "label": "pasta"}))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        eprintln!(
            "a satellite connected and was answered {:?} after asking",
            asked.elapsed()
        );
    });
    drop(idle);
    let log = hub.log_text();
    assert!(log.contains("raised the open-files limit"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}

#[test]
fn a_connection_flood_from_one_address_is_cut_to_its_allowance_and_others_connect() {
    let (_dir, port, hub) = embedded_hub("accept-flood");
    runtime().block_on(async {
        // The attacker: another address (127.0.0.2, loopback but not this
        // machine's own), opening sockets as fast as it can.
        let started = Instant::now();
        let mut flood = Vec::new();
        for _ in 0..200 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            if let Ok(stream) = socket.connect(([127, 0, 0, 1], port).into()).await {
                flood.push(stream);
            }
        }
        let seconds = started.elapsed().as_secs() + 1;
        // A socket the hub closed reads end-of-file; one it kept waits for CONNECT.
        let mut kept = 0;
        for stream in &mut flood {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::io::AsyncReadExt::read(stream, &mut byte),
            )
            .await;
            if read.is_err() {
                kept += 1;
            }
        }
        eprintln!(
            "{} of {} sockets from one address kept, opened in {:?}",
            kept,
            flood.len(),
            started.elapsed()
        );
        assert!(
            flood.len() > 100,
            "the flood opened {} sockets",
            flood.len()
        );
        let allowance = hark_hub::broker::ACCEPTS_PER_SOURCE_PER_SECOND as u64 * (seconds + 1);
        assert!(
            (kept as u64) <= allowance,
            "{kept} sockets kept from one address in {seconds} s (allowance {allowance})"
        );
        // This machine's satellite is answered meanwhile.
        let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
        let reply = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    });
    let log = hub.log_text();
    assert!(
        log.contains("closes connections from this address") && log.contains("127.0.0.2"),
        "{log}"
    );
}

#[test]
fn one_satellite_hogging_the_skill_workers_does_not_starve_another() {
    let dir = TempDir::new("fairness");
    let skills_dir = dir.path().join("skills");
    install(
        &skills_dir,
        "spin",
        json!({"args_schema": {"type": "object"}}),
        &wat(hostile::INFINITE_LOOP),
    );
    install(
        &skills_dir,
        "count",
        json!({"args_schema": {"type": "object"}}),
        &wat(skills::COUNTER),
    );
    let port = free_port();
    // Two workers (the default); a pinned board speed, so the loop is
    // stopped by the clock, not by a slow start-up measurement.
    let setup = Setup {
        top: "tier = \"convenient\"\n".into(),
        tables: format!(
            "[skills]\ndir = \"{}\"\nworkers = 2\nfuel_per_ms = 1000000000\n",
            skills_dir.display()
        ),
        ..Setup::default()
    };
    let config = write_config(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\""),
        &setup,
    );
    let _hub = HubProcess::spawn(dir.path(), &config);
    wait_online(port, "hark");
    runtime().block_on(async {
        let attic = Satellite::connect(port, "hark", "attic").await;
        for n in 0..10 {
            attic
                .send_raw(json!({"id": format!("spin-{n}"), "intent": "spin"}).to_string())
                .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let asked = Instant::now();
            let reply = kitchen.request("count", json!({})).await;
            assert_eq!(reply["status"], "ok", "the kitchen was not served: {reply}");
            waits.push(asked.elapsed());
        }
        eprintln!("kitchen's calls while the attic spins: {waits:?}");
        let slowest = *waits.iter().max().unwrap();
        assert!(
            slowest < Duration::from_millis(1_000),
            "the kitchen waited {slowest:?} behind the attic's calls"
        );
        let mut attic = attic;
        let mut statuses = Vec::new();
        for n in 0..10 {
            let reply = attic.reply_for(Some(&format!("spin-{n}"))).await;
            statuses.push(reply["status"].as_str().unwrap().to_string());
        }
        assert!(
            statuses.iter().any(|s| s == "busy"),
            "the attic's own extra calls are busy: {statuses:?}"
        );
        assert!(
            statuses.iter().any(|s| s == "timeout"),
            "the attic's calls that ran were stopped at the budget: {statuses:?}"
        );
    });
}

/// The p99 of `samples`.
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

#[test]
fn a_timer_flood_from_made_up_satellites_is_capped_and_others_are_served() {
    let (dir, port, hub) = embedded_hub("timer-flood");
    let limits = hark_hub::timers::TimerLimits::default();
    let rt = runtime();
    rt.block_on(async {
        let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
        let reply = kitchen
            .request("timer.set", json!({"duration": "1h", "label": "bread"}))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");

        // 100 made-up satellites, 40 timers each, on one connection (ids
        // are free: the topic names them), as fast as the broker takes it.
        let flood = Satellite::connect_as(port, "hark", "flood").await;
        let flooding = tokio::spawn(async move {
            for n in 0..40 {
                for sat in 0..100 {
                    flood
                        .publish(
                            &format!("hark/intent/fake-{sat}"),
                            json!({"id": format!("f-{n}"), "intent": "timer.set",
                                   "args": {"duration": "2h"}})
                            .to_string(),
                        )
                        .await;
                }
            }
            flood
        });
        let mut waits = Vec::new();
        while !flooding.is_finished() || waits.len() < 50 {
            let asked = Instant::now();
            let reply = kitchen.request("system.cancel", json!({})).await;
            assert_eq!(reply["status"], "ok", "{reply}");
            waits.push(asked.elapsed());
        }
        let _flood = flooding.await.unwrap();
        // Let the last of the flood be answered.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let p99 = p99(&mut waits);
        eprintln!(
            "kitchen p99 during the flood: {p99:?} over {} requests",
            waits.len()
        );
        assert!(p99 < Duration::from_millis(1_000), "p99 {p99:?}");
    });
    let saved = hark_hub::timers::saved(dir.path()).unwrap();
    let satellites: std::collections::BTreeSet<&str> = saved
        .timers
        .values()
        .map(|t| t.satellite.as_str())
        .collect();
    eprintln!(
        "after the flood: {} timers on {} satellites (limits {limits:?})",
        saved.timers.len(),
        satellites.len()
    );
    assert!(saved.timers.len() <= limits.total);
    assert!(satellites.len() <= limits.satellites);
    assert!(satellites.contains("kitchen"), "the kitchen kept its timer");
    assert!(
        saved
            .timers
            .values()
            .filter(|t| t.satellite == "fake-0")
            .count()
            <= limits.per_satellite
    );
    // The table the flood left comes back at the next start, quickly.
    let status = hub.terminate();
    assert!(status.success(), "{status}");
    let started = Instant::now();
    let hub = HubProcess::spawn(dir.path(), &dir.path().join("hark.toml"));
    wait_online(port, "hark");
    eprintln!(
        "restart with {} timers: online after {:?}",
        saved.timers.len(),
        started.elapsed()
    );
    drop(hub);
}
