//! Timers as a household judges them: they ring on time, they ring after a
//! crash, and "cancel" does what was asked.

use std::path::Path;
use std::time::{Duration, Instant};

use hark_tests::{
    Hub, HubProcess, Mosquitto, PATIENCE, Satellite, Setup, TempDir, runtime, test_config,
    wait_online,
};
use serde_json::json;

#[test]
fn a_one_second_timer_fires_its_event_and_rings_the_alarm() {
    let dir = TempDir::new("timer-1s");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let set_at = Instant::now();
        let reply = kitchen
            .request("timer.set", json!({"duration": "1s", "label": "tea"}))
            .await;
        assert_eq!(reply["speech"], "Tea timer set for 1 second.");
        let finished = kitchen.event("timer_finished", PATIENCE).await;
        let waited = set_at.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "rang early, after {waited:?}"
        );
        assert_eq!(finished["label"], "tea");
        assert_eq!(finished["remaining_s"], 0);
        assert_eq!(finished["speech"], "Your tea timer is done.");
        assert!(finished.get("late").is_none(), "{finished}");
        let ring = kitchen.event("playback_started", PATIENCE).await;
        assert_eq!(
            (ring["sound"].as_str(), ring["target"].as_str()),
            (Some("alarm"), Some("hub"))
        );

        // "Stop!" silences the ringing alarm, and says so.
        let reply = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(reply["speech"], "Stopped.", "{reply}");
        let stopped = kitchen.event("playback_stopped", PATIENCE).await;
        assert_eq!(stopped["reason"], "cancelled");
    });
    hub.stop().unwrap();
}

#[test]
fn the_alarm_rings_past_its_clip_until_stopped_or_audio_alarm_max_s() {
    let dir = TempDir::new("timer-ring-on");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        kitchen
            .request("timer.set", json!({"duration": "1s", "label": "tea"}))
            .await;
        let ring = kitchen.event("playback_started", PATIENCE).await;
        assert_eq!(ring["repeat"], true, "{ring}");
        assert_eq!(ring["duration_ms"], 300_000, "audio.alarm_max_s default");
        // The alarm clip is 3 s long; a person in the garden must still hear
        // it after that.
        let early_end = kitchen
            .wait_for(Duration::from_millis(4500), |_, body| {
                body["event"] == "playback_stopped"
            })
            .await;
        assert_eq!(early_end, None, "stopped by itself: {early_end:?}");
        let reply = kitchen.request("system.cancel", json!({})).await;
        assert_eq!(reply["speech"], "Stopped.", "{reply}");
        let stopped = kitchen.event("playback_stopped", PATIENCE).await;
        assert_eq!(stopped["reason"], "cancelled");
    });
    hub.stop().unwrap();

    // With audio.alarm_max_s = 1 it gives up by itself after a second,
    // inside its first clip.
    let dir = TempDir::new("timer-ring-max");
    let hub = Hub::start_with(
        dir.path(),
        &Setup {
            // test_config writes these lines inside [audio].
            tables: "alarm_max_s = 1\n".into(),
            ..Setup::default()
        },
    );
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        kitchen
            .request("timer.set", json!({"duration": "1s", "label": "tea"}))
            .await;
        let ring = kitchen.event("playback_started", PATIENCE).await;
        assert_eq!(ring["duration_ms"], 1000, "{ring}");
        let rang_at = Instant::now();
        let stopped = kitchen.event("playback_stopped", PATIENCE).await;
        assert_eq!(stopped["reason"], "completed", "{stopped}");
        assert!(
            rang_at.elapsed() >= Duration::from_millis(900),
            "stopped early, after {:?}",
            rang_at.elapsed()
        );
    });
    hub.stop().unwrap();
}

#[test]
fn cancel_works_for_one_label_and_for_all() {
    let dir = TempDir::new("timer-cancel");
    let hub = Hub::start(dir.path());
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(hub.port, &hub.prefix, "kitchen").await;
        let mut hall = Satellite::connect(hub.port, &hub.prefix, "hall").await;
        for label in ["pasta", "eggs", "tea"] {
            let reply = kitchen
                .request("timer.set", json!({"duration": "10m", "label": label}))
                .await;
            assert_eq!(reply["status"], "ok");
        }
        hall.request("timer.set", json!({"duration": "10m", "label": "pasta"}))
            .await;

        let reply = kitchen
            .request(
                "system.cancel",
                json!({"target": "timer", "label": "pasta"}),
            )
            .await;
        assert_eq!(reply["speech"], "Cancelled the pasta timer.");
        let cancelled = kitchen.event("timer_cancelled", PATIENCE).await;
        assert_eq!(cancelled["label"], "pasta");

        let reply = kitchen
            .request("system.cancel", json!({"target": "timers"}))
            .await;
        assert_eq!(reply["speech"], "Cancelled 2 timers.");
        let mut labels = vec![
            kitchen.event("timer_cancelled", PATIENCE).await["label"].clone(),
            kitchen.event("timer_cancelled", PATIENCE).await["label"].clone(),
        ];
        labels.sort_by_key(|l| l.to_string());
        assert_eq!(labels, [json!("eggs"), json!("tea")]);

        let reply = kitchen
            .request("system.cancel", json!({"target": "timers"}))
            .await;
        assert_eq!(reply["speech"], "You have no timers to cancel.");
        let reply = hall
            .request("system.cancel", json!({"target": "timer"}))
            .await;
        assert_eq!(
            reply["speech"], "Cancelled the pasta timer.",
            "the hall kept its timer"
        );
    });
    let saved = hark_hub::timers::saved(dir.path()).unwrap();
    assert!(saved.timers.is_empty(), "cancellations are persisted");
    hub.stop().unwrap();
}

