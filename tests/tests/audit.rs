//! The audit log against the attacks, as an attacker with write access to the hub's disk
//! would run them: each is caught by `hark audit verify` against a checkpoint copied aside before
//! the attack, and, where the hub starts again, by the hub itself (gap record, alarm, status).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hark_tests::{
    Hub, PATIENCE, Satellite, Setup, TempDir, hark_binary, is_root, run_hark, runtime, text,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn setup() -> Setup {
    Setup {
        tables: "[audit]\ncheckpoint_every = 5\n".to_owned(),
        ..Setup::default()
    }
}

/// `n` requests from the kitchen.
fn requests(hub: &Hub, n: usize) {
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        for _ in 0..n {
            let reply = kitchen.request("system.cancel", json!({})).await;
            assert_eq!(reply["status"], "ok", "{reply}");
        }
    });
}

/// The retained message on `topic`, as bytes.
fn retained(port: u16, topic: &str) -> Option<Vec<u8>> {
    runtime().block_on(async {
        let options = MqttOptions::new(
            format!("retained-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        let wait = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                        return p.payload.to_vec();
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait).await.ok()
    })
}

/// The public half of the hub's key, as `hark audit key` prints it.
fn public_key(state: &Path) -> String {
    let key = hark_hub::audit::checkpoint::read_key(&state.join("hub.key")).unwrap();
    hark_hub::signing::format_key(&key.public_key())
}

fn checkpoints(log: &Path) -> PathBuf {
    hark_hub::audit::checkpoint::checkpoints_path(log)
}

/// `hark audit verify <log> --key <key> [--checkpoint <copy>]`.
fn verify(dir: &Path, log: &Path, key: &str, copy: Option<&Path>) -> Output {
    let mut args = vec!["audit", "verify", log.to_str().unwrap(), "--key", key];
    if let Some(copy) = copy {
        args.extend(["--checkpoint", copy.to_str().unwrap()]);
    }
    run_hark(dir, &args)
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(log: &Path, lines: &[String]) {
    std::fs::write(log, lines.join("\n") + "\n").unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_hub_signs_checkpoints_and_retains_the_newest_on_mqtt() {
    let dir = TempDir::new("audit-checkpoint");
    let hub = Hub::start_with(dir.path(), &setup());
    requests(&hub, 6);
    let note = retained(hub.port, "hark/audit/checkpoint").expect("a retained checkpoint");
    let note = String::from_utf8(note).unwrap();
    let key = public_key(dir.path());
    let log = hub.audit_path();
    hub.stop().unwrap();

    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir.path().join("hub.key"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode & 0o777, 0o600);
    // Its public half beside it, for the `hark` group (verify, audit key).
    let public = dir.path().join("hub.pub");
    assert_eq!(
        std::fs::read_to_string(&public).unwrap(),
        format!("{key}\n")
    );
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&public).unwrap().permissions().mode()
    };
    assert_eq!(mode & 0o777, 0o644);
    assert!(note.starts_with("hark-audit/"), "{note}");
    assert!(note.contains("\n\n\u{2014} hark-audit/"), "{note}");

    // The note as kept by someone else, and the hub's own file, agree with the log.
    let saved = dir.path().join("saved.note");
    std::fs::write(&saved, &note).unwrap();
    let out = verify(dir.path(), &log, &key, Some(&saved));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("intact"),
        "{}",
        text(&out.stdout)
    );

    // The size at shutdown covers the stop record.
    let own = std::fs::read_to_string(checkpoints(&log)).unwrap();
    let last_size: u64 = own
        .split("\n\n")
        .filter(|s| s.starts_with("hark-audit/"))
        .last()
        .and_then(|n| n.lines().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert_eq!(
        last_size,
        lines(&log).len() as u64,
        "{own}\n{:#?}",
        lines(&log)
    );
}

#[test]
fn attack_1_a_tail_cut_while_stopped_is_caught_at_restart_and_by_verify() {
    let dir = TempDir::new("audit-cut");
    let hub = Hub::start_with(dir.path(), &setup());
    requests(&hub, 6);
    let log = hub.audit_path();
    hub.stop().unwrap();
    let key = public_key(dir.path());
    let copy = dir.path().join("elsewhere.checkpoints");
    std::fs::copy(checkpoints(&log), &copy).unwrap();

    // The attack: cut the last records and the head file that would tell.
    let mut cut = lines(&log);
    let kept = cut.len() - 4;
    cut.truncate(kept);
    write_lines(&log, &cut);
    std::fs::remove_file(dir.path().join("audit.jsonl.head")).unwrap();

    // The hub starts again: a gap record, an alarm, and the status says so.
    let hub = Hub::start_with(dir.path(), &setup());
    let gap_seq = kept as u64 + 1;
    let alarm = retained(hub.port, "hark/hub/alarm").expect("a retained alarm");
    let alarm: Value = serde_json::from_slice(&alarm).unwrap();
    assert_eq!(alarm["alarm"], "audit_gap");
    assert_eq!(alarm["seq"], gap_seq);
    let status = retained(hub.port, "hark/hub/status").unwrap();
    let status: Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["audit"], format!("broken since seq {gap_seq}"));
    requests(&hub, 2);
    hub.stop().unwrap();
    let records = hark_tests::audit_records(&log);
    assert_eq!(records[kept]["kind"], "gap");
    let message = records[kept]["message"].as_str().unwrap();
    assert!(message.contains("records"), "{message}");

    // verify, with the copy kept elsewhere, says BROKEN.
    let out = verify(dir.path(), &log, &key, Some(&copy));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("BROKEN"),
        "{}",
        text(&out.stdout)
    );

    // Even with the gap record cut out and the chain re-sealed, the copy catches it.
    let _ = std::fs::remove_file(checkpoints(&log));
    let mut rest = lines(&log);
    rest.truncate(kept);
    write_lines(&log, &rest);
    let out = verify(dir.path(), &log, &key, Some(&copy));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("elsewhere.checkpoints"),
        "the checkpoint is named: {}",
        text(&out.stdout)
    );
}

