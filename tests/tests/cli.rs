//! The `hark` binary as a person uses it: run, send, init, audit verify,
//! SIGTERM, and the mistakes a person makes in a config file.

use std::path::{Path, PathBuf};
use std::process::Command;

use hark_tests::{
    Hub, HubProcess, Mosquitto, PATIENCE, Satellite, Setup, TempDir, free_port, hark_binary,
    test_config, wait_online,
};
use serde_json::{Value, json};

use hark_tests::{run_hark as hark, text};

fn config_for(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("hark.toml");
    std::fs::write(
        &path,
        test_config(
            dir,
            &format!("listen = \"127.0.0.1:{port}\""),
            &Setup::default(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn hark_send_prints_the_reply_and_its_exit_code_says_whether_it_worked() {
    let dir = TempDir::new("cli-send");
    let port = free_port();
    let config = config_for(dir.path(), port);
    let _hub = HubProcess::spawn(dir.path(), &config);
    wait_online(port, "hark");
    let config = config.to_str().unwrap();

    let out = hark(
        dir.path(),
        &[
            "--config",
            config,
            "send",
            "kitchen",
            "timer.set",
            "duration=5m",
            "label=pasta",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["speech"], "Pasta timer set for 5 minutes.");

    let out = hark(
        dir.path(),
        &[
            "--config",
            config,
            "send",
            "kitchen",
            "timer.set",
            "duration=soon",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "a non-ok status exits 1");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["status"], "invalid");

    let out = hark(
        dir.path(),
        &[
            "--config",
            config,
            "send",
            "kitchen",
            "timer.set",
            "duration",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("key=value"),
        "{}",
        text(&out.stderr)
    );

    let out = hark(
        dir.path(),
        &[
            "--config",
            config,
            "send",
            "living room",
            "timer.set",
            "duration=5m",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("satellite id"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn hark_send_without_a_hub_says_what_to_check() {
    let dir = TempDir::new("cli-nohub");
    let config = config_for(dir.path(), free_port());
    let out = hark(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "send",
            "kitchen",
            "system.cancel",
            "--timeout",
            "2",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("hark run"), "{err}");
}

/// The README's promise: no config file, no broker installed, two shells.
#[test]
fn hark_run_with_no_config_file_answers_hark_send_on_the_default_port() {
    let dir = TempDir::new("cli-defaults");
    if std::net::TcpListener::bind("127.0.0.1:1883").is_err() {
        panic!(
            "port 1883 is in use, but this test needs it free to check the defaults; stop the \
             broker there (e.g. `service mosquitto stop`; the README's test command does)"
        );
    }
    let log = std::fs::File::create(dir.path().join("hark.log")).unwrap();
    let mut child = Command::new(hark_binary())
        .arg("run")
        .env_remove("HARK_CONFIG")
        .current_dir(dir.path())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_online(1883, "hark");
    let out = hark(dir.path(), &["send", "kitchen", "timer.set", "duration=5m"]);
    let reply: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}{}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(reply["status"], "ok", "{reply}");
    assert_eq!(reply["speech"], "Timer set for 5 minutes.");
    // Leave no timer behind in the default state dir.
    let out = hark(
        dir.path(),
        &["send", "kitchen", "system.cancel", "target=timers"],
    );
    assert!(out.status.success());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_drains_publishes_offline_flushes_the_audit_log_and_exits_zero() {
    // An external broker outlives the hub, so it can carry the goodbye (a
    // clean disconnect discards the last will: this status is the hub's own).
    let mosquitto = Mosquitto::start();
    let port = mosquitto.port;
    let dir = TempDir::new("cli-sigterm");
    let config = dir.path().join("hark.toml");
    let broker = format!("url = \"{}\"", mosquitto.url());
    std::fs::write(&config, test_config(dir.path(), &broker, &Setup::default())).unwrap();
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(port, "hark");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut watcher, kitchen) = rt.block_on(async {
        let mut watcher = Satellite::connect_as(port, "hark", "watch").await;
        watcher.subscribe("hark/hub/status").await;
        let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
        assert_eq!(
            kitchen
                .request("timer.set", json!({"duration": "5m"}))
                .await["status"],
            "ok"
        );
        (watcher, kitchen)
    });
    let status = hub.terminate();
    assert!(status.success(), "exit status {status}");
    rt.block_on(async {
        let offline = watcher
            .wait_for(PATIENCE, |_, s| s["online"] == false)
            .await;
        assert!(offline.is_some(), "the hub said goodbye before leaving");
    });
    drop(kitchen);
    let log = dir.path().join("audit.jsonl");
    let records = hark_tests::audit_records(&log);
    assert_eq!(records.last().unwrap()["kind"], "stop");
    let out = hark(dir.path(), &["audit", "verify", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[test]
fn rust_log_hark_debug_shows_the_hubs_debug_lines_and_never_the_brokers_noise() {
    let dir = TempDir::new("cli-rust-log");
    let port = free_port();
    let config = config_for(dir.path(), port);
    // `hark` names the hub whatever crate its code is in; the embedded
    // broker's own logging stays off although the level is debug.
    let hub = HubProcess::spawn_with_env(dir.path(), &config, &[("RUST_LOG", "debug,hark=debug")]);
    wait_online(port, "hark");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
            let reply = kitchen.request("timer.list", json!({})).await;
            assert_eq!(reply["status"], "ok");
        });
    let log = hub.log_text();
    let status = hub.terminate();
    assert!(status.success(), "exit status {status}");
    let log = log + &std::fs::read_to_string(dir.path().join("hark.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("hark_hub")),
        "no debug line of the hub's:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.contains("rumqttd")),
        "the broker's noise is shown:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "an error on a clean run and stop:\n{log}"
    );
}

#[test]
fn with_no_sound_card_every_stderr_line_is_a_log_line_and_json_logs_parse() {
    // audio.backend = "auto" probes ALSA, whose library prints its own
    // errors on a machine without a sound card unless the hub routes them.
    let dir = TempDir::new("cli-json-log");
    let port = free_port();
    let config = dir.path().join("hark.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{port}\"\n[audio]\nbackend = \"auto\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(hark_binary())
        .args(["--log-format", "json", "--config"])
        .arg(&config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_online(port, "hark");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().count() >= 3, "{text}");
    for line in text.lines() {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|v| v["level"].is_string()),
            "not a JSON log line: {line:?}\n{text}"
        );
    }
}

#[test]
fn under_systemd_the_hub_says_ready_once_connected_feeds_the_watchdog_and_says_stopping() {
    let dir = TempDir::new("cli-sd-notify");
    let port = free_port();
    let config = config_for(dir.path(), port);
    // systemd's end of the protocol: a datagram socket the service writes to.
    let socket_path = dir.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    systemd.set_read_timeout(Some(PATIENCE)).unwrap();
    let hub = HubProcess::spawn_with_env(
        dir.path(),
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let next = || {
        let mut buf = [0u8; 512];
        let n = systemd
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("nothing from the hub: {e}"));
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // The watchdog is fed from the start (systemd only heeds it once the
    // unit is up); on a slow machine pings may come before READY.
    let mut before = Vec::new();
    loop {
        let message = next();
        if message.starts_with("READY=1\n") {
            break;
        }
        assert_eq!(message, "WATCHDOG=1", "before READY: {before:?}");
        before.push(message);
        assert!(before.len() < 1000, "no READY=1");
    }
    // Ready means serving: a request is answered now.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
            assert_eq!(
                kitchen.request("timer.list", json!({})).await["status"],
                "ok"
            );
        });
    // Half of WatchdogSec: pings keep coming while the loop runs.
    for _ in 0..3 {
        let ping = next();
        assert!(
            ping == "WATCHDOG=1" || ping.starts_with("READY=1"),
            "{ping:?}"
        );
    }
    let pid = hub.pid().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut said = Vec::new();
    loop {
        let message = next();
        if message == "STOPPING=1" {
            break;
        }
        said.push(message);
        assert!(said.len() < 100, "no STOPPING=1: {said:?}");
    }
    drop(hub);
}

#[test]
fn a_config_with_an_unknown_key_is_refused_naming_the_key() {
    let dir = TempDir::new("cli-badconfig");
    let path = dir.path().join("hark.toml");
    std::fs::write(
        &path,
        "tier = \"paranoid\"\n[mqtt]\nlisten_addr = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let out = hark(dir.path(), &["--config", path.to_str().unwrap(), "run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("listen_addr") && err.contains("hark.toml"),
        "{err}"
    );

    std::fs::write(&path, "tier = \"yolo\"\n").unwrap();
    let err = text(&hark(dir.path(), &["--config", path.to_str().unwrap(), "run"]).stderr);
    assert!(
        err.contains("tier") && err.contains("paranoid, trusted, convenient"),
        "{err}"
    );

    let err = text(&hark(dir.path(), &["--config", "missing.toml", "run"]).stderr);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn hark_init_writes_a_commented_config_that_runs() {
    let dir = TempDir::new("cli-init");
    let out = hark(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join("hark.toml")).unwrap();
    assert!(written.contains("# Trust tier"), "the file explains itself");
    let out = hark(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2), "it never overwrites silently");
    assert!(text(&out.stderr).contains("--force"));
}

#[test]
fn hark_init_beside_a_running_mosquitto_uses_it_and_the_hub_answers_through_it() {
    // A household's mosquitto (Home Assistant, Zigbee2MQTT) on the port the
    // embedded broker would take.
    let mosquitto = Mosquitto::start();
    let listen = format!("127.0.0.1:{}", mosquitto.port);
    let dir = TempDir::new("cli-init-beside");
    let out = hark(dir.path(), &["init", "--listen", &listen]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("an MQTT broker already listens on {listen}")),
        "{}",
        text(&out.stdout)
    );
    let config = dir.path().join("hark.toml");
    let mut written = std::fs::read_to_string(&config).unwrap();
    assert!(
        written.contains(&format!("url = \"mqtt://{listen}\"")),
        "{written}"
    );
    // No sound card here, and a state dir of its own (as root the default
    // is /var/lib/hark); otherwise the file runs as written.
    written = written
        .replacen("backend = \"auto\"", "backend = \"null\"", 1)
        .replacen(
            "# state_dir = \"/var/lib/hark\"",
            &format!("state_dir = \"{}\"", dir.path().join("state").display()),
            1,
        );
    std::fs::write(&config, written).unwrap();
    let _hub = HubProcess::spawn(dir.path(), &config);
    wait_online(mosquitto.port, "hark");
    let out = hark(
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "send",
            "kitchen",
            "timer.list",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // What the .deb's postinst asks on first install, and the line it
    // looks for.
    let out = hark(dir.path(), &["init", "--stdout", "--listen", &listen]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l == format!("url = \"mqtt://{listen}\"")),
        "{}",
        text(&out.stdout)
    );
    let postinst = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cross/debian/postinst");
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(&postinst)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));

    // Where nothing listens, the embedded broker will.
    let free = format!("127.0.0.1:{}", free_port());
    let dir = TempDir::new("cli-init-free");
    let out = hark(dir.path(), &["init", "--listen", &free]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.path().join("hark.toml")).unwrap();
    assert!(written.contains("url = \"\""), "{written}");
    assert!(
        written.contains(&format!("listen = \"{free}\"")),
        "{written}"
    );
}

#[test]
fn an_embedded_broker_whose_port_a_broker_holds_says_to_use_that_broker() {
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("cli-port-clash");
    let config = config_for(dir.path(), mosquitto.port);
    let out = hark(dir.path(), &["--config", config.to_str().unwrap(), "run"]);
    assert_eq!(out.status.code(), Some(2), "a start-up error");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "use it instead of starting a second one, with mqtt.url = \"mqtt://127.0.0.1:{}\"",
            mosquitto.port
        )),
        "{err}"
    );
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "said once: {err}"
    );
}

/// Runs a hub, makes a few requests, and returns the audit log's lines.
fn audit_log_with_requests(dir: &Path) -> Vec<String> {
    let hub = Hub::start(dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        for _ in 0..3 {
            kitchen.request("system.cancel", json!({})).await;
        }
    });
    let log = hub.audit_path();
    hub.stop().unwrap();
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn verify(dir: &Path, lines: &[String], with_head: bool) -> (bool, String) {
    let path = dir.join("tampered.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let head = dir.join("tampered.jsonl.head");
    if with_head {
        std::fs::copy(dir.join("audit.jsonl.head"), &head).unwrap();
    } else {
        let _ = std::fs::remove_file(&head);
    }
    let out = hark(dir, &["audit", "verify", path.to_str().unwrap()]);
    (out.status.success(), text(&out.stdout))
}

#[test]
fn hark_audit_verify_names_the_first_edited_deleted_or_swapped_record() {
    let dir = TempDir::new("cli-audit");
    let lines = audit_log_with_requests(dir.path());
    assert!(lines.len() >= 8, "{lines:?}");

    let (ok, out) = verify(dir.path(), &lines, true);
    assert!(ok, "an untouched log verifies: {out}");

    // The first request record (after the start and one load record per
    // skill), whatever the number of built-ins.
    let at = lines
        .iter()
        .position(|l| l.contains("kitchen"))
        .expect("a request record");
    assert!(at + 1 < lines.len(), "{lines:?}");
    let line = format!("line {}", at + 1);

    let mut edited = lines.clone();
    edited[at] = edited[at].replace("kitchen", "hallway");
    let (ok, out) = verify(dir.path(), &edited, true);
    assert!(
        !ok && out.contains(&line) && out.contains("edited"),
        "{out}"
    );

    let mut deleted = lines.clone();
    deleted.remove(at);
    let (ok, out) = verify(dir.path(), &deleted, true);
    assert!(
        !ok && out.contains(&line) && out.contains(&format!("seq {}", at + 2)),
        "{out}"
    );

    let mut swapped = lines.clone();
    swapped.swap(at, at + 1);
    let (ok, out) = verify(dir.path(), &swapped, true);
    assert!(
        !ok && out.contains(&line) && out.contains("reordered"),
        "{out}"
    );

    let mut truncated = lines.clone();
    truncated.pop();
    let (ok, out) = verify(dir.path(), &truncated, true);
    assert!(
        !ok && out.contains("deleted"),
        "deleting the last record is caught by the head: {out}"
    );

    let mut headless = lines.clone();
    headless.remove(0);
    let (ok, out) = verify(dir.path(), &headless, false);
    assert!(!ok && out.contains("line 1"), "{out}");
}

#[test]
fn a_damaged_timers_file_stops_the_hub_at_start_and_says_what_to_do() {
    let dir = TempDir::new("cli-timers-damaged");
    let config = config_for(dir.path(), free_port());
    std::fs::write(dir.path().join("timers.json"), b"{\"timers\": [oops").unwrap();
    let out = hark(dir.path(), &["--config", config.to_str().unwrap(), "run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("timers.json") && err.contains("move it aside"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("timers.json")).unwrap(),
        b"{\"timers\": [oops",
        "the damaged file is left for the person to inspect"
    );
}
