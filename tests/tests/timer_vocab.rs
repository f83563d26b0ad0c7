//! The whole timer vocabulary as a household uses it (SPEC §8.2): "how long
//! is left", "pause it", "add five minutes", "cancel the timer" with two
//! running, and a paused timer that stays paused through a crash. Real hub,
//! real broker, real files.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_tests::{
    Hub, HubProcess, Mosquitto, PATIENCE, Satellite, Setup, TempDir, runtime, test_config,
    wait_online,
};
use serde_json::{Value, json};

fn write_config(dir: &Path, broker_line: &str) -> std::path::PathBuf {
    let path = dir.join("hark.toml");
    std::fs::write(&path, test_config(dir, broker_line, &Setup::default())).unwrap();
    path
}

/// What a dashboard connecting now reads on `hark/timers/<sat>`.
async fn retained_timers(port: u16, sat: &str) -> Value {
    let mut dashboard = Satellite::connect_as(port, "hark", "dashboard").await;
    let topic = format!("hark/timers/{sat}");
    dashboard.subscribe(&topic).await;
    dashboard
        .wait_for(PATIENCE, |t, _| t == topic)
        .await
        .unwrap_or_else(|| panic!("nothing retained on {topic}"))
}

fn ok(reply: &Value) {
    assert_eq!(reply["status"], "ok", "{reply}");
}

fn secs(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_paused_timer_survives_kill_9_paused_and_rings_on_time_once_resumed() {
    // A broker that outlives the hub: the retained list must survive it, and
    // the satellite keeps listening across the restart.
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("timer-pause-kill9");
    let config = write_config(dir.path(), &format!("url = \"{}\"", mosquitto.url()));
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(mosquitto.port, "hark");
    let rt = runtime();
    let (mut kitchen, remaining) = rt.block_on(async {
        let mut kitchen = Satellite::connect(mosquitto.port, "hark", "kitchen").await;
        ok(&kitchen
            .request("timer.set", json!({"duration": "6s", "label": "pasta"}))
            .await);
        let reply = kitchen.request("timer.pause", json!({})).await;
        ok(&reply);
        assert_eq!(reply["data"]["state"], "paused", "{reply}");
        let remaining = secs(&reply["data"]["remaining_s"]);
        assert!((5..=6).contains(&remaining), "{reply}");
        (kitchen, remaining)
    });
    hub.kill9();
    // Longer than the timer had left: a running timer would ring at start.
    std::thread::sleep(Duration::from_millis(7000));
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(mosquitto.port, "hark");
    rt.block_on(async {
        let reply = kitchen.request("timer.status", json!({})).await;
        ok(&reply);
        let timer = &reply["data"]["timers"][0];
        assert_eq!(timer["state"], "paused", "{reply}");
        assert!(
            (secs(&timer["remaining_s"]) - remaining).abs() <= 1,
            "{remaining} s left before the crash, now {reply}"
        );
        let said = reply["speech"].as_str().unwrap();
        assert!(
            said.starts_with("The pasta timer is paused with ") && said.ends_with(" seconds left."),
            "{said}"
        );
        let list = retained_timers(mosquitto.port, "kitchen").await;
        assert_eq!(
            list[0]["state"], "paused",
            "retained after the restart: {list}"
        );
        assert_eq!(list[0]["label"], "pasta");

        let resumed_at = Instant::now();
        let reply = kitchen
            .request("timer.resume", json!({"label": "pasta"}))
            .await;
        ok(&reply);
        assert_eq!(reply["data"]["state"], "running");
        // (The pause's own `timer_updated` came before the crash.)
        let updated = kitchen
            .wait_for(PATIENCE, |_, e| {
                e["event"] == "timer_updated" && e["state"] == "running"
            })
            .await
            .expect("the resume is announced");
        assert!(
            (remaining - 1..=remaining).contains(&secs(&updated["remaining_s"])),
            "{updated}"
        );
        let finished = kitchen.event("timer_finished", PATIENCE).await;
        let waited = resumed_at.elapsed();
        assert_eq!(finished["label"], "pasta");
        assert!(
            waited >= Duration::from_millis((remaining as u64 - 1) * 1000),
            "rang after {waited:?}, with {remaining} s left"
        );
        assert!(finished.get("late").is_none(), "rang on time: {finished}");
        let list = kitchen.request("timer.list", json!({})).await;
        assert_eq!(list["data"]["timers"], json!([]), "{list}");
    });
    assert!(hub.terminate().success());
}

#[test]
fn add_and_subtract_move_the_finish_and_status_speaks_what_is_left() {
    let dir = TempDir::new("timer-add");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        ok(&kitchen
            .request("timer.set", json!({"duration": "10m", "label": "pasta"}))
            .await);
        let reply = kitchen
            .request("timer.add", json!({"duration": "5 minutes"}))
            .await;
        ok(&reply);
        assert_eq!(
            reply["speech"],
            "Added 5 minutes to the pasta timer; it has 15 minutes left."
        );
        let updated = kitchen.event("timer_updated", PATIENCE).await;
        assert_eq!(updated["state"], "running");
        assert!(
            (899..=900).contains(&secs(&updated["remaining_s"])),
            "{updated}"
        );
        assert_eq!(updated["total_s"], 900);

        let reply = kitchen
            .request(
                "timer.subtract",
                json!({"duration": "14m57s", "label": "pasta"}),
            )
            .await;
        ok(&reply);
        let updated = kitchen.event("timer_updated", PATIENCE).await;
        assert!(
            (2..=3).contains(&secs(&updated["remaining_s"])),
            "{updated}"
        );

        let status = kitchen.request("timer.status", json!({})).await;
        ok(&status);
        let said = status["speech"].as_str().unwrap();
        assert!(
            said.starts_with("The pasta timer has ") && said.ends_with(" seconds left."),
            "{said}"
        );
        // The new finish is the one that rings.
        let finished = kitchen.event("timer_finished", PATIENCE).await;
        assert_eq!(finished["label"], "pasta");
    });
    hub.stop().unwrap();
}

