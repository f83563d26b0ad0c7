//! What the hub has done, seen from outside (SPEC §10): Prometheus text on
//! `metrics.listen`, the same figures as JSON through `hark status`, which
//! also shows skills with their reasons and timers per satellite.

use std::io::{Read, Write};
use std::net::TcpStream;

use hark_tests::skills::{self, COUNTER, install, wat};
use hark_tests::{Hub, Satellite, Setup, TempDir, free_port, run_hark, runtime, test_config, text};
use serde_json::{Value, json};

/// `GET path` on the metrics listener: status line and body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(sock, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of the sample `line_start` (name and labels) in `text`.
fn sample(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_and_status_show_what_the_hub_did() {
    let (state, skills_dir) = (TempDir::new("metrics"), TempDir::new("metrics-skills"));
    let mut dice = skills::example_manifest("dice");
    dice["entrypoint"] = json!("dice.wasm");
    install(
        skills_dir.path(),
        "dice",
        dice,
        &skills::example_wasm("dice"),
    );
    install(
        skills_dir.path(),
        "later",
        json!({"min_hub_version": "99.0.0"}),
        &wat(COUNTER),
    );
    let port = free_port();
    let setup = Setup {
        top: "tier = \"convenient\"".into(),
        tables: format!(
            "[skills]\ndir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            skills_dir.path().display()
        ),
        ..Setup::default()
    };
    let hub = Hub::start_with(state.path(), &setup);
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        for i in 0..50 {
            let args = if i < 45 {
                json!({"sides": 6})
            } else {
                json!({"sides": "many"})
            };
            sat.request("dice", args).await;
            sat.request("system.cancel", json!({})).await;
        }
    });

    let (status_line, scraped) = get(port, "/metrics");
    assert!(status_line.contains("200"), "{status_line}");
    let calls = |skill: &str, status: &str| {
        sample(
            &scraped,
            &format!("hark_skill_calls_total{{skill=\"{skill}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(calls("dice", "ok"), 45.0);
    assert_eq!(calls("dice", "invalid"), 5.0);
    assert_eq!(calls("system.cancel", "ok"), 50.0);
    let count = |skill: &str| {
        sample(
            &scraped,
            &format!("hark_skill_call_duration_seconds_count{{skill=\"{skill}\"}}"),
        )
    };
    assert_eq!(count("dice") + count("system.cancel"), 100.0);
    let inf = sample(
        &scraped,
        "hark_skill_call_duration_seconds_bucket{skill=\"dice\",le=\"+Inf\"}",
    );
    assert_eq!(inf, 50.0);
    assert!(sample(&scraped, "hark_skill_fuel_used_total{skill=\"dice\"}") > 0.0);
    assert!(sample(&scraped, "hark_skill_memory_peak_pages{skill=\"dice\"}") > 0.0);
    assert_eq!(sample(&scraped, "hark_requests_total{status=\"ok\"}"), 95.0);
    assert!(sample(&scraped, "hark_resident_memory_bytes") > 0.0);
    assert!(get(port, "/other").0.contains("404"));

    // A timer, then the status the CLI asks for over MQTT.
    runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("timer.set", json!({"duration": "5m"})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    });
    let config = state.path().join("hark.toml");
    let broker = format!("listen = \"127.0.0.1:{}\"", hub.port);
    std::fs::write(&config, test_config(state.path(), &broker, &setup)).unwrap();
    let config = config.to_str().unwrap();
    let out = run_hark(state.path(), &["--config", config, "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["fresh"], true, "{answer}");
    let metrics = &answer["metrics"];
    assert_eq!(metrics["skills"]["dice"]["calls"]["ok"], 45, "{metrics}");
    assert_eq!(
        metrics["skills"]["dice"]["calls"]["invalid"], 5,
        "{metrics}"
    );
    assert_eq!(metrics["skills"]["dice"]["duration_seconds"]["count"], 50);
    assert_eq!(metrics["timers_pending"], 1);
    assert_eq!(metrics["hub"]["timers"]["kitchen"], 1, "{answer}");
    assert!(
        answer["status"].get("timers").is_none(),
        "satellites read the status"
    );
    let broker = format!("embedded, 127.0.0.1:{}", hub.port);
    assert_eq!(metrics["hub"]["broker"], broker, "{answer}");

    let out = run_hark(state.path(), &["--config", config, "status"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for needle in [
        "tier convenient",
        "dice",
        "DISABLED",
        "needs hark 99.0.0",
        "kitchen",
    ] {
        assert!(shown.contains(needle), "no {needle} in\n{shown}");
    }
    hub.stop().unwrap();
}
