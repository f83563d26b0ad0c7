//! Rhasspy satellites over the Hermes protocol, end to end: the real
//! rhasspy-hermes library (PyPI, in `target/hermes-venv`; make it with
//! `scripts/hermes-venv.sh`) builds what Rhasspy sends and reads what the hub
//! answers, against a real hub and a real broker. Every kind of bad input is
//! answered where its session can be recovered, audited, and leaves the other
//! sites served.

use std::time::Duration;

use hark_tests::hermes::{Peer, Rhasspy, field};
use hark_tests::{BrokerKind, Hub, PATIENCE, Satellite, Setup, TempDir, audit_records};
use serde_json::{Value, json};

const HERMES: &str = "[hermes]\nenabled = true\n[hermes.intents]\n\
    SetTimer = \"timer.set\"\nStop = \"system.cancel\"\nCancelTimer = \"system.cancel\"\n\
    PlaySound = \"audio.play\"\nPauseTimer = \"timer.pause\"\n\
    TimerRemaining = \"timer.status\"\nCancelAllTimers = \"timer.cancel\"\n";

/// Runs `scenario` against a fresh Hermes-enabled hub on `broker`, with
/// rhasspy-hermes at hand.
fn with_hub(name: &str, broker: BrokerKind, scenario: impl AsyncFn(&Hub, &mut Rhasspy, &mut Peer)) {
    with_hub_config(name, broker, HERMES, scenario);
}

fn with_hub_config(
    name: &str,
    broker: BrokerKind,
    tables: &str,
    scenario: impl AsyncFn(&Hub, &mut Rhasspy, &mut Peer),
) {
    let mut peer = Peer::start();
    let dir = TempDir::new(name);
    let hub = Hub::start_with(
        dir.path(),
        &Setup {
            broker,
            tables: tables.to_string(),
            ..Setup::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rhasspy = Rhasspy::connect(hub.port).await;
        scenario(&hub, &mut rhasspy, &mut peer).await;
    });
    drop(rt);
    hub.stop().unwrap();
}

fn on_both_brokers(name: &str, scenario: impl AsyncFn(&Hub, &mut Rhasspy, &mut Peer)) {
    for broker in [BrokerKind::Embedded, BrokerKind::Mosquitto] {
        with_hub(name, broker, &scenario);
    }
}

/// A slot as Rhasspy fills it.
fn slot(name: &str, value: Value) -> Value {
    json!({"entity": name, "slotName": name, "value": {"kind": "Unknown", "value": value}})
}

/// Publishes the NluIntent `spec` (built by rhasspy-hermes) and returns the
/// hub's endSession for its session, as rhasspy-hermes reads it.
async fn ask(rhasspy: &mut Rhasspy, peer: &mut Peer, spec: Value) -> Value {
    let session = spec["sessionId"].as_str().expect("a session").to_string();
    let (topic, payload) = peer.nlu_intent(spec);
    rhasspy.publish(&topic, payload).await;
    let end = rhasspy.end_session(&session).await;
    peer.read_end_session(&end)
}