fn write_config(dir: &Path, broker_line: &str) -> std::path::PathBuf {
    let path = dir.join("hark.toml");
    std::fs::write(&path, test_config(dir, broker_line, &Setup::default())).unwrap();
    path
}

#[test]
fn a_timer_survives_kill_9_and_fires_after_restart_marked_late() {
    // A broker that outlives the hub, so the satellite is listening when the
    // restarted hub rings the overdue timer first thing (an embedded broker
    // would die with the hub, and the ring could beat the satellite's
    // resubscription).
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("timer-kill9");
    let config = write_config(dir.path(), &format!("url = \"{}\"", mosquitto.url()));
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(mosquitto.port, "hark");
    let rt = runtime();
    let mut kitchen = rt.block_on(async {
        let mut kitchen = Satellite::connect(mosquitto.port, "hark", "kitchen").await;
        let reply = kitchen
            .request("timer.set", json!({"duration": "2s", "label": "early"}))
            .await;
        assert_eq!(reply["status"], "ok");
        let reply = kitchen
            .request("timer.set", json!({"duration": "6s", "label": "later"}))
            .await;
        assert_eq!(reply["status"], "ok");
        kitchen
    });
    let set_at = Instant::now();
    hub.kill9();

    // "early" comes due while the hub is down.
    std::thread::sleep(Duration::from_millis(3500));
    let hub = HubProcess::spawn(dir.path(), &config);
    rt.block_on(async {
        let early = kitchen.event("timer_finished", PATIENCE).await;
        assert_eq!(early["label"], "early");
        assert_eq!(early["late"], true, "{early}");
        let later = kitchen.event("timer_finished", PATIENCE).await;
        assert_eq!(later["label"], "later");
        assert!(
            set_at.elapsed() >= Duration::from_millis(5900),
            "rang early"
        );
        assert!(
            later.get("late").is_none(),
            "rang on time after the restart: {later}"
        );
    });
    assert!(hub.terminate().success());
}

#[test]
fn intents_sent_while_the_hub_is_down_are_answered_after_it_restarts() {
    // An external broker keeps the hub's persistent session and queues
    // what satellites send meanwhile.
    let mosquitto = Mosquitto::start();
    let dir = TempDir::new("timer-offline");
    let config = write_config(dir.path(), &format!("url = \"{}\"", mosquitto.url()));
    let hub = HubProcess::spawn(dir.path(), &config);
    wait_online(mosquitto.port, "hark");
    hub.kill9();

    let rt = runtime();
    rt.block_on(async {
        let mut kitchen = Satellite::connect(mosquitto.port, "hark", "kitchen").await;
        let mut status = Satellite::connect_as(mosquitto.port, "hark", "watch").await;
        status.subscribe("hark/hub/status").await;
        let offline = status
            .wait_for(PATIENCE, |_, s| s["online"] == false)
            .await
            .expect("the broker publishes the hub's last will");
        assert_eq!(offline, json!({"online": false}));

        kitchen
            .send_raw(
                json!({"id": "while-down", "intent": "timer.set", "args": {"duration": "5m"}})
                    .to_string(),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _hub = HubProcess::spawn(dir.path(), &config);
        let reply = kitchen.reply_for(Some("while-down")).await;
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["speech"], "Timer set for 5 minutes.");
    });
}

#[test]
fn the_hub_reconnects_and_resubscribes_when_its_broker_comes_back() {
    let mosquitto = Mosquitto::start();
    let port = mosquitto.port;
    let dir = TempDir::new("reconnect");
    let config = write_config(dir.path(), &format!("url = \"{}\"", mosquitto.url()));
    let _hub = HubProcess::spawn(dir.path(), &config);
    wait_online(port, "hark");

    // The broker goes away and comes back empty (no persistence): the hub
    // must reconnect on its own and subscribe again.
    drop(mosquitto);
    std::thread::sleep(Duration::from_millis(500));
    let _mosquitto = Mosquitto::start_on(port);
    let status = wait_online(port, "hark");
    assert_eq!(status["online"], true);
    runtime().block_on(async {
        let mut kitchen = Satellite::connect(port, "hark", "kitchen").await;
        let reply = kitchen
            .request("timer.set", json!({"duration": "5m"}))
            .await;
        assert_eq!(reply["status"], "ok", "{reply}");
    });
}
