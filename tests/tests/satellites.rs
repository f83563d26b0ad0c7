//! Satellites bound to their own topics (SPEC §7), attacked as issue 12
//! lists: a registered satellite speaks and hears only for itself, forged
//! replies and status go nowhere, bad logins are refused at CONNECT, and a
//! removed satellite is shut out without restarting the hub. Against a real
//! mosquitto configured with the files `hark satellite acl --mosquitto`
//! writes, and a real hub process logging in with its own login.

use std::path::Path;
use std::time::Duration;

use hark_tests::{
    HubProcess, Mosquitto, PATIENCE, Satellite, TempDir, audit_records, free_port, run_hark, text,
    try_login,
};
use serde_json::{Value, json};

/// `hark satellite add <id> --json` in `dir`: the satellite's password.
fn add(dir: &Path, id: &str) -> String {
    let out = run_hark(
        dir,
        &["--config", "hark.toml", "satellite", "add", id, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let settings: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(settings["username"], id);
    assert_eq!(settings["topics"]["publish"], format!("hark/intent/{id}"));
    settings["password"].as_str().unwrap().to_string()
}

/// A config in a new directory with `mqtt` as its broker line, and
/// satellites `kitchen` and `hall` registered: the directory and their passwords.
fn registered(name: &str, mqtt: &str) -> (TempDir, String, String) {
    let dir = TempDir::new(name);
    std::fs::write(
        dir.path().join("hark.toml"),
        format!(
            "state_dir = \"{}\"\n[mqtt]\n{mqtt}\n[audio]\nbackend = \"null\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let kitchen_pw = add(dir.path(), "kitchen");
    let hall_pw = add(dir.path(), "hall");
    (dir, kitchen_pw, hall_pw)
}

/// Writes the ACL files into `dir/mosquitto` and returns mosquitto's lines that use them.
fn acl(dir: &Path) -> String {
    let out = run_hark(
        dir,
        &[
            "--config",
            "hark.toml",
            "satellite",
            "acl",
            "--mosquitto",
            "--dir",
            "mosquitto",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let lines: String = said
        .lines()
        .filter(|l| {
            ["allow_anonymous", "password_file", "acl_file"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(lines.lines().count(), 3, "three lines of config: {said}");
    // The paths printed are relative to `dir`, where the CLI ran.
    lines
        .replace(
            "password_file mosquitto/",
            &format!("password_file {}/mosquitto/", dir.display()),
        )
        .replace(
            "acl_file mosquitto/",
            &format!("acl_file {}/mosquitto/", dir.display()),
        )
}

/// Waits until the hub's retained status says online, read as `sat` may read it.
async fn online(sat: &mut Satellite) -> Value {
    sat.subscribe("hark/hub/status").await;
    sat.wait_for(PATIENCE, |topic, body| {
        topic == "hark/hub/status" && body["online"] == true
    })
    .await
    .expect("the hub comes online")
}

/// The attacks both brokers must stop, with satellites `kitchen` and `hall`
/// registered and the hub online on `port`: bad logins, a satellite speaking
/// or listening for another, forged replies and status, the hub's client id.
async fn attack(port: u16, kitchen_pw: &str, hall_pw: &str) {
    // The broker is up (in a hub process, it may still be starting), so a
    // refusal below is the broker's answer, not a closed port.
    hark_tests::wait_for_port(([127, 0, 0, 1], port).into(), "the broker");
    // Refused at CONNECT: a wrong password, an unknown id, no login.
    for (who, login) in [
        ("wrong password", Some(("kitchen", "not-the-password"))),
        ("unknown id", Some(("attic", kitchen_pw))),
        ("another's password", Some(("hall", kitchen_pw))),
        ("anonymous", None),
    ] {
        let err = try_login(port, "intruder", login)
            .await
            .expect_err(&format!("{who} is refused"));
        assert!(
            err.contains("BadUserNamePassword") || err.contains("NotAuthorized"),
            "{who}: refused by the broker's CONNACK, not {err}"
        );
    }

    let mut kitchen =
        Satellite::connect_with(port, "hark", "kitchen", Some(("kitchen", kitchen_pw))).await;
    online(&mut kitchen).await;
    kitchen.subscribe("hark/reply/kitchen").await;
    let reply = kitchen.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");

    let mut hall = Satellite::connect_with(port, "hark", "hall", Some(("hall", hall_pw))).await;
    hall.subscribe("hark/reply/hall").await;
    hall.subscribe("hark/event/hall").await;

    // kitchen listens where it should not, and speaks for hall.
    kitchen.subscribe("hark/reply/hall").await;
    kitchen.subscribe("hark/#").await;
    kitchen
        .publish(
            "hark/intent/hall",
            json!({"id": "forged", "intent": "timer.cancel", "args": {}}).to_string(),
        )
        .await;
    kitchen
        .publish(
            "hark/reply/hall",
            json!({"id": "fake-reply", "status": "ok"}).to_string(),
        )
        .await;
    kitchen
        .publish_retained("hark/hub/status", json!({"online": false, "forged": true}))
        .await;

    // hall's own request is answered; it never sees the forged ones.
    let reply = hall.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    // A round trip of kitchen's after hall's: anything hall's would have arrived by now.
    let reply = kitchen.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (topic, body) in hall.drain() {
        assert!(
            body["id"] != "forged" && body["id"] != "fake-reply",
            "hall got {topic} {body}"
        );
    }
    for (topic, body) in kitchen.drain() {
        assert!(
            !topic.ends_with("/hall"),
            "kitchen heard hall's {topic}: {body}"
        );
    }
    // The status anyone reads is still the hub's.
    let mut watcher = Satellite::connect_with(port, "hark", "hall", Some(("hall", hall_pw))).await;
    let status = online(&mut watcher).await;
    assert!(status.get("forged").is_none(), "{status}");

    // No client but the hub gets the hub's intents, whatever client id it takes.
    let err = try_login(port, "hark-hub", Some(("hark-hub", "guess"))).await;
    assert!(err.is_err(), "the hub's login needs the admin secret");
}

#[test]
fn on_mosquitto_with_the_generated_acl_each_satellite_is_bound_to_its_own_topics() {
    let port = free_port();
    let (dir, kitchen_pw, hall_pw) = registered(
        "sat-mosquitto",
        &format!("url = \"mqtt://127.0.0.1:{port}\""),
    );
    let auth = acl(dir.path());
    // The household's own client, added beside Hark's part of both files.
    let passwd = dir.path().join("mosquitto/passwd");
    let added = std::process::Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(&passwd)
        .args(["homeassistant", "ha-secret"])
        .output()
        .expect("mosquitto_passwd (package mosquitto; ./test.sh installs it)");
    assert!(added.status.success(), "{}", text(&added.stderr));
    let acl_path = dir.path().join("mosquitto/acl");
    let mut rules = std::fs::read_to_string(&acl_path).unwrap();
    rules.push_str("user homeassistant\ntopic read hark/hub/status\n");
    std::fs::write(&acl_path, rules).unwrap();
    let mosquitto = Mosquitto::start_with(port, &auth);
    let hub = HubProcess::spawn(dir.path(), &dir.path().join("hark.toml"));

    let rt = hark_tests::runtime();
    rt.block_on(async {
        attack(port, &kitchen_pw, &hall_pw).await;

        // Removed: refused at once after the files are written again and mosquitto reloads.
        let out = run_hark(
            dir.path(),
            &["--config", "hark.toml", "satellite", "remove", "hall"],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        acl(dir.path());
        mosquitto.reload();
        until_refused(port, ("hall", &hall_pw), "hall still logs in after removal").await;
        // What the household added survived the rewrite.
        try_login(port, "ha", Some(("homeassistant", "ha-secret")))
            .await
            .unwrap();
        let rules = std::fs::read_to_string(&acl_path).unwrap();
        assert!(
            rules.ends_with("user homeassistant\ntopic read hark/hub/status\n"),
            "{rules}"
        );
    });
    drop(rt);

    let audit = audit_records(&dir.path().join("state/audit.jsonl"));
    assert!(
        !audit.iter().any(|r| r["request_id"] == "forged"),
        "no record of the forged request"
    );
    assert!(
        audit
            .iter()
            .any(|r| r["satellite"] == "hall" && r["status"] == "ok")
    );
    hub.terminate();
}

/// Waits until the broker refuses `login`, or panics with `still` after [`PATIENCE`].
async fn until_refused(port: u16, login: (&str, &str), still: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while try_login(port, "login-again", Some(login)).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "{still}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects as `login`, runs `cut` once connected, and returns once the
/// broker has closed the connection, or panics after [`PATIENCE`].
async fn cut_off_by(port: u16, client_id: &str, login: (&str, &str), cut: impl FnOnce()) {
    let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_credentials(login.0, login.1);
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 4);
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    connected_tx.take().map(|tx| tx.send(()));
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
    });
    tokio::time::timeout(PATIENCE, connected)
        .await
        .expect("connected before the cut")
        .unwrap();
    cut();
    let why = tokio::time::timeout(PATIENCE, watch)
        .await
        .expect("the connection is closed without restarting the hub")
        .unwrap();
    println!("{} was cut off: {why}", login.0);
}

#[test]
fn on_the_embedded_broker_each_satellite_is_bound_to_its_own_topics() {
    let port = free_port();
    let (dir, kitchen_pw, hall_pw) =
        registered("sat-embedded", &format!("listen = \"127.0.0.1:{port}\""));
    let hub = HubProcess::spawn(dir.path(), &dir.path().join("hark.toml"));
    let rt = hark_tests::runtime();
    rt.block_on(async {
        attack(port, &kitchen_pw, &hall_pw).await;
        // The hub's client id is the hub's login's alone: a satellite that
        // takes it is refused, so it cannot take over the hub's session.
        let err = try_login(port, "hark-hub", Some(("kitchen", &kitchen_pw))).await;
        assert!(err.is_err(), "a satellite took the hub's client id");

        // hall is connected when it is removed: the hub closes its
        // connection within a second or so, and it cannot come back.
        cut_off_by(port, "hall-connected", ("hall", &hall_pw), || {
            let out = run_hark(
                dir.path(),
                &["--config", "hark.toml", "satellite", "remove", "hall"],
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
        })
        .await;
        assert!(
            try_login(port, "hall-again", Some(("hall", &hall_pw)))
                .await
                .is_err(),
            "hall logs in after removal"
        );
        // kitchen rotated: the old password stops working.
        let out = run_hark(
            dir.path(),
            &[
                "--config",
                "hark.toml",
                "satellite",
                "rotate",
                "kitchen",
                "--json",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
        let new_pw = rotated["password"].as_str().unwrap();
        until_refused(
            port,
            ("kitchen", &kitchen_pw),
            "the old password still works after rotate",
        )
        .await;
        try_login(port, "kitchen-new", Some(("kitchen", new_pw)))
            .await
            .unwrap();
    });
    drop(rt);

    let audit = audit_records(&dir.path().join("state/audit.jsonl"));
    assert!(
        !audit.iter().any(|r| r["request_id"] == "forged"),
        "no record of the forged request"
    );
    let refused = |rule: &str| {
        audit
            .iter()
            .any(|r| r["rule"] == rule && r["satellite"] == "kitchen")
    };
    assert!(
        refused("broker.publish") && refused("broker.subscribe"),
        "the broker's refusals of kitchen are audited"
    );

    // The admin's status lists who is registered now: hall is gone.
    let out = run_hark(dir.path(), &["--config", "hark.toml", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = answer["metrics"]["hub"]["satellites"]
        .as_array()
        .unwrap_or_else(|| panic!("no satellites in {answer}"))
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["kitchen"], "{answer}");
    hub.terminate();
}

/// Wrong passwords for a registered satellite that has not logged in since
/// the hub started: each costs the gate an Argon2id check (tens of
/// milliseconds, hundreds on a Pi). Four attackers keep them coming while
/// kitchen, already connected, asks; the broker must keep serving it, and
/// hall must still log in with its own password afterwards.
#[test]
fn a_flood_of_wrong_passwords_does_not_stall_the_broker() {
    let port = free_port();
    let (dir, kitchen_pw, hall_pw) =
        registered("sat-login-flood", &format!("listen = \"127.0.0.1:{port}\""));
    let hub = HubProcess::spawn(dir.path(), &dir.path().join("hark.toml"));
    let rt = hark_tests::runtime();
    let (mut waits, tries) = rt.block_on(async {
        hark_tests::wait_for_port(([127, 0, 0, 1], port).into(), "the broker");
        let mut kitchen =
            Satellite::connect_with(port, "hark", "kitchen", Some(("kitchen", &kitchen_pw))).await;
        online(&mut kitchen).await;
        kitchen.subscribe("hark/reply/kitchen").await;
        let reply = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");

        let stop = std::time::Instant::now() + Duration::from_secs(3);
        let attackers: Vec<_> = (0..4)
            .map(|a| {
                tokio::spawn(async move {
                    let mut tries = 0u32;
                    while std::time::Instant::now() < stop {
                        let login = Some(("hall", "not-the-password"));
                        let refused = try_login(port, &format!("flood-{a}-{tries}"), login).await;
                        assert!(refused.is_err(), "a wrong password was let in");
                        tries += 1;
                    }
                    tries
                })
            })
            .collect();
        let mut waits = Vec::new();
        while std::time::Instant::now() < stop {
            let asked = std::time::Instant::now();
            let reply = kitchen.request("system.cancel", json!({})).await;
            waits.push(asked.elapsed());
            assert_eq!(reply["status"], "ok", "{reply}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut tries = 0;
        for attacker in attackers {
            tries += attacker.await.unwrap();
        }
        // The flood filled this second's checks; hall's client retries, as
        // any MQTT client does, and is let in.
        let deadline = std::time::Instant::now() + PATIENCE;
        while let Err(e) = try_login(port, "hall-after-the-flood", Some(("hall", &hall_pw))).await {
            assert!(
                std::time::Instant::now() < deadline,
                "hall cannot log in with its own password after the flood: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (waits, tries)
    });
    drop(rt);
    waits.sort();
    let median = waits[waits.len() / 2];
    let p90 = waits[waits.len() * 9 / 10];
    let slowest = waits[waits.len() - 1];
    let waited: Duration = waits.iter().sum();
    eprintln!(
        "{tries} wrong logins in 3 s; kitchen asked {} times meanwhile, waiting {waited:?} in \
         all: median {median:?}, p90 {p90:?}, slowest {slowest:?}",
        waits.len()
    );
    let log = hub.log_text();
    assert!(
        log.contains("wrong password for satellite \\\"hall\\\"")
            || log.contains("wrong password for satellite \"hall\""),
        "the flood reached the Argon2id check: {log}"
    );
    // On the broker's own thread the checks stalled kitchen: 2.2 s of the
    // 3 s spent waiting, p90 211 ms. Off it: p90 2-5 ms.
    assert!(
        p90 < Duration::from_millis(100),
        "kitchen waited {p90:?} (p90) while wrong passwords were checked"
    );
    hub.terminate();
}
