//! Brokered HTTP (`net.http`, SPEC §11) end to end: signed skills in the
//! trusted tier ask the hub for requests to HTTPS and HTTP servers on
//! loopback (their CA made at test time and trusted through `net.ca_file`),
//! and try every way past their grant: another port, another scheme, their
//! own `Host`, redirects elsewhere and in a loop, a name that resolves to
//! loopback, a body over the cap, a server that never answers.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_tests::http_server::HttpServer;
use hark_tests::skills::{self, install, wat};
use hark_tests::{Certs, Hub, Satellite, Setup, TempDir, audit_records, runtime};
use serde_json::{Value, json};

/// Text for a WAT string literal.
fn wat_str(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A module that hands `request` (JSON) to `http_request` and replies
/// `{"speech": "ok", "data": <the answer>}`, or `{"speech": <code word>}`
/// when the host call answers a code.
fn relay(request: &Value) -> Vec<u8> {
    const PREFIX: &str = r#"{"speech":"ok","data":"#;
    const OUT_CAP: usize = 300_000;
    let request = request.to_string();
    let out = PREFIX.len();
    let mut codes = String::new();
    let mut segments = String::new();
    for (i, (code, word)) in [
        (-1, "not_found"),
        (-2, "denied"),
        (-3, "invalid"),
        (-4, "too_large"),
        (-5, "unsupported"),
        (-6, "limit"),
        (-7, "internal"),
    ]
    .iter()
    .enumerate()
    {
        let text = format!("{{\"speech\":\"{word}\"}}");
        let offset = 320_000 + i * 64;
        segments.push_str(&format!(
            "(data (i32.const {offset}) \"{}\")\n",
            wat_str(&text)
        ));
        let packed = ((offset as u64) << 32) | text.len() as u64;
        codes.push_str(&format!(
            "(if (i32.eq (local.get $n) (i32.const {code})) (then (return (i64.const {packed}))))\n"
        ));
    }
    let module = format!(
        r#"(module
  (import "hark" "http_request" (func $http (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 8)
  (data (i32.const 0) "{prefix}")
  (data (i32.const 310000) "{request}")
  {segments}
  (func (export "hark_alloc") (param i32) (result i32) (i32.const 400000))
  (func (export "hark_handle") (param i32 i32) (result i64)
    (local $n i32)
    (local.set $n (call $http (i32.const 310000) (i32.const {len}) (i32.const {out}) (i32.const {OUT_CAP})))
    {codes}
    (if (i32.gt_u (local.get $n) (i32.const {OUT_CAP})) (then (unreachable)))
    (i32.store8 (i32.add (i32.const {out}) (local.get $n)) (i32.const 125))
    (i64.extend_i32_u (i32.add (local.get $n) (i32.const {close}))))
)"#,
        prefix = wat_str(PREFIX),
        request = wat_str(&request),
        len = request.len(),
        close = out + 1,
    );
    wat(&module)
}

/// Installs and signs a relay skill `name` declaring `grant`.
fn relay_skill(skills_dir: &Path, name: &str, grant: &str, request: Value) {
    let manifest = json!({"trusted": true, "permissions": [format!("net.http:{grant}")]});
    let dir = install(skills_dir, name, manifest, &relay(&request));
    skills::sign(&dir, &skills::test_key(16));
}

/// A hub in `tier` trusting the test key, granting each `(skill, grant)`,
/// and `ca` through `net.ca_file`.
fn hub(state: &Path, tier: &str, skills_dir: &Path, grants: &[(&str, String)], ca: &Path) -> Hub {
    let grants: String = grants
        .iter()
        .map(|(skill, grant)| format!("{skill} = [\"net.http:{grant}\"]\n"))
        .collect();
    hub_granting(state, tier, skills_dir, &grants, ca)
}

/// [`hub`] with `grants` as the TOML lines of `[grants]`.
fn hub_granting(state: &Path, tier: &str, skills_dir: &Path, grants: &str, ca: &Path) -> Hub {
    Hub::start_with(
        state,
        &Setup {
            top: format!("tier = \"{tier}\""),
            tables: format!(
                "[skills]\ndir = \"{}\"\n[trust]\nkeys = [\"{}\"]\n[grants]\n{grants}\n\
                 [net]\nca_file = \"{}\"\n",
                skills_dir.display(),
                skills::public_key(&skills::test_key(16)),
                ca.display()
            ),
            ..Setup::default()
        },
    )
}

/// A hub in `tier` with one relay skill `name`, granted an HTTPS server on
/// loopback and asking it for `path`.
struct OneRelay {
    hub: Hub,
    https: HttpServer,
    /// State, skills and certificates: removed when dropped.
    _dirs: [TempDir; 3],
}

fn one_relay(test: &str, tier: &str, name: &str, path: &str) -> OneRelay {
    let dirs = [
        TempDir::new(test),
        TempDir::new(&format!("{test}-skills")),
        TempDir::new(&format!("{test}-certs")),
    ];
    let certs = Certs::make(dirs[2].path(), "ca");
    let https = HttpServer::tls(&certs);
    let grant = format!("127.0.0.1:{}", https.port);
    let url = format!("https://{grant}{path}");
    relay_skill(dirs[1].path(), name, &grant, json!({"url": url}));
    let grants = [(name, grant)];
    let hub = hub(dirs[0].path(), tier, dirs[1].path(), &grants, &certs.ca);
    OneRelay {
        hub,
        https,
        _dirs: dirs,
    }
}

/// The audit records about `skill` of `kind`.
fn audited(hub: &Hub, kind: &str, skill: &str) -> Vec<Value> {
    audit_records(&hub.audit_path())
        .into_iter()
        .filter(|r| r["kind"] == kind && r["skill"] == skill)
        .collect()
}

#[test]
fn a_granted_origin_answers_and_every_way_past_the_grant_is_refused() {
    let (state, skills_dir, tmp) = (
        TempDir::new("http-grant"),
        TempDir::new("http-grant-skills"),
        TempDir::new("http-grant-certs"),
    );
    let certs = Certs::make(tmp.path(), "ca");
    let (https, plain) = (HttpServer::tls(&certs), HttpServer::plain());
    // Its certificate is signed by a CA the hub does not trust.
    let stranger = HttpServer::tls(&Certs::make(tmp.path(), "other-ca"));
    let (s, p) = (https.port, plain.port);
    let tls_grant = format!("127.0.0.1:{s}");
    let plain_grant = format!("http://127.0.0.1:{p}");
    let mut grants: Vec<(&str, String)> = Vec::new();
    let mut add = |name: &'static str, grant: &str, request: Value| {
        relay_skill(skills_dir.path(), name, grant, request);
        grants.push((name, grant.to_string()));
    };
    let echo = format!("https://127.0.0.1:{s}/echo");
    add(
        "get_echo",
        &tls_grant,
        json!({"url": echo, "headers": {"Host": "evil.example", "X-Skill": "1"}}),
    );
    add(
        "post_plain",
        &plain_grant,
        json!({"method": "POST", "url": format!("http://127.0.0.1:{p}/echo"), "body": "hi"}),
    );
    add(
        "binary",
        &tls_grant,
        json!({"url": format!("https://127.0.0.1:{s}/binary")}),
    );
    add(
        "hop",
        &tls_grant,
        json!({"url": format!("https://127.0.0.1:{s}/to/echo")}),
    );
    add(
        "other_port",
        &tls_grant,
        json!({"url": format!("https://127.0.0.1:{p}/echo")}),
    );
    add(
        "downgrade",
        &tls_grant,
        json!({"url": format!("http://127.0.0.1:{s}/echo")}),
    );
    add(
        "elsewhere",
        &tls_grant,
        json!({"url": "https://example.org/"}),
    );
    add(
        "away",
        &tls_grant,
        json!({"url": format!("https://127.0.0.1:{s}/away")}),
    );
    add(
        "spin",
        &tls_grant,
        json!({"url": format!("https://127.0.0.1:{s}/loop")}),
    );
    add(
        "rebind",
        &format!("localhost:{s}"),
        json!({"url": format!("https://localhost:{s}/echo")}),
    );
    add(
        "big",
        &tls_grant,
        json!({"url": format!("https://127.0.0.1:{s}/big")}),
    );
    add(
        "bad_request",
        &tls_grant,
        json!({"url": echo, "method": "PATCH"}),
    );
    let stranger_grant = format!("127.0.0.1:{}", stranger.port);
    let stranger_url = format!("https://127.0.0.1:{}/echo", stranger.port);
    add("untrusted", &stranger_grant, json!({"url": stranger_url}));
    let hub = hub(
        state.path(),
        "trusted",
        skills_dir.path(),
        &grants,
        &certs.ca,
    );

    let replies = runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let mut replies = std::collections::BTreeMap::new();
        for (name, _) in &grants {
            replies.insert(*name, sat.request(name, json!({})).await);
        }
        replies
    });

    // Granted: status, headers, body; the hub's Host, not the skill's.
    let got = &replies["get_echo"];
    assert_eq!(
        (&got["status"], &got["speech"]),
        (&json!("ok"), &json!("ok")),
        "{got}"
    );
    assert_eq!(got["data"]["status"], 200, "{got}");
    assert!(
        got["data"]["headers"]["content-length"].is_string(),
        "{got}"
    );
    let echoed: Value = serde_json::from_str(got["data"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["host"], format!("127.0.0.1:{s}"), "{echoed}");
    assert_eq!(echoed["headers"]["x-skill"], "1", "{echoed}");
    assert!(
        !https.hosts().iter().any(|h| h.contains("evil")),
        "{:?}",
        https.hosts()
    );

    let posted: Value =
        serde_json::from_str(replies["post_plain"]["data"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&posted["method"], &posted["body"]),
        (&json!("POST"), &json!("hi"))
    );
    assert_eq!(
        replies["binary"]["data"]["body_base64"], "/wAB",
        "{}",
        replies["binary"]
    );
    let hop = &replies["hop"]["data"];
    assert_eq!(hop["status"], 200, "{hop}");
    assert!(
        hop["body"].as_str().unwrap().contains("\"path\":\"/echo\""),
        "{hop}"
    );

    // Refused, each with its rule in the audit log.
    for (skill, rule) in [
        ("other_port", "net.http.host"),
        ("downgrade", "net.http.host"),
        ("elsewhere", "net.http.host"),
        ("away", "net.http.redirect"),
        ("spin", "net.http.redirects"),
        ("rebind", "net.http.private_address"),
    ] {
        assert_eq!(
            replies[skill]["speech"], "denied",
            "{skill}: {}",
            replies[skill]
        );
        let refusals = audited(&hub, "refusal", skill);
        assert!(
            refusals.iter().any(|r| r["rule"] == rule),
            "{skill}: no refusal by {rule} in {refusals:?}"
        );
    }
    assert_eq!(replies["big"]["speech"], "too_large", "{}", replies["big"]);
    assert_eq!(
        replies["bad_request"]["speech"], "invalid",
        "{}",
        replies["bad_request"]
    );
    let untrusted = &replies["untrusted"];
    assert_eq!(untrusted["speech"], "internal", "{untrusted}");
    assert_eq!(
        stranger.requests(),
        0,
        "a request went out over an untrusted TLS link"
    );
    let failed = audited(&hub, "http", "untrusted");
    let message = failed[0]["message"].as_str().unwrap();
    assert!(
        message.contains("failed") && message.contains("certificate"),
        "{message}"
    );

    // What reached the servers: get_echo, binary, hop (2), away (1), spin (1
    // + 3 redirects), big; nothing from other_port, downgrade, rebind.
    assert_eq!(
        https.requests(),
        1 + 1 + 2 + 1 + 4 + 1,
        "{:?}",
        https.hosts()
    );
    assert_eq!(plain.requests(), 1);

    // Every request made is audited: origin, method, status, bytes; no path
    // and no body outside the convenient tier.
    let made = audited(&hub, "http", "get_echo");
    assert_eq!(made.len(), 1, "{made:?}");
    let message = made[0]["message"].as_str().unwrap();
    assert_eq!(made[0]["status"], "200");
    assert!(
        message.starts_with(&format!("GET https://127.0.0.1:{s} -> 200")),
        "{message}"
    );
    assert!(
        !message.contains("/echo") && made[0].get("result").is_none(),
        "{made:?}"
    );
    hub.stop().unwrap();
}