#[test]
fn two_timers_and_cancel_the_timer_asks_which() {
    let dir = TempDir::new("timer-ambiguous");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        for (label, duration) in [("pasta", "10m"), ("tea", "3m")] {
            ok(&kitchen
                .request("timer.set", json!({"duration": duration, "label": label}))
                .await);
        }
        for (intent, args) in [
            ("timer.cancel", json!({})),
            ("system.cancel", json!({"target": "timer"})),
        ] {
            let reply = kitchen.request(intent, args).await;
            assert_eq!(reply["status"], "invalid", "{reply}");
            assert_eq!(reply["error"]["code"], "ambiguous_timer", "{reply}");
            assert_eq!(
                reply["speech"], "Which timer: tea or pasta?",
                "soonest first"
            );
        }
        let reply = kitchen
            .request("timer.cancel", json!({"duration": "three minutes"}))
            .await;
        assert_eq!(reply["speech"], "Cancelled the tea timer.", "{reply}");
        let reply = kitchen.request("timer.cancel", json!({})).await;
        assert_eq!(
            reply["speech"], "Cancelled the pasta timer.",
            "the only one left"
        );
    });
    assert!(
        hark_hub::timers::saved(dir.path())
            .unwrap()
            .timers
            .is_empty()
    );
    hub.stop().unwrap();
}

#[test]
fn the_retained_list_of_timers_follows_every_change() {
    let dir = TempDir::new("timer-retained");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let reply = kitchen
            .request("timer.set", json!({"duration": "10m", "label": "pasta"}))
            .await;
        ok(&reply);
        let id = reply["data"]["timer_id"].clone();
        let list = retained_timers(hub.port, "kitchen").await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["id"], id);
        assert_eq!(list[0]["state"], "running");
        assert_eq!(list[0]["total_s"], 600);
        assert!(list[0]["ends_at_ms"].as_u64().is_some(), "{list}");

        ok(&kitchen.request("timer.pause", json!({})).await);
        let list = retained_timers(hub.port, "kitchen").await;
        assert_eq!(list[0]["state"], "paused", "{list}");
        assert_eq!(list[0]["ends_at_ms"], Value::Null);

        ok(&kitchen
            .request("timer.add", json!({"duration": "1m"}))
            .await);
        let list = retained_timers(hub.port, "kitchen").await;
        assert_eq!(list[0]["total_s"], 660, "{list}");
        assert!(
            (659..=660).contains(&secs(&list[0]["remaining_s"])),
            "{list}"
        );

        ok(&kitchen.request("timer.cancel", json!({"all": true})).await);
        assert_eq!(retained_timers(hub.port, "kitchen").await, json!([]));
    });
    hub.stop().unwrap();
}

#[test]
fn bad_requests_get_clear_replies_and_lose_nothing() {
    let dir = TempDir::new("timer-bad");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        ok(&kitchen
            .request("timer.set", json!({"duration": "10m", "label": "pasta"}))
            .await);
        let before = kitchen.request("timer.list", json!({})).await["data"]["timers"].clone();

        let cases = [
            (
                "timer.add",
                json!({"duration": "-5m"}),
                "invalid",
                "bad_arg",
                "negative",
            ),
            (
                "timer.add",
                json!({"duration": "10 years"}),
                "invalid",
                "bad_arg",
                "year",
            ),
            (
                "timer.add",
                json!({"duration": "7 days"}),
                "invalid",
                "bad_arg",
                "longer than 7 days",
            ),
            (
                "timer.subtract",
                json!({"duration": "20m"}),
                "invalid",
                "bad_arg",
                "can't take 20 minutes off",
            ),
            (
                "timer.pause",
                json!({"label": "tea"}),
                "invalid",
                "no_timer",
                "there's no tea timer.",
            ),
            (
                "timer.status",
                json!({"label": "tea"}),
                "invalid",
                "no_timer",
                "there's no tea timer.",
            ),
            (
                "timer.resume",
                json!({}),
                "invalid",
                "timer_state",
                "the pasta timer is already running.",
            ),
            (
                "timer.add",
                json!({"duration": "5m", "colour": "red"}),
                "invalid",
                "schema",
                "",
            ),
        ];
        for (intent, args, status, code, says) in cases {
            let reply = kitchen.request(intent, args.clone()).await;
            assert_eq!(reply["status"], status, "{intent} {args}: {reply}");
            assert_eq!(reply["error"]["code"], code, "{intent} {args}: {reply}");
            if !says.is_empty() {
                let said = reply["speech"].as_str().unwrap_or_default().to_lowercase();
                assert!(said.contains(says), "{intent} {args}: {reply}");
            }
        }
        ok(&kitchen.request("timer.pause", json!({})).await);
        let reply = kitchen
            .request("timer.pause", json!({"label": "pasta"}))
            .await;
        assert_eq!(reply["error"]["code"], "timer_state", "{reply}");
        assert_eq!(reply["speech"], "The pasta timer is already paused.");

        let after = kitchen.request("timer.list", json!({})).await["data"]["timers"].clone();
        assert_eq!(after[0]["id"], before[0]["id"]);
        assert_eq!(
            after[0]["total_s"], 600,
            "nothing added or taken off: {after}"
        );
        assert!(
            (secs(&after[0]["remaining_s"]) - secs(&before[0]["remaining_s"])).abs() <= 2,
            "{before} -> {after}"
        );
    });
    hub.stop().unwrap();
}
