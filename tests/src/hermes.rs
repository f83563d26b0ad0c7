//! Helpers for the Hermes tests: [`Peer`], the real rhasspy-hermes library
//! (Python, in `target/hermes-venv`) building Rhasspy's messages and reading
//! the hub's answers; and [`Rhasspy`], an MQTT client that publishes those
//! messages and collects what the hub sends back under `hermes/`, raw.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::PATIENCE;
use crate::python::{JsonPeer, repo_root};

/// rhasspy-hermes, answering one JSON command per line
/// (`tests/hermes/hermes_peer.py`). Killed on drop.
#[derive(Debug)]
pub struct Peer(JsonPeer);

impl Peer {
    pub fn start() -> Peer {
        Peer(JsonPeer::start(
            &repo_root().join("tests/hermes/hermes_peer.py"),
            "rhasspy-hermes",
            "is rhasspy-hermes installed? run scripts/hermes-venv.sh",
        ))
    }

    /// One command; a failure on the Python side fails the test with its trace.
    pub fn call(&mut self, command: Value) -> Value {
        self.0.call(command)
    }

    /// An NluIntent as rhasspy-hermes writes it: `(topic, payload)`.
    /// `spec`: `{"intent", "input"?, "slots"?: [{"entity", "value": {...}, "slotName"?}],
    /// "siteId"?, "sessionId"?, "customData"?}`.
    pub fn nlu_intent(&mut self, spec: Value) -> (String, Vec<u8>) {
        self.message("nlu_intent", spec)
    }

    /// An NluIntentNotRecognized: `{"input"?, "siteId"?, "sessionId"?, "customData"?}`.
    pub fn not_recognized(&mut self, spec: Value) -> (String, Vec<u8>) {
        self.message("not_recognized", spec)
    }

    /// An AudioPlayFinished for `id` on `site_id`.
    pub fn play_finished(&mut self, site_id: &str, id: &str) -> (String, Vec<u8>) {
        self.message("play_finished", json!({"siteId": site_id, "id": id}))
    }

    fn message(&mut self, op: &str, mut spec: Value) -> (String, Vec<u8>) {
        spec["op"] = json!(op);
        let answer = self.call(spec);
        (
            answer["topic"].as_str().unwrap().to_string(),
            answer["payload"].as_str().unwrap().as_bytes().to_vec(),
        )
    }

    /// The hub's endSession as `DialogueEndSession` reads it:
    /// `{"sessionId", "text", "customData"}`.
    pub fn read_end_session(&mut self, payload: &[u8]) -> Value {
        self.call(json!({"op": "read_end_session", "payload": utf8(payload)}))
    }

    /// The hub's continueSession as `DialogueContinueSession` reads it:
    /// `{"sessionId", "text", "intentFilter", "customData", "sendIntentNotRecognized"}`.
    pub fn read_continue_session(&mut self, payload: &[u8]) -> Value {
        self.call(json!({"op": "read_continue_session", "payload": utf8(payload)}))
    }

    /// The hub's tts/say as `TtsSay` reads it.
    pub fn read_tts_say(&mut self, payload: &[u8]) -> Value {
        self.call(json!({"op": "read_tts_say", "payload": utf8(payload)}))
    }

    /// A playBytes as `AudioPlayBytes` and Python's `wave` read it:
    /// `{"siteId", "requestId", "channels", "sampleWidth", "frameRate", "frames"}`.
    pub fn read_play_bytes(&mut self, topic: &str, payload: &[u8]) -> Value {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        self.call(json!({"op": "read_play_bytes", "topic": topic, "hex": hex}))
    }
}

fn utf8(payload: &[u8]) -> &str {
    std::str::from_utf8(payload).expect("the hub's Hermes answers are UTF-8")
}

/// Rhasspy on the broker: publishes Hermes messages and collects the hub's
/// endSession, tts/say and playBytes messages (payloads kept as bytes).
#[derive(Debug)]
pub struct Rhasspy {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    subacks: mpsc::UnboundedReceiver<()>,
    backlog: VecDeque<(String, Vec<u8>)>,
}

impl Rhasspy {
    pub async fn connect(port: u16) -> Rhasspy {
        static N: AtomicU64 = AtomicU64::new(0);
        let client_id = format!(
            "test-rhasspy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (tx, messages) = mpsc::unbounded_channel();
        let (sub_tx, subacks) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        let mut rhasspy = Rhasspy {
            client,
            messages,
            subacks,
            backlog: VecDeque::new(),
        };
        for filter in [
            "hermes/dialogueManager/endSession",
            "hermes/dialogueManager/continueSession",
            "hermes/tts/say",
            "hermes/audioServer/+/playBytes/#",
        ] {
            rhasspy.subscribe(filter).await;
        }
        rhasspy
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(PATIENCE, self.subacks.recv())
            .await
            .unwrap_or_else(|_| panic!("no SUBACK for {filter}: is the broker up?"));
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// The first message (kept from earlier, or new) that `wanted` accepts.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&str, &[u8]) -> bool,
    ) -> Option<(String, Vec<u8>)> {
        if let Some(i) = self.backlog.iter().position(|(t, p)| wanted(t, p)) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (topic, payload) = tokio::time::timeout(remaining, self.messages.recv())
                .await
                .ok()??;
            if wanted(&topic, &payload) {
                return Some((topic, payload));
            }
            self.backlog.push_back((topic, payload));
        }
    }

    /// The raw endSession that ends `session_id`.
    pub async fn end_session(&mut self, session_id: &str) -> Vec<u8> {
        self.wait_for(PATIENCE, |topic, payload| {
            topic == "hermes/dialogueManager/endSession"
                && field(payload, "sessionId") == Some(session_id.to_string())
        })
        .await
        .unwrap_or_else(|| panic!("no endSession for session {session_id} within {PATIENCE:?}"))
        .1
    }

    /// The raw continueSession that keeps `session_id` open for an answer.
    pub async fn continue_session(&mut self, session_id: &str) -> Vec<u8> {
        self.wait_for(PATIENCE, |topic, payload| {
            topic == "hermes/dialogueManager/continueSession"
                && field(payload, "sessionId") == Some(session_id.to_string())
        })
        .await
        .unwrap_or_else(|| {
            panic!("no continueSession for session {session_id} within {PATIENCE:?}")
        })
        .1
    }

    /// The next raw tts/say for `site_id`.
    pub async fn tts_say(&mut self, site_id: &str, within: Duration) -> Vec<u8> {
        self.wait_for(within, |topic, payload| {
            topic == "hermes/tts/say" && field(payload, "siteId") == Some(site_id.to_string())
        })
        .await
        .unwrap_or_else(|| panic!("no tts/say for site {site_id} within {within:?}"))
        .1
    }

    /// The next playBytes for `site_id`: `(topic, WAV bytes)`.
    pub async fn play_bytes(&mut self, site_id: &str) -> (String, Vec<u8>) {
        let prefix = format!("hermes/audioServer/{site_id}/playBytes/");
        self.wait_for(PATIENCE, |topic, _| topic.starts_with(&prefix))
            .await
            .unwrap_or_else(|| panic!("no playBytes for site {site_id} within {PATIENCE:?}"))
    }

    /// Everything received so far and not yet taken, without waiting.
    pub fn drain(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = self.backlog.drain(..).collect();
        while let Ok(message) = self.messages.try_recv() {
            out.push(message);
        }
        out
    }
}

/// A string field of a JSON payload.
pub fn field(payload: &[u8], key: &str) -> Option<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()?
        .get(key)?
        .as_str()
        .map(String::from)
}