#[test]
fn a_silent_server_is_cut_at_the_budget_while_another_satellite_is_served() {
    let OneRelay { hub, _dirs, .. } = one_relay("http-silent", "trusted", "stall", "/silent");
    runtime().block_on(async {
        let mut stalled = Satellite::connect(hub.port, &hub.prefix, "attic").await;
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let sent = Instant::now();
        stalled
            .send_raw(json!({"id": "stall-1", "intent": "stall"}).to_string())
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // While the request waits, a built-in for another satellite answers.
        let other = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(other["status"], "ok", "{other}");
        assert!(
            sent.elapsed() < Duration::from_millis(1400),
            "the built-in waited"
        );
        let reply = stalled.reply_for(Some("stall-1")).await;
        assert_eq!(reply["status"], "timeout", "{reply}");
        let elapsed = reply["elapsed_ms"].as_f64().unwrap();
        assert!(elapsed >= 1500.0, "cut before the budget: {reply}");
    });
    let made = audited(&hub, "http", "stall");
    assert_eq!(
        made.first().map(|r| r["status"].clone()),
        Some(json!("timeout")),
        "{made:?}"
    );
    hub.stop().unwrap();
}

#[test]
fn the_paranoid_tier_never_makes_a_request() {
    let OneRelay { hub, https, _dirs } = one_relay("http-paranoid", "paranoid", "fetch", "/echo");
    let reply = runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        sat.request("fetch", json!({})).await
    });
    assert_ne!(reply["status"], "ok", "{reply}");
    assert_eq!(https.requests(), 0);
    hub.stop().unwrap();
}