/// The audit record of request `id`, waiting for it (a message with no
/// answer gives nothing else to wait on).
async fn audited(hub: &Hub, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(record) = audit_records(&hub.audit_path()).into_iter().find(&wanted) {
            return record;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no such audit record within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audit_of(hub: &Hub, request_id: &str) -> Value {
    audited(hub, |r| r["request_id"] == request_id).await
}

/// After bad input, another site is still answered at once.
async fn still_serving(rhasspy: &mut Rhasspy, peer: &mut Peer) {
    let end = ask(
        rhasspy,
        peer,
        json!({"intent": "Stop", "input": "stop", "siteId": "bystander", "sessionId": "s-bystander"}),
    )
    .await;
    assert_eq!(end["text"], "There's nothing to stop.", "{end}");
}

#[test]
fn a_timer_set_through_hermes_is_answered_with_end_session_speech() {
    on_both_brokers("hermes-timer", async |hub, rhasspy, peer| {
        let end = ask(
            rhasspy,
            peer,
            json!({"intent": "SetTimer", "input": "set a pasta timer for five minutes",
                   "slots": [slot("duration", json!("five minutes")), slot("label", json!("pasta"))],
                   "siteId": "kitchen", "sessionId": "s-timer"}),
        )
        .await;
        assert_eq!(
            end,
            json!({"sessionId": "s-timer", "text": "Pasta timer set for 5 minutes.", "customData": null})
        );
        let record = audit_of(hub, "s-timer").await;
        assert_eq!(record["kind"], "request");
        assert_eq!(record["satellite"], "kitchen");
        assert_eq!(record["intent"], "timer.set");
        assert_eq!(record["status"], "ok");
        assert_eq!(record["decision"], "allow");
        assert_eq!(record["message"], "via hermes");
        assert_eq!(
            record["args"],
            json!({"duration": "<redacted>", "label": "<redacted>"})
        );
    });
}

#[test]
fn numeric_unit_slots_set_a_timer_the_way_rhasspy_sentences_fill_them() {
    with_hub(
        "hermes-units",
        BrokerKind::Embedded,
        async |_, rhasspy, peer| {
            let numbers = |name: &str, n: i64| json!({"entity": name, "slotName": name, "value": {"kind": "Number", "value": n}});
            let end = ask(
                rhasspy,
                peer,
                json!({"intent": "SetTimer", "input": "set a timer for one hour and 30 minutes",
                   "slots": [numbers("hours", 1), numbers("minutes", 30)],
                   "siteId": "kitchen", "sessionId": "s-units"}),
            )
            .await;
            assert_eq!(end["text"], "Timer set for 1 hour and 30 minutes.", "{end}");
        },
    );
}

#[test]
fn system_cancel_through_hermes_stops_and_cancels_for_its_site() {
    with_hub(
        "hermes-cancel",
        BrokerKind::Embedded,
        async |_, rhasspy, peer| {
            ask(
                rhasspy,
                peer,
                json!({"intent": "SetTimer", "input": "tea timer for three minutes",
                   "slots": [slot("duration", json!("3 minutes")), slot("label", json!("tea"))],
                   "siteId": "kitchen", "sessionId": "s-1"}),
            )
            .await;
            let stop = ask(
                rhasspy,
                peer,
                json!({"intent": "Stop", "input": "stop", "siteId": "kitchen", "sessionId": "s-2"}),
            )
            .await;
            assert_eq!(
                stop["text"],
                "There's nothing playing to stop. You have 1 timer running; say \"cancel my timers\" to stop it."
            );
            let other_site = ask(
            rhasspy,
            peer,
            json!({"intent": "CancelTimer", "input": "cancel my timers",
                   "slots": [slot("target", json!("timers"))], "siteId": "hall", "sessionId": "s-3"}),
        )
        .await;
            assert_eq!(
                other_site["text"], "You have no timers to cancel.",
                "timers belong to their site"
            );
            let cancel = ask(
            rhasspy,
            peer,
            json!({"intent": "CancelTimer", "input": "cancel my timers",
                   "slots": [slot("target", json!("timers"))], "siteId": "kitchen", "sessionId": "s-4"}),
        )
        .await;
            assert_eq!(cancel["text"], "Cancelled your tea timer.");
        },
    );
}

#[test]
fn rhasspys_timer_intents_pause_say_what_is_left_ask_which_and_cancel_all() {
    with_hub(
        "hermes-timer-vocab",
        BrokerKind::Embedded,
        async |_, rhasspy, peer| {
            for (session, minutes, label, said) in [
                ("s-1", 10, "pasta", "Pasta timer set for 10 minutes."),
                ("s-2", 3, "tea", "Tea timer set for 3 minutes."),
            ] {
                let end = ask(
                    rhasspy,
                    peer,
                    json!({"intent": "SetTimer", "input": "set a timer",
                       "slots": [slot("minutes", json!(minutes)), slot("label", json!(label))],
                       "siteId": "kitchen", "sessionId": session}),
                )
                .await;
                assert_eq!(end["text"], said);
            }
            let which = ask(
                rhasspy,
                peer,
                json!({"intent": "PauseTimer", "input": "pause the timer",
                   "siteId": "kitchen", "sessionId": "s-3"}),
            )
            .await;
            assert_eq!(which["text"], "Which timer: tea or pasta?");
            let paused = ask(
                rhasspy,
                peer,
                json!({"intent": "PauseTimer", "input": "pause the tea timer",
                   "slots": [slot("label", json!("tea"))], "siteId": "kitchen", "sessionId": "s-4"}),
            )
            .await;
            let text = paused["text"].as_str().unwrap();
            assert!(text.starts_with("Paused the tea timer with "), "{text}");
            let left = ask(
                rhasspy,
                peer,
                json!({"intent": "TimerRemaining", "input": "how long is left on the tea timer",
                   "slots": [slot("label", json!("tea"))], "siteId": "kitchen", "sessionId": "s-5"}),
            )
            .await;
            let text = left["text"].as_str().unwrap();
            assert!(text.starts_with("The tea timer is paused with "), "{text}");
            let all = ask(
                rhasspy,
                peer,
                json!({"intent": "CancelAllTimers", "input": "cancel all timers",
                   "siteId": "kitchen", "sessionId": "s-6"}),
            )
            .await;
            assert_eq!(all["text"], "Cancelled 2 timers.");
        },
    );
}

#[test]
fn an_unknown_intent_ends_the_session_saying_so() {
    with_hub(
        "hermes-unknown",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let end = ask(
                rhasspy,
                peer,
                json!({"intent": "GetWeather", "input": "what's the weather", "siteId": "kitchen",
                   "sessionId": "s-weather"}),
            )
            .await;
            assert_eq!(end["text"], "Sorry, I can't handle get weather yet.");
            let record = audit_of(hub, "s-weather").await;
            assert_eq!(record["status"], "unknown_intent");
            assert_eq!(record["intent"], "GetWeather");
        },
    );
}

#[test]
fn a_schema_violation_is_spoken_and_audited() {
    with_hub(
        "hermes-schema",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            // A number where timer.set wants words: numbers stay numbers, and
            // the schema says what is wrong.
            let end = ask(
                rhasspy,
                peer,
                json!({"intent": "SetTimer", "input": "timer for 5",
                   "slots": [{"entity": "duration", "value": {"kind": "Number", "value": 5}}],
                   "siteId": "kitchen", "sessionId": "s-schema"}),
            )
            .await;
            assert_eq!(
                end["text"],
                "Sorry, the duration has the wrong type: it must be a string, not an integer."
            );
            let record = audit_of(hub, "s-schema").await;
            assert_eq!(
                (&record["status"], &record["code"]),
                (&json!("invalid"), &json!("schema"))
            );
            assert_eq!(record["message"], "invalid at /args/duration");

            let missing = ask(
                rhasspy,
                peer,
                json!({"intent": "SetTimer", "input": "set a timer", "siteId": "kitchen",
                   "sessionId": "s-missing"}),
            )
            .await;
            assert_eq!(missing["text"], "Sorry, I need the duration for that.");

            let nonsense = ask(
                rhasspy,
                peer,
                json!({"intent": "SetTimer", "input": "timer for 5 blorps",
                   "slots": [slot("duration", json!("5 blorps"))], "siteId": "kitchen",
                   "sessionId": "s-blorps"}),
            )
            .await;
            assert!(
                nonsense["text"]
                    .as_str()
                    .unwrap()
                    .contains("unknown unit \"blorps\""),
                "the skill's own explanation is said: {nonsense}"
            );
        },
    );
}

