//! Home Assistant's Wyoming protocol, end to end: the real `wyoming` library
//! (PyPI, in `target/hermes-venv`; make it with `scripts/hermes-venv.sh`)
//! connects to the hub's Wyoming listener as Home Assistant does, builds the
//! events it sends and reads what the hub answers. Every request goes
//! through the same policy gate and audit log as the native protocol; bad
//! events are refused with an `error`, audited, and leave the hub serving.

use std::time::{Duration, Instant};

use hark_tests::wyoming::HomeAssistant;
use hark_tests::{Hub, PATIENCE, Setup, TempDir, audit_records, free_port, test_config};
use serde_json::{Value, json};

/// A hub listening for Wyoming on `port`, `extra` added to its `[wyoming]`
/// section and `intents` to its `[wyoming.intents]`.
fn setup(port: u16, extra: &str, intents: &str) -> Setup {
    Setup {
        tables: format!(
            "[wyoming]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n[wyoming.intents]\n\
             HassStartTimer = \"timer.set\"\nHassCancelAllTimers = \"system.cancel\"\n\
             HassCancelTimer = \"timer.cancel\"\nHassPauseTimer = \"timer.pause\"\n\
             HassIncreaseTimer = \"timer.add\"\nHassTimerStatus = \"timer.status\"\n{intents}"
        ),
        ..Setup::default()
    }
}

/// Runs `scenario` against a fresh hub listening for Wyoming on a free
/// port, `extra` added to its `[wyoming]` section.
fn with_hub(name: &str, extra: &str, scenario: impl FnOnce(&Hub, &mut HomeAssistant)) {
    let port = free_port();
    let dir = TempDir::new(name);
    let hub = Hub::start_with(dir.path(), &setup(port, extra, ""));
    let mut ha = HomeAssistant::start(port);
    scenario(&hub, &mut ha);
    drop(ha);
    hub.stop().unwrap();
}

/// The first audit record `wanted` picks, waiting for it.
fn audited(hub: &Hub, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(record) = audit_records(&hub.audit_path()).into_iter().find(&wanted) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "no such audit record within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn entity(name: &str, value: Value) -> Value {
    json!({"name": name, "value": value})
}

#[test]
fn describe_is_answered_with_info_advertising_a_handle_service_and_its_intents() {
    with_hub("wyoming-describe", "", |_, ha| {
        ha.connect("a");
        let info = ha.describe("a");
        assert_eq!(info["type"], "info", "{info}");
        assert_eq!(
            (info["asr"].clone(), info["tts"].clone()),
            (json!(0), json!(0))
        );
        let handle = info["handle"].as_array().unwrap();
        assert_eq!(handle.len(), 1, "{info}");
        assert_eq!(handle[0]["name"], "hark");
        assert_eq!(handle[0]["installed"], true);
        let models: Vec<&str> = handle[0]["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        for wanted in [
            "HassStartTimer",
            "HassCancelAllTimers",
            "timer.set",
            "system.cancel",
            "audio.play",
        ] {
            assert!(
                models.contains(&wanted),
                "{wanted} not advertised: {models:?}"
            );
        }
        // Text instead of an intent: Hark has no recognizer of its own.
        assert_eq!(
            ha.event("a", "transcript", json!({"text": "set a timer"})),
            json!({"type": "not-handled", "text": "Sorry, I didn't understand that."})
        );
        assert_eq!(
            ha.event("a", "ping", json!({"text": "hi"})),
            json!({"type": "pong", "data": {"text": "hi"}})
        );
    });
}

