//! The native MQTT protocol end to end, against the embedded broker and a
//! real mosquitto: every reply status the built-ins can give, and every kind
//! of bad input answered clearly while the hub goes on serving others.

use std::time::Duration;

use hark_tests::{BrokerKind, Hub, PATIENCE, Satellite, Setup, TempDir, audit_records};
use serde_json::{Value, json};

/// Runs `scenario` against a fresh hub on each broker.
fn on_both_brokers(name: &str, scenario: impl AsyncFn(&Hub)) {
    on_both_brokers_with(name, Setup::default(), scenario)
}

fn on_both_brokers_with(name: &str, setup: Setup, scenario: impl AsyncFn(&Hub)) {
    for broker in [BrokerKind::Embedded, BrokerKind::Mosquitto] {
        let dir = TempDir::new(name);
        let hub = Hub::start_with(
            dir.path(),
            &Setup {
                broker,
                ..setup.clone()
            },
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(scenario(&hub));
        drop(rt);
        hub.stop().unwrap();
    }
}

/// After a bad request, another satellite is still served at once.
async fn still_serving(hub: &Hub) {
    let mut other = Satellite::connect(hub.port, &hub.prefix, "bystander").await;
    let reply = other.request("system.cancel", json!({})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
}

fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn a_timer_request_is_answered_with_speech_and_its_audit_seq() {
    on_both_brokers("ok", async |hub| {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = kitchen
            .request("timer.set", json!({"duration": "5m", "label": "pasta"}))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["intent"], "timer.set");
        assert_eq!(reply["speech"], "Pasta timer set for 5 minutes.");
        assert_eq!(reply["data"]["label"], "pasta");
        assert!(reply["elapsed_ms"].as_f64().unwrap() >= 0.0);
        let seq = reply["audit"]
            .as_u64()
            .expect("the reply carries its audit seq");
        let started = kitchen.event("timer_started", PATIENCE).await;
        assert_eq!(started["remaining_s"], 300);

        let record = audit_records(&hub.audit_path())
            .into_iter()
            .find(|r| r["seq"] == seq)
            .expect("the audit record the reply names exists");
        assert_eq!(record["kind"], "request");
        assert_eq!(record["satellite"], "kitchen");
        assert_eq!(record["status"], "ok");
        assert_eq!(record["decision"], "allow");
        assert_eq!(
            record["args"],
            json!({"duration": "<redacted>", "label": "<redacted>"}),
            "paranoid audits argument names, not values"
        );
    });
}

#[test]
fn a_payload_that_is_not_json_gets_an_id_less_invalid_reply() {
    on_both_brokers("not-json", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        sat.send_raw("set a timer please").await;
        let reply = sat.reply_for(None).await;
        assert_eq!(reply["status"], "invalid");
        assert_eq!(reply["id"], Value::Null);
        assert_eq!(error_code(&reply), "not_json");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not JSON"),
            "{reply}"
        );
        assert!(reply["audit"].is_u64(), "refusals are audited too");
        still_serving(hub).await;
    });
}

#[test]
fn a_request_without_an_id_gets_an_id_less_invalid_reply() {
    on_both_brokers("no-id", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        sat.send_raw(json!({"intent": "timer.set", "args": {"duration": "5m"}}).to_string())
            .await;
        let reply = sat.reply_for(None).await;
        assert_eq!(
            (reply["status"].as_str(), error_code(&reply)),
            (Some("invalid"), "missing_id")
        );
        assert_eq!(reply["error"]["details"][0]["pointer"], "/id");

        sat.send_raw(json!({"id": 17, "intent": "timer.set"}).to_string())
            .await;
        let reply = sat.reply_for(None).await;
        assert_eq!(error_code(&reply), "bad_id");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("must be a string")
        );

        sat.send_raw(json!({"id": "x".repeat(65), "intent": "timer.set"}).to_string())
            .await;
        let reply = sat.reply_for(None).await;
        assert_eq!(error_code(&reply), "bad_id");
        still_serving(hub).await;
    });
}

#[test]
fn a_request_without_an_intent_is_invalid_with_its_id() {
    on_both_brokers("no-intent", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        sat.send_raw(json!({"id": "r-1", "args": {}}).to_string())
            .await;
        let reply = sat.reply_for(Some("r-1")).await;
        assert_eq!(
            (reply["status"].as_str(), error_code(&reply)),
            (Some("invalid"), "missing_intent")
        );
        still_serving(hub).await;
    });
}