#[test]
fn an_intent_without_a_session_is_answered_with_tts_say_on_its_site() {
    with_hub(
        "hermes-no-session",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let (topic, payload) = peer.nlu_intent(json!({
            "intent": "SetTimer", "input": "egg timer for 4 minutes",
            "slots": [slot("duration", json!("4 minutes")), slot("label", json!("egg"))],
            "siteId": "porch"}));
            rhasspy.publish(&topic, payload).await;
            let say = peer.read_tts_say(&rhasspy.tts_say("porch", PATIENCE).await);
            assert_eq!(say["text"], "Egg timer set for 4 minutes.");
            assert_eq!(say["siteId"], "porch");
            assert_eq!(say["sessionId"], Value::Null);
            let id = say["id"]
                .as_str()
                .expect("a request id to match sayFinished");
            let record = audit_of(hub, id).await;
            assert_eq!(record["satellite"], "porch");
            assert_eq!(record["status"], "ok");
        },
    );
}

#[test]
fn a_timer_set_through_hermes_is_announced_on_its_site_when_done() {
    with_hub(
        "hermes-ring",
        BrokerKind::Mosquitto,
        async |hub, rhasspy, peer| {
            let mut native_kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
            let end = ask(
                rhasspy,
                peer,
                json!({"intent": "SetTimer", "input": "tea timer for two seconds",
                   "slots": [slot("duration", json!("2 seconds")), slot("label", json!("tea"))],
                   "siteId": "kitchen", "sessionId": "s-ring"}),
            )
            .await;
            assert_eq!(end["text"], "Tea timer set for 2 seconds.");
            let say = peer.read_tts_say(&rhasspy.tts_say("kitchen", PATIENCE).await);
            assert_eq!(say["text"], "Your tea timer is done.");
            assert_eq!(say["sessionId"], Value::Null);
            assert!(say["id"].as_str().unwrap().starts_with("t-"), "{say}");
            assert!(
                native_kitchen.drain().is_empty(),
                "a Hermes timer's events do not go to the native topics"
            );
        },
    );
}