#[test]
fn an_intent_is_handled_through_the_policy_gate_and_audited() {
    with_hub("wyoming-timer", "", |hub, ha| {
        ha.connect("a");
        let answer = ha.intent(
            "a",
            "HassStartTimer",
            json!([entity("minutes", json!(5)), entity("label", json!("pasta"))]),
            json!({"satellite_id": "kitchen"}),
        );
        assert_eq!(
            answer,
            json!({"type": "handled", "text": "Pasta timer set for 5 minutes."})
        );
        let record = audited(hub, |r| {
            r["kind"] == "request" && r["intent"] == "timer.set"
        });
        assert_eq!(record["satellite"], "kitchen");
        assert_eq!(record["status"], "ok");
        assert_eq!(record["decision"], "allow");
        assert_eq!(record["message"], "via wyoming");
        assert!(
            record["request_id"]
                .as_str()
                .unwrap()
                .starts_with("wyoming-"),
            "{record}"
        );
        assert_eq!(
            record["args"],
            json!({"duration": "<redacted>", "label": "<redacted>"})
        );

        // Timers belong to their satellite: without a context, the peer's
        // address names it, and it has none to cancel.
        let other = ha.intent(
            "a",
            "HassCancelAllTimers",
            json!([entity("target", json!("timers"))]),
            Value::Null,
        );
        assert_eq!(
            other,
            json!({"type": "handled", "text": "You have no timers to cancel."})
        );
        let record = audited(hub, |r| r["intent"] == "system.cancel");
        assert_eq!(record["satellite"], "wyoming-127-0-0-1");
        let mine = ha.intent(
            "a",
            "HassCancelAllTimers",
            json!([entity("target", json!("timers"))]),
            json!({"satellite_id": "kitchen"}),
        );
        assert_eq!(mine["text"], "Cancelled your pasta timer.", "{mine}");
    });
}

#[test]
fn home_assistants_timer_intents_pick_pause_add_and_ask_which() {
    with_hub("wyoming-timer-vocab", "", |_, ha| {
        ha.connect("a");
        let kitchen = json!({"satellite_id": "kitchen"});
        let mut say = |name: &str, entities: Value| {
            let answer = ha.intent("a", name, entities, kitchen.clone());
            (
                answer["type"].as_str().unwrap().to_string(),
                answer["text"].as_str().unwrap_or_default().to_string(),
            )
        };
        // Home Assistant names the timer `name`.
        let set = say(
            "HassStartTimer",
            json!([entity("minutes", json!(10)), entity("name", json!("pasta"))]),
        );
        assert_eq!(set.1, "Pasta timer set for 10 minutes.");
        say(
            "HassStartTimer",
            json!([entity("minutes", json!(3)), entity("name", json!("tea"))]),
        );
        assert_eq!(
            say("HassCancelTimer", json!([])),
            ("not-handled".into(), "Which timer: tea or pasta?".into())
        );
        // ... and says which timer by the length it was set for.
        let (kind, text) = say(
            "HassPauseTimer",
            json!([
                entity("start_minutes", json!(3)),
                entity("area", json!("kitchen"))
            ]),
        );
        assert_eq!(kind, "handled");
        assert!(text.starts_with("Paused the tea timer with "), "{text}");
        let (kind, text) = say(
            "HassIncreaseTimer",
            json!([entity("minutes", json!(5)), entity("name", json!("pasta"))]),
        );
        assert_eq!(kind, "handled");
        assert!(
            text.starts_with("Added 5 minutes to the pasta timer; it has 1"),
            "{text}"
        );
        let (_, text) = say("HassTimerStatus", json!([entity("name", json!("tea"))]));
        assert!(text.starts_with("The tea timer is paused with "), "{text}");
    });
}

#[test]
fn the_listener_satellite_names_every_request_on_it() {
    with_hub("wyoming-fixed", "satellite = \"den\"", |hub, ha| {
        ha.connect("a");
        let answer = ha.intent(
            "a",
            "HassStartTimer",
            json!([entity("duration", json!("3 minutes"))]),
            json!({"satellite_id": "kitchen"}),
        );
        assert_eq!(answer["type"], "handled", "{answer}");
        let record = audited(hub, |r| r["intent"] == "timer.set");
        assert_eq!(
            record["satellite"], "den",
            "the context cannot override the listener"
        );
    });
}