#[test]
fn the_sdks_weather_example_asks_a_granted_host_and_speaks_the_answer() {
    let (state, skills_dir, tmp) = (
        TempDir::new("http-weather"),
        TempDir::new("http-weather-skills"),
        TempDir::new("http-weather-certs"),
    );
    let certs = Certs::make(tmp.path(), "ca");
    let https = HttpServer::tls(&certs);
    let grant = format!("127.0.0.1:{}", https.port);
    // The example as shipped, its host changed to the local server's.
    let mut manifest = skills::example_manifest("weather");
    manifest["permissions"] = json!([
        format!("net.http:{grant}"),
        "secrets.read:weather_url",
        "log"
    ]);
    let dir = install(
        skills_dir.path(),
        "weather",
        manifest,
        &skills::example_wasm("weather"),
    );
    skills::sign(&dir, &skills::test_key(16));
    std::fs::write(
        state.path().join("secrets.toml"),
        format!("weather_url = \"https://{grant}/weather?latitude=52.52&longitude=13.41\"\n"),
    )
    .unwrap();
    let grants = format!("weather = [\"net.http:{grant}\", \"secrets.read:weather_url\"]\n");
    let hub = hub_granting(
        state.path(),
        "trusted",
        skills_dir.path(),
        &grants,
        &certs.ca,
    );
    let reply = runtime().block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        sat.request("weather", json!({})).await
    });
    assert_eq!(reply["status"], "ok", "{reply}");
    let speech = reply["speech"].as_str().unwrap();
    assert!(
        speech.contains("3.4 °C") && speech.contains("12 km/h"),
        "{speech}"
    );
    assert_eq!(https.requests(), 1);
    assert_eq!(audited(&hub, "http", "weather").len(), 1);
    hub.stop().unwrap();
}