#[test]
fn attack_2_a_live_file_truncated_by_copytruncate_is_caught() {
    let dir = TempDir::new("audit-copytruncate");
    let hub = Hub::start_with(dir.path(), &setup());
    requests(&hub, 6);
    let log = hub.audit_path();
    let key = public_key(dir.path());
    // Someone kept the checkpoint the hub published.
    let note = retained(hub.port, "hark/audit/checkpoint").unwrap();
    let copy = dir.path().join("saved.note");
    std::fs::write(&copy, note).unwrap();

    // logrotate's copytruncate: copy, then truncate the live file in place.
    std::fs::copy(&log, dir.path().join("audit.jsonl.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    requests(&hub, 2);
    hub.stop().unwrap();

    let records = hark_tests::audit_records(&log);
    assert_eq!(records[0]["kind"], "gap", "{:?}", records[0]);
    assert!(
        records[0]["message"]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{}",
        records[0]
    );
    let out = verify(dir.path(), &log, &key, Some(&copy));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("BROKEN"),
        "{}",
        text(&out.stdout)
    );

    // At the next start the file is still short of its checkpoints: a gap again, never silence.
    let hub = Hub::start_with(dir.path(), &setup());
    let status = retained(hub.port, "hark/hub/status").unwrap();
    let status: Value = serde_json::from_slice(&status).unwrap();
    assert!(
        status["audit"]
            .as_str()
            .unwrap()
            .starts_with("broken since seq"),
        "{status}"
    );
    hub.stop().unwrap();
}

#[test]
fn attack_3_a_log_edited_and_rehashed_end_to_end_is_caught_by_a_checkpoint_copy() {
    let dir = TempDir::new("audit-rehash");
    let hub = Hub::start_with(dir.path(), &setup());
    requests(&hub, 6);
    let log = hub.audit_path();
    hub.stop().unwrap();
    let key = public_key(dir.path());
    let copy = dir.path().join("elsewhere.checkpoints");
    std::fs::copy(checkpoints(&log), &copy).unwrap();

    // The attacker's 15-line script: edit one record, re-seal every line, rewrite the head.
    let mut prev = "0".repeat(64);
    let mut out_lines = Vec::new();
    for (i, line) in lines(&log).iter().enumerate() {
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        v.remove("hash");
        if v["kind"] == "request" && i > 0 {
            v.insert("satellite".into(), json!("garage"));
        }
        v.insert("prev".into(), json!(prev));
        let body = serde_json::to_string(&v).unwrap();
        prev = sha256_hex(body.as_bytes());
        out_lines.push(format!("{},\"hash\":\"{prev}\"}}", &body[..body.len() - 1]));
    }
    write_lines(&log, &out_lines);
    let seq = out_lines.len();
    std::fs::write(
        dir.path().join("audit.jsonl.head"),
        format!("{{\"seq\":{seq},\"hash\":\"{prev}\"}}\n"),
    )
    .unwrap();
    // The hub's own checkpoints file is on the attacker's disk too.
    std::fs::remove_file(checkpoints(&log)).unwrap();

    let out = run_hark(dir.path(), &["audit", "verify", log.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the chain alone is fooled: {}",
        text(&out.stdout)
    );
    let out = verify(dir.path(), &log, &key, Some(&copy));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let said = text(&out.stdout);
    assert!(said.contains("BROKEN"), "{said}");
    assert!(said.contains("do not match the checkpoint at"), "{said}");
    assert!(said.contains("elsewhere.checkpoints line 1"), "{said}");
}

#[test]
fn a_checkpoint_whose_signature_fails_or_from_another_hub_is_named() {
    let dir = TempDir::new("audit-badsig");
    let hub = Hub::start_with(dir.path(), &setup());
    requests(&hub, 6);
    let log = hub.audit_path();
    hub.stop().unwrap();
    let key = public_key(dir.path());
    let text_of = std::fs::read_to_string(checkpoints(&log)).unwrap();
    let size = text_of.lines().nth(1).unwrap().to_owned();
    let forged = dir.path().join("forged.checkpoints");
    std::fs::write(
        &forged,
        text_of.replacen(
            &format!("\n{size}\n"),
            &format!("\n{}\n", size.len() + 1000),
            1,
        ),
    )
    .unwrap();
    let out = verify(dir.path(), &log, &key, Some(&forged));
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stdout);
    assert!(said.contains("forged.checkpoints line 1 is bad"), "{said}");
    assert!(said.contains("signature does not verify"), "{said}");

    let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([3; 32]));
    let other = hark_hub::signing::format_key(&other.pk);
    let out = verify(dir.path(), &log, &other, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("another log"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_inclusion_proof_verifies_offline_and_one_changed_byte_does_not() {
    let dir = TempDir::new("audit-proof");
    let hub = Hub::start_with(dir.path(), &setup());
    requests(&hub, 6);
    hub.stop().unwrap();
    let key = public_key(dir.path());
    let config = dir.path().join("hark.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\n", dir.path().display()),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let out = run_hark(dir.path(), &["--config", config, "audit", "key"]);
    assert_eq!(text(&out.stdout).trim(), key);
    let out = run_hark(dir.path(), &["--config", config, "audit", "prove", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let proof = dir.path().join("proof.json");
    std::fs::write(&proof, &out.stdout).unwrap();
    let check = |path: &Path| {
        run_hark(
            dir.path(),
            &[
                "audit",
                "verify",
                "--proof",
                path.to_str().unwrap(),
                "--key",
                &key,
            ],
        )
    };
    let out = check(&proof);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("seq 3 is in the log"),
        "{}",
        text(&out.stdout)
    );

    let mut bent: Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let record = bent["record"]
        .as_str()
        .unwrap()
        .replacen("\"seq\":3", "\"seq\":4", 1);
    bent["record"] = json!(record);
    std::fs::write(&proof, serde_json::to_vec(&bent).unwrap()).unwrap();
    let out = check(&proof);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("NOT hold"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn verify_on_a_file_it_cannot_read_exits_2_without_crying_tamper() {
    let dir = TempDir::new("audit-unreadable");
    let log = dir.path().join("audit.jsonl");
    std::fs::write(&log, "{}\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Root reads anything: run the check as nobody, as a person without access would.
    let root = is_root();
    let out = if root {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(hark_binary())
            .args(["audit", "verify", log.to_str().unwrap()])
            .env_remove("HARK_CONFIG")
            .current_dir(dir.path())
            .output()
            .expect("setpriv, to drop root for this test")
    } else {
        run_hark(dir.path(), &["audit", "verify", log.to_str().unwrap()])
    };
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot read"), "{said}");
    assert!(said.contains("ermission denied"), "{said}");
    assert!(!said.contains("BROKEN"), "{said}");
    assert!(
        said.contains("sudo usermod -aG hark $USER"),
        "says what to do: {said}"
    );

    // A directory where the log should be: unreadable too, not broken.
    let out = run_hark(
        dir.path(),
        &["audit", "verify", dir.path().to_str().unwrap()],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(!said.contains("BROKEN"), "{said}");
}

#[test]
fn the_hub_rotates_at_max_bytes_and_the_segments_verify_as_one_log() {
    let dir = TempDir::new("audit-rotate");
    let setup = Setup {
        tables: "[audit]\ncheckpoint_every = 50\nmax_bytes = 65536\n".to_owned(),
        ..Setup::default()
    };
    let hub = Hub::start_with(dir.path(), &setup);
    // ~330 bytes a record: past 64 KiB twice, with a sync tick between.
    requests(&hub, 220);
    std::thread::sleep(Duration::from_millis(1500));
    requests(&hub, 220);
    let log = hub.audit_path();
    hub.stop().unwrap();
    let key = public_key(dir.path());

    let first = PathBuf::from(format!("{}.1", log.display()));
    let second = PathBuf::from(format!("{}.2", log.display()));
    assert!(first.exists() && second.exists(), "two closed segments");
    let out = verify(dir.path(), &log, &key, None);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("intact"), "{said}");

    // A closed segment deleted: caught.
    std::fs::remove_file(&first).unwrap();
    let out = verify(dir.path(), &log, &key, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(".1 is missing"),
        "{}",
        text(&out.stdout)
    );
}