#[test]
fn an_unknown_intent_is_not_handled_saying_so_and_audited() {
    with_hub("wyoming-unknown", "", |hub, ha| {
        ha.connect("a");
        let answer = ha.intent(
            "a",
            "HassGetWeather",
            json!([]),
            json!({"satellite_id": "kitchen"}),
        );
        assert_eq!(
            answer,
            json!({"type": "not-handled", "text": "Sorry, I can't handle hass get weather yet."})
        );
        let record = audited(hub, |r| r["intent"] == "HassGetWeather");
        assert_eq!(record["status"], "unknown_intent");
        assert_eq!(record["code"], "unknown_intent");
        assert_eq!(record["satellite"], "kitchen");
        // A schema failure is not-handled too, with the slot named.
        let bad = ha.intent(
            "a",
            "HassStartTimer",
            json!([entity("label", json!("tea"))]),
            json!({"satellite_id": "kitchen"}),
        );
        assert_eq!(
            bad,
            json!({"type": "not-handled", "text": "Sorry, I need the duration for that."})
        );
    });
}

#[test]
fn bad_events_are_refused_with_a_clear_error_audited_and_the_hub_serves_on() {
    with_hub("wyoming-bad", "", |hub, ha| {
        ha.connect("bad");
        ha.connect("other");

        let not_json = ha.raw("bad", b"this is not an event\n");
        assert_eq!(not_json["type"], "error", "{not_json}");
        assert_eq!(not_json["code"], "not_json");
        assert!(
            not_json["text"].as_str().unwrap().contains("not JSON"),
            "{not_json}"
        );
        let record = audited(hub, |r| r["code"] == "not_json");
        assert_eq!(record["status"], "invalid");
        assert_eq!(record["satellite"], "wyoming-127-0-0-1");
        assert_eq!(
            record["message"].as_str().map(|m| m.contains("not JSON")),
            Some(true),
            "{record}"
        );

        // An intent without a name: refused at its pointer, audited.
        let nameless = ha.event("bad", "intent", json!({"entities": []}));
        assert_eq!(nameless["type"], "error", "{nameless}");
        assert_eq!(nameless["code"], "missing_intent");
        assert!(
            nameless["text"].as_str().unwrap().starts_with("/name: "),
            "{nameless}"
        );
        audited(hub, |r| r["code"] == "missing_intent");

        // A header line far over the limit: refused, skipped, still in step.
        let mut huge = format!(
            "{{\"type\":\"intent\",\"data\":{{\"name\":\"{}\"}}}}",
            "x".repeat(100_000)
        )
        .into_bytes();
        huge.push(b'\n');
        let oversized = ha.raw("bad", &huge);
        assert_eq!(oversized["type"], "error", "{oversized}");
        assert_eq!(oversized["code"], "payload_too_large");
        audited(hub, |r| r["code"] == "payload_too_large");

        // The same connection, and another, are served as before.
        assert_eq!(ha.describe("bad")["type"], "info");
        let answer = ha.intent(
            "other",
            "HassStartTimer",
            json!([entity("duration", json!("2 minutes"))]),
            json!({"satellite_id": "hall"}),
        );
        assert_eq!(
            answer,
            json!({"type": "handled", "text": "Timer set for 2 minutes."})
        );
        ha.close("bad");
        ha.close("other");
    });
}

#[test]
fn connections_past_the_limit_are_told_busy_and_the_open_ones_served() {
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    with_hub("wyoming-limit", "", |_, ha| {
        ha.connect("first");
        let port = ha.port();
        // The peer holds one; fill the rest with idle sockets.
        let idle: Vec<TcpStream> = (1..hark_hub::protocols::wyoming::MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let extra = TcpStream::connect(("127.0.0.1", port)).unwrap();
        extra.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut line = String::new();
        BufReader::new(&extra).read_line(&mut line).unwrap();
        let header: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(header["type"], "error", "{line}");
        assert_eq!(ha.describe("first")["type"], "info");
        drop(idle);
    });
}

#[test]
fn a_client_outside_wyoming_allow_is_closed_unanswered_and_audited() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    // Only a documentation address may connect: this machine may not.
    with_hub("wyoming-allow", "allow = [\"192.0.2.10\"]", |hub, ha| {
        let mut stranger = TcpStream::connect(("127.0.0.1", ha.port())).unwrap();
        stranger.set_read_timeout(Some(PATIENCE)).unwrap();
        let _ = stranger.write_all(b"{\"type\": \"describe\"}\n");
        let mut answer = Vec::new();
        let _ = stranger.read_to_end(&mut answer);
        assert!(
            answer.is_empty(),
            "no answer: {}",
            String::from_utf8_lossy(&answer)
        );
        let record = audited(hub, |r| r["rule"] == "wyoming.allow");
        assert!(
            record["message"].as_str().unwrap().contains("127.0.0.1"),
            "{record}"
        );
    });
}