#[test]
fn native_and_hermes_satellites_are_served_side_by_side() {
    on_both_brokers("hermes-side-by-side", async |hub, rhasspy, peer| {
        let mut hall = Satellite::connect(hub.port, &hub.prefix, "hall").await;
        let mut native_kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        // Interleaved, all in flight at once.
        for n in 0..10 {
            hall.send_raw(
                json!({"id": format!("n-{n}"), "intent": "system.cancel", "args": {}}).to_string(),
            )
            .await;
            let (topic, payload) = peer.nlu_intent(json!({
                "intent": "Stop", "input": "stop", "siteId": "kitchen",
                "sessionId": format!("h-{n}"), "customData": format!("c-{n}")}));
            rhasspy.publish(&topic, payload).await;
        }
        for n in 0..10 {
            let reply = hall.reply_for(Some(&format!("n-{n}"))).await;
            assert_eq!(reply["status"], "ok", "{reply}");
            let end = peer.read_end_session(&rhasspy.end_session(&format!("h-{n}")).await);
            assert_eq!(end["customData"], format!("c-{n}"));
            assert_eq!(end["text"], "There's nothing to stop.");
        }
        // Timers on both sides ring back on their own protocol only.
        hall.request("timer.set", json!({"duration": "1s", "label": "soup"}))
            .await;
        ask(
            rhasspy,
            peer,
            json!({"intent": "SetTimer", "input": "eggs for one second",
                   "slots": [slot("duration", json!("1 second")), slot("label", json!("eggs"))],
                   "siteId": "kitchen", "sessionId": "h-timer"}),
        )
        .await;
        let finished = hall.event("timer_finished", PATIENCE).await;
        assert_eq!(finished["speech"], "Your soup timer is done.");
        let say = peer.read_tts_say(&rhasspy.tts_say("kitchen", PATIENCE).await);
        assert_eq!(say["text"], "Your eggs timer is done.");
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (topic, payload) in rhasspy.drain() {
            assert_ne!(
                field(&payload, "siteId").as_deref(),
                Some("hall"),
                "nothing for the native satellite on {topic}"
            );
        }
        assert!(
            native_kitchen.drain().is_empty(),
            "nothing for the Hermes site on the native topics"
        );
    });
}

#[test]
fn broken_json_is_audited_and_disturbs_no_other_site() {
    with_hub(
        "hermes-not-json",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            rhasspy
                .publish("hermes/intent/SetTimer", "{\"sessionId\": \"s-x\", oops")
                .await;
            let record = audited(hub, |r| r["code"] == "not_json").await;
            assert_eq!(record["status"], "invalid");
            assert_eq!(record["satellite"], "?", "no site could be read");
            assert_eq!(record["intent"], "SetTimer", "named by the topic");
            still_serving(rhasspy, peer).await;
        },
    );
}

/// An NluIntent built by rhasspy-hermes, then broken by `edit`.
fn broken(peer: &mut Peer, session: &str, edit: impl FnOnce(&mut Value)) -> (String, Vec<u8>) {
    let (topic, payload) = peer.nlu_intent(json!({
        "intent": "SetTimer", "input": "set a timer",
        "slots": [slot("duration", json!("5 minutes"))],
        "siteId": "kitchen", "sessionId": session, "customData": "kept"}));
    let mut value: Value = serde_json::from_slice(&payload).unwrap();
    edit(&mut value);
    (topic, value.to_string().into_bytes())
}