#[test]
fn a_one_mebibyte_payload_is_refused_without_reading_it() {
    on_both_brokers("huge", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let padding = "x".repeat(1024 * 1024);
        sat.send_raw(json!({"id": "big", "intent": "timer.set", "text": padding}).to_string())
            .await;
        let reply = sat.reply_for(None).await;
        assert_eq!(reply["status"], "invalid");
        assert_eq!(error_code(&reply), "payload_too_large");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("65536") && message.contains("mqtt.max_payload"),
            "{message}"
        );
        still_serving(hub).await;
    });
}

#[test]
fn a_payload_that_is_not_utf8_says_where() {
    on_both_brokers("utf8", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        sat.send_raw(b"{\"id\": \"r-1\", \"intent\": \"timer.set\xff\"}".to_vec())
            .await;
        let reply = sat.reply_for(None).await;
        assert_eq!(error_code(&reply), "not_utf8");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("offset 34"),
            "{reply}"
        );
        still_serving(hub).await;
    });
}

#[test]
fn args_of_the_wrong_type_list_every_violation_with_its_pointer() {
    on_both_brokers("wrong-type", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat
            .request("timer.set", json!({"duration": 300, "label": ["pasta"]}))
            .await;
        assert_eq!(
            (reply["status"].as_str(), error_code(&reply)),
            (Some("invalid"), "schema")
        );
        let mut details: Vec<(String, String)> = reply["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["pointer"].as_str().unwrap().into(),
                    d["message"].as_str().unwrap().into(),
                )
            })
            .collect();
        details.sort();
        assert_eq!(
            details,
            [
                (
                    "/args/duration".to_string(),
                    "must be a string, not an integer".to_string()
                ),
                (
                    "/args/label".to_string(),
                    "must be a string, not an array".to_string()
                ),
            ]
        );

        let reply = sat.request("timer.set", json!({})).await;
        assert_eq!(reply["error"]["details"][0]["pointer"], "/args");
        assert!(
            reply["error"]["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains("duration")
        );

        sat.send_raw(json!({"id": "r-x", "intent": "timer.set", "args": "5m"}).to_string())
            .await;
        let reply = sat.reply_for(Some("r-x")).await;
        assert_eq!(error_code(&reply), "bad_args");
        still_serving(hub).await;
    });
}

#[test]
fn extra_args_are_named_at_their_own_pointer() {
    on_both_brokers("extra", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat
            .request("timer.set", json!({"duration": "5m", "colour": "red"}))
            .await;
        assert_eq!(reply["status"], "invalid");
        assert_eq!(
            reply["error"]["details"],
            json!([{
                "pointer": "/args/colour",
                "message": "unexpected argument; this skill takes duration, label"
            }])
        );
        still_serving(hub).await;
    });
}

#[test]
fn a_duration_nobody_can_understand_is_invalid_at_its_pointer() {
    on_both_brokers("bad-duration", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat
            .request("timer.set", json!({"duration": "5 blorps"}))
            .await;
        assert_eq!(reply["status"], "invalid");
        assert_eq!(reply["error"]["details"][0]["pointer"], "/args/duration");
        assert!(
            reply["speech"].as_str().unwrap().contains("blorps"),
            "{reply}"
        );
    });
}

#[test]
fn an_unknown_intent_is_answered_with_a_suggestion() {
    on_both_brokers("unknown", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat.request("timer.sett", json!({"duration": "5m"})).await;
        assert_eq!(reply["status"], "unknown_intent");
        assert_eq!(
            reply["error"]["message"],
            "no skill serves the intent \"timer.sett\"; did you mean timer.set?"
        );
        let reply = sat.request("weather.today", json!({})).await;
        assert_eq!(reply["status"], "unknown_intent");
        still_serving(hub).await;
    });
}