/// Writes the hub's config with `extra` and `intents` (as [`setup`]),
/// sends SIGHUP and waits for the reload's audit record (the `n`th), which
/// must say the file was read and nothing waits for a restart.
fn reload(hub: &Hub, port: u16, (extra, intents): (&str, &str), n: usize) {
    let broker = format!("listen = \"127.0.0.1:{}\"", hub.port);
    let text = test_config(&hub.state, &broker, &setup(port, extra, intents));
    std::fs::write(hub.state.join("hark.toml"), text).unwrap();
    hark_tests::sighup_this_process();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reloads: Vec<Value> = audit_records(&hub.audit_path())
            .into_iter()
            .filter(|r| r["rule"] == "config.reload")
            .collect();
        if let Some(record) = reloads.get(n - 1) {
            assert_eq!(record["kind"], "load", "{record}");
            let message = record["message"].as_str().unwrap_or_default();
            assert!(!message.contains("restart"), "{record}");
            return;
        }
        assert!(Instant::now() < deadline, "no reload within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `ping` on a plain socket and its `pong`, read whole.
fn ping(stream: &mut std::net::TcpStream) {
    use std::io::{BufRead, Read, Write};
    stream.write_all(b"{\"type\": \"ping\"}\n").unwrap();
    let mut reader = std::io::BufReader::new(&*stream);
    let mut header = String::new();
    reader.read_line(&mut header).unwrap();
    let header: Value = serde_json::from_str(&header).unwrap();
    assert_eq!(header["type"], "pong", "{header}");
    let mut data = vec![0; header["data_length"].as_u64().unwrap_or(0) as usize];
    reader.read_exact(&mut data).unwrap();
}

#[test]
fn a_sighup_applies_new_mappings_and_closes_connections_allow_no_longer_names() {
    use std::io::Read;
    let port = free_port();
    let dir = TempDir::new("wyoming-reload");
    let hub = Hub::start_with(dir.path(), &setup(port, "", ""));
    let mut ha = HomeAssistant::start(port);
    ha.connect("a");
    let answer = ha.intent("a", "HassNevermind", json!([]), json!({}));
    assert_eq!(answer["type"], "not-handled", "{answer}");

    // The owner maps HassNevermind and names the listener's satellite: the
    // open connection's next intent follows both.
    reload(
        &hub,
        port,
        ("satellite = \"den\"", "HassNevermind = \"system.cancel\"\n"),
        1,
    );
    let answer = ha.intent("a", "HassNevermind", json!([]), json!({}));
    assert_eq!(answer["type"], "handled", "{answer}");
    let record = audited(&hub, |r| r["intent"] == "system.cancel");
    assert_eq!(record["satellite"], "den", "{record}");

    // Then allows only another address: an open, served connection is
    // closed without sending anything more, and a new one is refused.
    let mut open = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    open.set_read_timeout(Some(PATIENCE)).unwrap();
    ping(&mut open);
    reload(&hub, port, ("allow = [\"192.0.2.10\"]", ""), 2);
    let mut rest = Vec::new();
    let read = open.read_to_end(&mut rest);
    assert!(
        read.is_ok() && rest.is_empty(),
        "the open connection was not closed: {read:?}, {rest:?}"
    );
    let record = audited(&hub, |r| r["rule"] == "wyoming.allow");
    assert!(
        record["message"].as_str().unwrap().contains("127.0.0.1"),
        "{record}"
    );
    drop(ha);
    hub.stop().unwrap();
}