#[test]
fn an_intent_message_without_intent_ends_its_session_with_an_explanation() {
    with_hub(
        "hermes-no-intent",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let (topic, payload) = broken(peer, "s-no-intent", |v| {
                v.as_object_mut().unwrap().remove("intent");
            });
            rhasspy.publish(&topic, payload).await;
            let end = peer.read_end_session(&rhasspy.end_session("s-no-intent").await);
            assert_eq!(
                end["text"],
                "Sorry, I couldn't tell what you wanted me to do."
            );
            assert_eq!(end["customData"], "kept");
            let record = audit_of(hub, "s-no-intent").await;
            assert_eq!(
                (&record["status"], &record["code"]),
                (&json!("invalid"), &json!("missing_intent"))
            );
            assert_eq!(record["satellite"], "kitchen");
            still_serving(rhasspy, peer).await;
        },
    );
}

#[test]
fn slots_of_the_wrong_shape_are_refused_at_their_pointer() {
    with_hub(
        "hermes-bad-slots",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            for (session, edit, pointer) in [
                (
                    "s-slot-value",
                    json!([{"entity": "duration", "value": 5}]),
                    "/slots/0/value",
                ),
                ("s-slot-list", json!({"duration": "5m"}), "/slots"),
                ("s-slot-item", json!(["5m"]), "/slots/0"),
                (
                    "s-slot-key",
                    json!([{"entity": "duration", "value": {"kind": "Number"}}]),
                    "/slots/0/value",
                ),
            ] {
                let (topic, payload) = broken(peer, session, |v| v["slots"] = edit.clone());
                rhasspy.publish(&topic, payload).await;
                let end = peer.read_end_session(&rhasspy.end_session(session).await);
                assert_eq!(
                    end["text"], "Sorry, what Rhasspy heard came to me garbled.",
                    "{edit}"
                );
                let record = audit_of(hub, session).await;
                assert_eq!(record["code"], "bad_args", "{edit}");
                assert_eq!(record["message"], format!("invalid at {pointer}"), "{edit}");
            }
            still_serving(rhasspy, peer).await;
        },
    );
}

#[test]
fn a_one_mebibyte_payload_still_ends_its_session() {
    on_both_brokers("hermes-huge", async |hub, rhasspy, peer| {
        let (topic, payload) = broken(peer, "s-huge", |v| {
            v["input"] = json!("la ".repeat(350_000));
        });
        assert!(payload.len() > 1 << 20);
        rhasspy.publish(&topic, payload).await;
        let end = peer.read_end_session(&rhasspy.end_session("s-huge").await);
        assert_eq!(
            end["text"],
            "Sorry, that request was too big for me to read."
        );
        assert_eq!(
            end["customData"],
            Value::Null,
            "not read back from an oversized payload"
        );
        let record = audit_of(hub, "s-huge").await;
        assert_eq!(record["code"], "payload_too_large");
        assert_eq!(record["satellite"], "kitchen");
        still_serving(rhasspy, peer).await;
    });
}

#[test]
fn a_payload_that_is_not_utf8_still_ends_its_session() {
    with_hub(
        "hermes-not-utf8",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let (topic, payload) = broken(peer, "s-bytes", |v| {
                v["input"] = json!("set a timer PLEASE")
            });
            let at = payload.windows(6).position(|w| w == b"PLEASE").unwrap();
            let mut mangled = payload;
            mangled[at] = 0xff;
            rhasspy.publish(&topic, mangled).await;
            let end = peer.read_end_session(&rhasspy.end_session("s-bytes").await);
            assert_eq!(
                end["text"],
                "Sorry, that request was garbled and I couldn't read it."
            );
            let record = audit_of(hub, "s-bytes").await;
            assert_eq!(record["code"], "not_utf8");
            still_serving(rhasspy, peer).await;
        },
    );
}