#[test]
fn a_bad_satellite_id_in_the_topic_is_answered_on_its_reply_topic() {
    on_both_brokers("bad-sat", async |hub| {
        let mut sat = Satellite::connect_as(hub.port, &hub.prefix, "watcher").await;
        sat.subscribe(&format!("{}/reply/living room", hub.prefix))
            .await;
        let request = json!({"id": "r-1", "intent": "timer.set", "args": {"duration": "5m"}});
        sat.publish(
            &format!("{}/intent/living room", hub.prefix),
            request.to_string(),
        )
        .await;
        let (topic, reply) = sat.next_message(PATIENCE).await.expect("a reply");
        assert_eq!(topic, format!("{}/reply/living room", hub.prefix));
        assert_eq!(reply["id"], "r-1");
        assert_eq!(reply["status"], "invalid");
        assert_eq!(error_code(&reply), "bad_satellite");
        assert!(
            reply["error"]["message"].as_str().unwrap().contains("' '"),
            "{reply}"
        );

        let long = "k".repeat(65);
        sat.subscribe(&format!("{}/reply/{long}", hub.prefix)).await;
        sat.publish(
            &format!("{}/intent/{long}", hub.prefix),
            request.to_string(),
        )
        .await;
        let (_, reply) = sat.next_message(PATIENCE).await.expect("a reply");
        assert_eq!(error_code(&reply), "bad_satellite");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("65 characters")
        );

        let records = audit_records(&hub.audit_path());
        assert!(
            records
                .iter()
                .any(|r| r["satellite"] == "living room" && r["code"] == "bad_satellite"),
            "the refusal is audited"
        );
        still_serving(hub).await;
    });
}

#[test]
fn a_sound_file_that_is_not_a_wav_fails_with_status_error() {
    let media = TempDir::new("media");
    std::fs::write(
        media.path().join("broken.wav"),
        b"RIFF\x10\0\0\0WAVEjunkjunk",
    )
    .unwrap();
    let setup = Setup {
        media_dir: Some(media.path().to_path_buf()),
        ..Setup::default()
    };
    on_both_brokers_with("sound-error", setup, async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = sat
            .request("audio.play", json!({"sound": "broken.wav"}))
            .await;
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(error_code(&reply), "sound_unplayable");

        let reply = sat
            .request("audio.play", json!({"sound": "../etc/passwd.wav"}))
            .await;
        assert_eq!(reply["status"], "invalid", "{reply}");
        assert_eq!(reply["error"]["details"][0]["pointer"], "/args/sound");

        let reply = sat.request("audio.play", json!({"sound": "chime"})).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        let started = sat.event("playback_started", PATIENCE).await;
        assert_eq!(started["sound"], "chime");
        let stopped = sat.event("playback_stopped", PATIENCE).await;
        assert_eq!(stopped["reason"], "completed");
    });
}

#[test]
fn many_satellites_are_served_concurrently() {
    on_both_brokers("many", async |hub| {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (port, prefix) = (hub.port, hub.prefix.clone());
            tasks.push(tokio::spawn(async move {
                let mut sat = Satellite::connect(port, &prefix, &format!("sat-{i}")).await;
                for n in 0..5 {
                    let reply = sat
                        .request("timer.set", json!({"duration": format!("{}m", n + 1)}))
                        .await;
                    assert_eq!(reply["status"], "ok", "{reply}");
                }
                let reply = sat
                    .request("system.cancel", json!({"target": "timers"}))
                    .await;
                assert_eq!(reply["speech"], "Cancelled 5 timers.", "{reply}");
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .unwrap()
                .unwrap();
        }
    });
}

#[test]
fn paranoid_audit_records_never_quote_argument_values() {
    let dir = TempDir::new("redaction");
    let hub = Hub::start(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let secret = "secret-garden-party";
        sat.request("timer.set", json!({"duration": secret})).await;
        sat.request("timer.set", json!({"duration": 5, "label": secret}))
            .await;
        sat.request("audio.play", json!({"sound": format!("{secret}.wav")}))
            .await;
        sat.request("timer.set", json!({"duration": "5m", "label": secret}))
            .await;
    });
    let log = std::fs::read_to_string(hub.audit_path()).unwrap();
    assert!(!log.contains("secret-garden"), "{log}");
    let records = audit_records(&hub.audit_path());
    assert!(
        records
            .iter()
            .any(|r| r["message"] == "invalid at /args/duration"),
        "the record still says where the problem was"
    );
    hub.stop().unwrap();
}

#[test]
fn a_burst_of_requests_is_served_without_busy() {
    on_both_brokers("burst", async |hub| {
        let mut sat = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let n = 400;
        for i in 0..n {
            let request = json!({"id": format!("b-{i}"), "intent": "system.cancel", "args": {}});
            sat.send_raw(request.to_string()).await;
        }
        for i in 0..n {
            let reply = sat.reply_for(Some(&format!("b-{i}"))).await;
            assert_eq!(
                reply["status"], "ok",
                "a burst within the hub's capacity is served: {reply}"
            );
        }
    });
}
