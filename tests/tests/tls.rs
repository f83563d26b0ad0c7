//! TLS both ways (SPEC §7): the hub and `hark send` reach a real mosquitto
//! over `mqtts://` with a CA made at test time, the embedded broker serves
//! `mqtt.tls_listen` with a certificate made the same way, and a client that
//! does not trust the CA is refused before it says a word.

use hark_tests::{Certs, HubProcess, Mosquitto, Satellite, TempDir, free_port, run_hark, text};
use serde_json::json;

/// `hark send` with config `trusting` is answered over TLS; with `wary`,
/// which trusts another CA, it is refused, naming the certificate.
fn sends_and_is_refused(dir: &std::path::Path, trusting: &str, wary: &str) {
    let sent = run_hark(
        dir,
        &["--config", trusting, "send", "hall", "system.cancel"],
    );
    assert!(
        sent.status.success() && text(&sent.stdout).contains("\"status\": \"ok\""),
        "over TLS: {}{}",
        text(&sent.stdout),
        text(&sent.stderr)
    );
    let refused = run_hark(dir, &["--config", wary, "send", "hall", "system.cancel"]);
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(
        said.to_lowercase().contains("certificate"),
        "names the certificate: {said}"
    );
}

#[test]
fn the_hub_and_hark_send_talk_to_mosquitto_over_tls_and_trust_only_their_ca() {
    let dir = TempDir::new("tls-mosquitto");
    let certs = Certs::make(dir.path(), "good");
    let stranger = Certs::make(dir.path(), "stranger");
    let (plain, tls) = (free_port(), free_port());
    let _mosquitto = Mosquitto::start_with(
        plain,
        &format!(
            "allow_anonymous true\nlistener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            certs.ca.display(),
            certs.cert.display(),
            certs.key.display()
        ),
    );
    hark_tests::wait_for_port(([127, 0, 0, 1], tls).into(), "mosquitto's TLS listener");
    let config = |name: &str, ca: &std::path::Path| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "state_dir = \"{}\"\n[mqtt]\nurl = \"mqtts://localhost:{tls}\"\nca_file = \"{}\"\n\
                 [audio]\nbackend = \"null\"\n",
                dir.path().join("state").display(),
                ca.display()
            ),
        )
        .unwrap();
        path
    };
    let trusting = config("hark.toml", &certs.ca);
    config("wary.toml", &stranger.ca);
    let hub = HubProcess::spawn(dir.path(), &trusting);

    // A satellite on the plain listener is answered by the hub on the TLS one.
    hark_tests::wait_online(plain, "hark");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut kitchen = Satellite::connect(plain, "hark", "kitchen").await;
        let reply = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
    });

    sends_and_is_refused(dir.path(), "hark.toml", "wary.toml");

    // `hark doctor` makes the same connection and says which way it went.
    let broker_line = |config: &str| {
        let out = run_hark(dir.path(), &["--config", config, "doctor"]);
        let said = text(&out.stdout);
        said.lines()
            .find(|l| l.contains("broker"))
            .unwrap_or_else(|| panic!("no broker check in {said}"))
            .to_string()
    };
    let good = broker_line("hark.toml");
    assert!(
        good.contains("over TLS with a trusted certificate"),
        "{good}"
    );
    let bad = broker_line("wary.toml");
    assert!(
        bad.contains("cannot reach") && bad.to_lowercase().contains("certificate"),
        "{bad}"
    );
    hub.terminate();
}

#[test]
fn tls_settings_without_mqtts_or_with_bad_files_are_config_errors_naming_the_key() {
    let dir = TempDir::new("tls-config");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    for (mqtt, key) in [
        (
            "url = \"mqtt://localhost:1883\"\nca_file = \"ca.pem\"".to_string(),
            "mqtt.ca_file",
        ),
        (
            format!(
                "url = \"mqtts://localhost\"\nca_file = \"{}\"",
                junk.display()
            ),
            "mqtt.ca_file",
        ),
        (
            "url = \"mqtts://localhost\"\nca_file = \"/nonexistent/ca.pem\"".to_string(),
            "mqtt.ca_file",
        ),
        (
            "url = \"mqtts://localhost\"\nclient_cert = \"c.pem\"".to_string(),
            "mqtt.client_key",
        ),
        (
            "url = \"mqtt://localhost:1883\"\ntls_listen = \"127.0.0.1:8883\"".to_string(),
            "mqtt.tls_listen",
        ),
        (
            "tls_listen = \"127.0.0.1:8883\"\ntls_cert = \"c.pem\"".to_string(),
            "mqtt.tls_key",
        ),
        ("tls_cert = \"c.pem\"".to_string(), "mqtt.tls_cert"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("[mqtt]\n{mqtt}\n")).unwrap();
        let out = run_hark(dir.path(), &["--config", "bad.toml", "skills", "list"]);
        assert!(!out.status.success(), "{mqtt}");
        assert!(
            text(&out.stderr).contains(key),
            "{mqtt}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn the_embedded_broker_serves_tls_and_a_silent_socket_holds_no_one_up() {
    let dir = TempDir::new("tls-embedded");
    let certs = Certs::make(dir.path(), "good");
    let stranger = Certs::make(dir.path(), "stranger");
    let (plain, tls) = (free_port(), free_port());
    let state = dir.path().join("state");
    std::fs::write(
        dir.path().join("hark.toml"),
        format!(
            "state_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{plain}\"\n\
             tls_listen = \"127.0.0.1:{tls}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [audio]\nbackend = \"null\"\n",
            state.display(),
            certs.cert.display(),
            certs.key.display()
        ),
    )
    .unwrap();
    // `hark send` as a client of the TLS listener, with the hub's state dir
    // (its admin secret) and a CA it trusts, or one it does not.
    let client = |name: &str, ca: &std::path::Path| {
        std::fs::write(
            dir.path().join(name),
            format!(
                "state_dir = \"{}\"\n[mqtt]\nurl = \"mqtts://localhost:{tls}\"\n\
                 ca_file = \"{}\"\n",
                state.display(),
                ca.display()
            ),
        )
        .unwrap();
    };
    client("send.toml", &certs.ca);
    client("wary.toml", &stranger.ca);
    let hub = HubProcess::spawn(dir.path(), &dir.path().join("hark.toml"));
    hark_tests::wait_online(plain, "hark");

    // A socket that opens the TLS port and never says a word.
    let _silent = std::net::TcpStream::connect(("127.0.0.1", tls)).unwrap();
    sends_and_is_refused(dir.path(), "send.toml", "wary.toml");
    hub.terminate();

    // A certificate file that is not one stops the hub at start, naming the key.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let config = std::fs::read_to_string(dir.path().join("hark.toml"))
        .unwrap()
        .replace(
            &certs.cert.display().to_string(),
            &junk.display().to_string(),
        );
    std::fs::write(dir.path().join("junk.toml"), config).unwrap();
    let out = run_hark(dir.path(), &["--config", "junk.toml", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("mqtt.tls_cert"),
        "{}",
        text(&out.stderr)
    );
}