#[test]
fn a_site_id_that_cannot_be_a_satellite_id_is_refused_clearly() {
    with_hub(
        "hermes-bad-site",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let end = ask(
            rhasspy,
            peer,
            json!({"intent": "Stop", "input": "stop", "siteId": "living room", "sessionId": "s-site"}),
        )
        .await;
            assert_eq!(
                end["text"],
                "Sorry, Hark can't use this satellite's site ID. Rename the site using only letters, \
             digits, dashes and underscores."
            );
            let record = audit_of(hub, "s-site").await;
            assert_eq!(record["code"], "bad_satellite");
            assert_eq!(record["satellite"], "living room");
            let message = record["message"].as_str().unwrap();
            assert!(
                message.contains("siteId \"living room\" contains ' '"),
                "{message}"
            );

            // Outside a session the complaint is said on that site all the same.
            let (topic, payload) = peer
                .nlu_intent(json!({"intent": "Stop", "input": "stop", "siteId": "living room"}));
            rhasspy.publish(&topic, payload).await;
            let say = peer.read_tts_say(&rhasspy.tts_say("living room", PATIENCE).await);
            assert!(say["text"].as_str().unwrap().contains("site ID"), "{say}");
            still_serving(rhasspy, peer).await;
        },
    );
}

#[test]
fn a_site_outside_hermes_sites_is_refused_audited_and_ended() {
    let tables = HERMES.replace(
        "enabled = true\n",
        "enabled = true\nsites = [\"kitchen\", \"bystander\"]\n",
    );
    with_hub_config(
        "hermes-sites",
        BrokerKind::Embedded,
        &tables,
        async |hub, rhasspy, peer| {
            let end = ask(
                rhasspy,
                peer,
                json!({"intent": "Stop", "input": "stop", "siteId": "garage", "sessionId": "s-garage"}),
            )
            .await;
            assert!(end["text"].is_string(), "the session is ended: {end}");
            let record = audit_of(hub, "s-garage").await;
            assert_eq!(record["code"], "denied", "{record}");
            let message = record["message"].as_str().unwrap();
            assert!(
                message.contains("\"garage\" is not in hermes.sites"),
                "{message}"
            );
            let end = ask(
                rhasspy,
                peer,
                json!({"intent": "Stop", "input": "stop", "siteId": "kitchen", "sessionId": "s-kitchen"}),
            )
            .await;
            assert_eq!(end["text"], "There's nothing to stop.", "{end}");
            still_serving(rhasspy, peer).await;
        },
    );
}

#[test]
fn a_session_id_too_long_for_a_request_id_is_refused_but_ended() {
    with_hub(
        "hermes-long-session",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let session = "s".repeat(65);
            let end = ask(
            rhasspy,
            peer,
            json!({"intent": "Stop", "input": "stop", "siteId": "kitchen", "sessionId": session}),
        )
        .await;
            assert_eq!(end["sessionId"], session.as_str());
            assert_eq!(
                end["text"],
                "Sorry, that request's session ID is too long for me."
            );
            let record = audited(hub, |r| r["code"] == "bad_id").await;
            assert_eq!(record["request_id"], Value::Null);
            assert_eq!(record["message"], "invalid at /sessionId");
        },
    );
}

#[test]
fn custom_data_comes_back_unchanged_on_success_and_refusal() {
    with_hub(
        "hermes-custom-data",
        BrokerKind::Embedded,
        async |_, rhasspy, peer| {
            let data = r#"{"from": "automation", "room": 3, "note": "ünïcödé"}"#;
            let ok = ask(
                rhasspy,
                peer,
                json!({"intent": "Stop", "input": "stop", "siteId": "kitchen", "sessionId": "s-cd1",
                   "customData": data}),
            )
            .await;
            assert_eq!(ok["customData"], data);
            let refused = ask(
                rhasspy,
                peer,
                json!({"intent": "Fly", "input": "fly", "siteId": "kitchen", "sessionId": "s-cd2",
                   "customData": data}),
            )
            .await;
            assert_eq!(refused["customData"], data);
            assert_eq!(refused["text"], "Sorry, I can't handle fly yet.");
        },
    );
}

#[test]
fn intent_not_recognized_ends_the_session_politely() {
    with_hub(
        "hermes-not-recognized",
        BrokerKind::Embedded,
        async |hub, rhasspy, peer| {
            let (topic, payload) = peer.not_recognized(json!({
            "input": "purple monkey dishwasher", "siteId": "kitchen", "sessionId": "s-what",
            "customData": "cd"}));
            assert_eq!(topic, "hermes/nlu/intentNotRecognized");
            rhasspy.publish(&topic, payload).await;
            let end = peer.read_end_session(&rhasspy.end_session("s-what").await);
            assert_eq!(
                end,
                json!({"sessionId": "s-what", "text": "Sorry, I didn't understand that.", "customData": "cd"})
            );
            let record = audit_of(hub, "s-what").await;
            assert_eq!(record["code"], "not_recognized");
            assert_eq!(record["satellite"], "kitchen");

            let (topic, payload) = peer.not_recognized(json!({"input": "hmm", "siteId": "porch"}));
            rhasspy.publish(&topic, payload).await;
            let say = peer.read_tts_say(&rhasspy.tts_say("porch", PATIENCE).await);
            assert_eq!(say["text"], "Sorry, I didn't understand that.");
        },
    );
}

#[test]
fn audio_play_sends_a_wav_to_a_hermes_satellite_and_play_finished_ends_it() {
    with_hub(
        "hermes-play",
        BrokerKind::Embedded,
        async |_, rhasspy, peer| {
            let play = json!({"intent": "PlaySound", "input": "sound the alarm here",
            "slots": [slot("sound", json!("alarm")), slot("target", json!("satellite"))],
            "siteId": "kitchen", "sessionId": "s-play1"});
            let end = ask(rhasspy, peer, play.clone()).await;
            assert_eq!(end["text"], Value::Null, "the sound is the answer");
            let (topic, wav) = rhasspy.play_bytes("kitchen").await;
            assert_eq!(&wav[..4], b"RIFF");
            let read = peer.read_play_bytes(&topic, &wav);
            assert_eq!(read["siteId"], "kitchen");
            assert_eq!(read["channels"], 1);
            assert_eq!(read["sampleWidth"], 2);
            assert_eq!(read["frameRate"], 22_050);
            assert_eq!(read["frames"], 3 * 22_050, "the 3 s alarm");
            let first = read["requestId"].as_str().unwrap().to_string();

            // Rhasspy cannot be told to stop a playBytes; the hub marks it stopped.
            let stop = ask(
            rhasspy,
            peer,
            json!({"intent": "Stop", "input": "stop", "siteId": "kitchen", "sessionId": "s-stop1"}),
        )
        .await;
            assert_eq!(stop["text"], "Stopped.");

            let mut again = play;
            again["sessionId"] = json!("s-play2");
            ask(rhasspy, peer, again).await;
            let (topic, wav) = rhasspy.play_bytes("kitchen").await;
            let second = peer.read_play_bytes(&topic, &wav)["requestId"]
                .as_str()
                .unwrap()
                .to_string();
            assert_ne!(first, second, "each playBytes has its own request id");
            let (topic, payload) = peer.play_finished("kitchen", &second);
            rhasspy.publish(&topic, payload).await;
            let stop = ask(
            rhasspy,
            peer,
            json!({"intent": "Stop", "input": "stop", "siteId": "kitchen", "sessionId": "s-stop2"}),
        )
        .await;
            assert_eq!(
                stop["text"], "There's nothing to stop.",
                "playFinished ended it"
            );
        },
    );
}

#[test]
fn hermes_messages_are_ignored_unless_enabled() {
    let dir = TempDir::new("hermes-off");
    let hub = Hub::start(dir.path());
    let mut peer = Peer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rhasspy = Rhasspy::connect(hub.port).await;
        let (topic, payload) = peer.nlu_intent(
            json!({"intent": "timer.set", "input": "x", "siteId": "kitchen", "sessionId": "s-off"}),
        );
        rhasspy.publish(&topic, payload).await;
        let answer = rhasspy
            .wait_for(Duration::from_millis(1500), |t, _| {
                t.starts_with("hermes/dialogueManager")
            })
            .await;
        assert_eq!(answer, None);
    });
    drop(rt);
    assert!(
        !audit_records(&hub.audit_path())
            .iter()
            .any(|r| r["kind"] == "request"),
        "nothing ran"
    );
    hub.stop().unwrap();
}

/// Flips, deletes, inserts and splices bytes of `seed` (xorshift64*, so
/// every run tries the same inputs).
fn mutate(state: &mut u64, seed: &[u8]) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"null",
        b"1e999",
        b"\xff",
        b"{}",
        b"\"sessionId\"",
        b"\"siteId\"",
        b"\"slots\"",
        b"\"value\"",
        b"\"intent\"",
    ];
    let mut next = || {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) as usize
    };
    let mut out = seed.to_vec();
    for _ in 0..=next() % 4 {
        let at = next() % (out.len() + 1);
        match next() % 4 {
            0 if at < out.len() => out[at] ^= 1 << (next() % 8),
            1 if at < out.len() => {
                out.remove(at);
            }
            2 => {
                let token = TOKENS[next() % TOKENS.len()];
                out.splice(at..at, token.iter().copied());
            }
            _ => out.insert(at, next() as u8),
        }
    }
    out
}

#[test]
fn mutated_hermes_messages_are_each_audited_once_and_leave_no_session_open() {
    use hark_hub::protocols::hermes::{Adapter, Kind};
    let state = TempDir::new("hermes-fuzz");
    let text = format!(
        "state_dir = \"{}\"\n[audio]\nbackend = \"null\"\n{HERMES}",
        state.path().display()
    );
    let config = hark_hub::Config::from_toml(&text, std::path::Path::new("fuzz.toml")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut assembly = rt
        .block_on(async { hark_hub::hub::assemble(&config) })
        .unwrap();
    let adapter = Adapter::new(
        assembly.dispatcher.clone(),
        assembly.outbox.clone(),
        &config.hermes,
        config.mqtt.max_payload,
    );
    let mut peer = Peer::start();
    let seeds: Vec<Vec<u8>> = [
        json!({"intent": "SetTimer", "input": "pasta timer for five minutes", "siteId": "kitchen",
               "sessionId": "s-1", "customData": "cd",
               "slots": [slot("duration", json!("5 minutes")), slot("label", json!("pasta"))]}),
        json!({"intent": "Stop", "input": "stop", "siteId": "hall", "sessionId": "s-2"}),
        json!({"intent": "PlaySound", "input": "chime", "siteId": "porch",
               "slots": [slot("sound", json!("chime")), slot("target", json!("satellite"))]}),
    ]
    .into_iter()
    .map(|spec| peer.nlu_intent(spec).1)
    .collect();
    let before = audit_records(&state.path().join("audit.jsonl")).len();
    let mut rng = 0x4e11_cafe_f00d_u64;
    let rounds = 2000;
    for i in 0..rounds {
        let payload = mutate(&mut rng, &seeds[i % seeds.len()]);
        let kind = if i % 10 == 9 {
            Kind::NotRecognized
        } else {
            Kind::Intent("SetTimer".into())
        };
        rt.block_on(adapter.handle(&kind, &payload));
        let mut answers = Vec::new();
        while let Ok(message) = assembly.outbox_rx.try_recv() {
            if message.topic.starts_with("hermes/audioServer/")
                || message.topic.starts_with("hark/timers/")
            {
                continue; // a sound sent, or the site's list of timers, besides the answer
            }
            answers.push(message);
        }
        assert!(answers.len() <= 1, "one answer at most: {answers:?}");
        let session = serde_json::from_slice::<Value>(&payload)
            .ok()
            .and_then(|v| Some(v.get("sessionId")?.as_str()?.to_string()))
            .filter(|s| !s.is_empty());
        if let Some(session) = session {
            let answer = answers.first().unwrap_or_else(|| {
                panic!(
                    "session {session} left open by {}",
                    String::from_utf8_lossy(&payload)
                )
            });
            assert_eq!(answer.topic, "hermes/dialogueManager/endSession");
            assert_eq!(field(&answer.payload, "sessionId"), Some(session));
        }
    }
    let records = audit_records(&state.path().join("audit.jsonl"));
    assert_eq!(records.len() - before, rounds, "each message audited once");
    let statuses: std::collections::BTreeSet<&str> = records[before..]
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert!(
        ["ok", "invalid", "unknown_intent"]
            .iter()
            .all(|s| statuses.contains(s)),
        "the mutations reach every stage: {statuses:?}"
    );
    let verify = hark_hub::audit::verify(&state.path().join("audit.jsonl"));
    assert!(verify.is_ok(), "{verify:?}");
}
