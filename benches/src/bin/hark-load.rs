//! hark-load: the end-to-end load generator. Satellites send intents over a
//! real broker and time each round trip to its reply.
//!
//! ```text
//! cargo run --release -p hark-benches --bin hark-load -- \
//!     [--broker embedded|mosquitto|external] [--port N] [--responder hub|echo|none] \
//!     [--sats 1] [--inflight 1] [--seconds 5] [--intent system.cancel] \
//!     [--skill dice|weather|spin] [--expect ok|timeout] [--protocol native|hermes] \
//!     [--hub-toml TOML] [--confirm]
//! ```
//!
//! `--intent timer.set,timer.cancel --args '[{"duration": "1h"}, {"all": true}]'`
//! makes each satellite take turns between the intents (native protocol),
//! each with its own args: a steady state of timers, as a household has,
//! rather than a list that grows for the whole run.
//!
//! `--confirm` makes the intent a sensitive one (`[confirm] skills`): each
//! request is answered with a question, which the satellite answers yes
//! at once; both legs are timed and printed.
//!
//! `--hub-toml` adds tables to the hub's config, e.g. raised timer limits
//! for a `timer.set` run: `--hub-toml $'[timers]\nmax_total = 1000000\n...'`.
//!
//! `--skill` installs a WebAssembly skill (the SDK's `dice`, or `spin`, an
//! infinite loop) and runs the hub in the convenient tier; `--intent`
//! defaults to that skill. `--expect timeout` measures how long the hub
//! takes to stop a runaway call.
//!
//! `--responder echo` replaces the hub with a minimal client that answers
//! every intent at once: the floor that broker and network alone impose.
//! `--echo-event` makes it publish an event before each reply, as the hub
//! does for `timer.set`: the floor for requests that answer with an event.
//! `--echo-timers` also retains a one-timer list on `hark/timers/<sat>`
//! before the reply: all that a timer change publishes (SPEC §8), the floor
//! for `timer.set` and `timer.cancel`.
//!
//! `--broker external --port N` uses a broker already listening on
//! 127.0.0.1:N, and `--responder none` starts no responder: for timing
//! another program that answers (a rhasspy-hermes-app, say) on that broker.
//!
//! `--protocol hermes` speaks Rhasspy's Hermes instead (the hub runs with
//! `hermes.enabled`): NluIntents on `hermes/intent/<intent>` with a
//! `sessionId` and `siteId` `load-<n>`, each timed to its endSession. As in
//! Rhasspy, where the base's NLU publishes every site's NluIntent and its
//! dialogue manager hears every endSession, one client does this for all
//! `--sats` sites (`--inflight` sessions each); the echo answers endSession.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use sha2::Digest;

#[derive(Debug, Clone)]
struct Options {
    broker: String,
    responder: String,
    sats: usize,
    inflight: usize,
    seconds: f64,
    intent: String,
    args: Value,
    skill: Option<String>,
    expect: String,
    protocol: String,
    port: Option<u16>,
    hub_toml: String,
    echo_event: bool,
    echo_list: bool,
    confirm: bool,
}

fn parse_options() -> Options {
    let mut o = Options {
        broker: "embedded".into(),
        responder: "hub".into(),
        sats: 1,
        inflight: 1,
        seconds: 5.0,
        intent: "system.cancel".into(),
        args: json!({}),
        skill: None,
        expect: "ok".into(),
        protocol: "native".into(),
        port: None,
        hub_toml: String::new(),
        echo_event: false,
        echo_list: false,
        confirm: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--broker" => o.broker = value(),
            "--responder" => o.responder = value(),
            "--sats" => {
                o.sats = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--sats is a number"))
            }
            "--inflight" => {
                o.inflight = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--inflight is a number"))
            }
            "--seconds" => {
                o.seconds = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--seconds is a number"))
            }
            "--intent" => o.intent = value(),
            "--args" => {
                o.args = serde_json::from_str(&value()).unwrap_or_else(|_| usage("--args is JSON"))
            }
            "--skill" => {
                let skill = value();
                o.intent = skill.clone();
                o.skill = Some(skill);
            }
            "--expect" => o.expect = value(),
            "--protocol" => o.protocol = value(),
            "--hub-toml" => o.hub_toml = value(),
            "--echo-event" => o.echo_event = true,
            "--echo-timers" => {
                o.echo_event = true;
                o.echo_list = true;
            }
            "--confirm" => o.confirm = true,
            "--port" => {
                o.port = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--port is a port number")),
                )
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if !["embedded", "mosquitto", "external"].contains(&o.broker.as_str())
        || !["hub", "echo", "none"].contains(&o.responder.as_str())
        || !["native", "hermes"].contains(&o.protocol.as_str())
    {
        usage(
            "--broker is embedded|mosquitto|external, --responder is hub|echo|none, \
             --protocol is native|hermes",
        );
    }
    if (o.broker == "external") != o.port.is_some() {
        usage("--port goes with --broker external, and only with it");
    }
    if o.confirm {
        if o.protocol != "native" || o.responder != "hub" {
            usage("--confirm needs the hub and the native protocol");
        }
        // The intent asks first; each satellite answers yes at once.
        o.hub_toml
            .push_str(&format!("\n[confirm]\nskills = [\"{}\"]\n", o.intent));
    }
    o
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("hark-load: {problem}");
    }
    eprintln!(
        "usage: hark-load [--broker embedded|mosquitto|external] [--port N] \
         [--responder hub|echo|none] [--sats N] \
         [--inflight K] [--seconds S] [--intent NAME] [--args JSON] [--skill dice|spin] \
         [--expect ok|timeout] [--protocol native|hermes] [--hub-toml TOML] [--echo-event|--echo-timers] \
         [--confirm]"
    );
    std::process::exit(2)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Mosquitto(Child, std::path::PathBuf);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn start_mosquitto(port: u16) -> Mosquitto {
    let conf = std::env::temp_dir().join(format!("hark-load-mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nmax_queued_messages 100000\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start mosquitto ({e}); apt-get install mosquitto"));
    wait_for_port(port);
    Mosquitto(child, conf)
}

fn client(port: u16, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Answers every intent at once, on its own thread like the hub; with
/// `with_event`, publishes an event before each reply, as `timer.set` does
/// (`timer_started`): the floor for a request that answers with an event.
fn start_echo(port: u16, with_event: bool, with_list: bool) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, mut eventloop) = client(port, "hark-load-echo");
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in ["hark/intent/+", "hermes/intent/#"] {
                            client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic.starts_with("hermes/") => {
                        let session = serde_json::from_slice::<Value>(&p.payload)
                            .ok()
                            .and_then(|v| v.get("sessionId").cloned())
                            .unwrap_or(Value::Null);
                        let end = json!({"sessionId": session, "text": null, "customData": null});
                        let client = client.clone();
                        tokio::spawn(async move {
                            let _ = client
                                .publish(
                                    "hermes/dialogueManager/endSession",
                                    QoS::AtLeastOnce,
                                    false,
                                    end.to_string(),
                                )
                                .await;
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let sat = p.topic.rsplit('/').next().unwrap_or_default().to_string();
                        let id = serde_json::from_slice::<Value>(&p.payload)
                            .ok()
                            .and_then(|v| v.get("id").cloned())
                            .unwrap_or(Value::Null);
                        let reply = json!({"id": id, "status": "ok"}).to_string();
                        let client = client.clone();
                        tokio::spawn(async move {
                            if with_event {
                                let event = json!({"event": "timer_started", "timer_id": "t-1"});
                                let _ = client
                                    .publish(
                                        format!("hark/event/{sat}"),
                                        QoS::AtLeastOnce,
                                        false,
                                        event.to_string(),
                                    )
                                    .await;
                            }
                            if with_list {
                                let list = json!([{"id": "t-1", "label": null, "state": "running",
                                    "total_s": 3600, "remaining_s": 3600}]);
                                let _ = client
                                    .publish(
                                        format!("hark/timers/{sat}"),
                                        QoS::AtLeastOnce,
                                        true,
                                        list.to_string(),
                                    )
                                    .await;
                            }
                            let _ = client
                                .publish(
                                    format!("hark/reply/{sat}"),
                                    QoS::AtLeastOnce,
                                    false,
                                    reply,
                                )
                                .await;
                        });
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("echo: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    });
}

/// Installs the `--skill` fixture into `<state>/skills`; returns the TOML it needs.
fn install_skill(state: &std::path::Path, skill: &str) -> String {
    let example = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "../skill-sdk/examples/target/wasm32-unknown-unknown/release/{name}.wasm"
        ));
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the example skills first (./test.sh does)",
                path.display()
            )
        })
    };
    let mut permissions = vec!["log".to_string()];
    let module = match skill {
        "dice" => example("dice"),
        "weather" => {
            // The SDK's weather example against a forecast server on
            // loopback (plain HTTP: the figure is the brokering, not TLS).
            let port = serve_forecast();
            let url = format!("http://127.0.0.1:{port}/v1/forecast?latitude=52.52&longitude=13.41");
            std::fs::create_dir_all(state).unwrap();
            std::fs::write(
                state.join("secrets.toml"),
                format!("weather_url = \"{url}\"\n"),
            )
            .unwrap();
            permissions = vec![
                format!("net.http:http://127.0.0.1:{port}"),
                "secrets.read:weather_url".to_string(),
                "log".to_string(),
            ];
            example("weather")
        }
        "spin" => {
            let wat = r#"(module (memory (export "memory") 1)
                (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
                (func (export "hark_handle") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"#;
            wat::parse_str(wat).unwrap()
        }
        other => usage(&format!(
            "--skill {other}: only dice, weather and spin are built in"
        )),
    };
    let dir = state.join("skills").join(skill);
    std::fs::create_dir_all(&dir).unwrap();
    let sha: String = sha2::Sha256::digest(&module)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = json!({
        "name": skill, "version": "1.0.0", "abi": 1, "entrypoint": "skill.wasm", "sha256": sha,
        "args_schema": {"type": "object"}, "permissions": permissions,
        "trusted": skill == "weather"
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("skill.wasm"), module).unwrap();
    format!(
        "tier = \"convenient\"\n[skills]\ndir = \"{}\"\n",
        state.join("skills").display()
    )
}

/// A forecast server on loopback for `--skill weather`: one answer per
/// connection, the shape of Open-Meteo's. Returns its port.
fn serve_forecast() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = r#"{"current":{"temperature_2m":3.4,"wind_speed_10m":12.0},"current_units":{"temperature_2m":"°C","wind_speed_10m":"km/h"}}"#;
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = sock.set_nodelay(true);
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = write!(
                    sock,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn start_hub(
    broker_line: String,
    skill: Option<&str>,
    hermes: bool,
    extra: &str,
) -> std::path::PathBuf {
    let state = std::env::temp_dir().join(format!("hark-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let skill_toml = skill.map(|s| install_skill(&state, s)).unwrap_or_default();
    // Top-level keys must come before the first table.
    let (top, tables) = skill_toml
        .split_once("[skills]")
        .map_or((String::new(), String::new()), |(t, rest)| {
            (t.to_string(), format!("[skills]{rest}"))
        });
    let hermes = if hermes {
        "[hermes]\nenabled = true\n"
    } else {
        ""
    };
    let text = format!(
        "{top}state_dir = \"{}\"\n[mqtt]\n{broker_line}\n[audio]\nbackend = \"null\"\n{tables}{hermes}\n{extra}\n",
        state.display()
    );
    let config = hark_hub::Config::from_toml(&text, std::path::Path::new("load.toml")).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        if let Err(e) = rt.block_on(hark_hub::run(config, std::future::pending())) {
            eprintln!("hub: {e}");
            std::process::exit(1);
        }
    });
    state
}

/// One satellite keeping `inflight` requests outstanding until `stop`.
async fn satellite(
    port: u16,
    n: usize,
    o: Options,
    record_from: Instant,
    stop: Instant,
    samples: Arc<Mutex<Vec<u32>>>,
    asked: Arc<Mutex<Vec<u32>>>,
) {
    let name = format!("load-{n}");
    let mut asked_local = Vec::new();
    let (client, mut eventloop) =
        client(port, &format!("hark-load-sat-{n}-{}", std::process::id()));
    let mut sent: std::collections::HashMap<String, Instant> = Default::default();
    let mut next = 0u64;
    let mut local = Vec::new();
    let send = |client: &AsyncClient,
                next: &mut u64,
                sent: &mut std::collections::HashMap<String, Instant>| {
        *next += 1;
        let id = format!("{name}-{next}");
        // `--intent a,b` takes turns; `--args` then is one object per intent.
        let intents: Vec<&str> = o.intent.split(',').collect();
        let turn = (*next as usize - 1) % intents.len();
        let args = match (&o.args, intents.len()) {
            (Value::Array(each), n) if n > 1 => each.get(turn).cloned().unwrap_or(json!({})),
            (args, _) => args.clone(),
        };
        let payload = json!({"id": id, "intent": intents[turn], "args": args}).to_string();
        sent.insert(id, Instant::now());
        client
            .try_publish(
                format!("hark/intent/{name}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .unwrap();
    };
    loop {
        let event = match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => panic!("satellite {name}: {e}"),
            Err(_) => panic!("satellite {name}: no traffic for 5 s; is the responder up?"),
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe(format!("hark/reply/{name}"), QoS::AtLeastOnce)
                    .await
                    .unwrap();
            }
            Event::Incoming(Packet::SubAck(_)) => {
                for _ in 0..o.inflight {
                    send(&client, &mut next, &mut sent);
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let reply: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                let Some(started) = reply["id"].as_str().and_then(|id| sent.remove(id)) else {
                    continue;
                };
                if o.confirm && reply["status"] == "confirm" {
                    // The first leg: asked. The second starts with the yes.
                    let now = Instant::now();
                    if started >= record_from {
                        asked_local.push(micros(now.duration_since(started)));
                    }
                    let id = reply["id"].as_str().unwrap_or_default().to_string();
                    let yes = json!({"id": format!("{id}-yes"), "intent": "system.confirm",
                        "args": {"answer": "yes", "token": reply["confirm"]["token"]}});
                    sent.insert(id, now);
                    client
                        .try_publish(
                            format!("hark/intent/{name}"),
                            QoS::AtLeastOnce,
                            false,
                            yes.to_string(),
                        )
                        .unwrap();
                    continue;
                }
                if reply["status"] != o.expect.as_str() {
                    panic!("satellite {name}: expected {}, got {reply}", o.expect);
                }
                let now = Instant::now();
                if started >= record_from {
                    local.push(
                        now.duration_since(started)
                            .as_micros()
                            .min(u32::MAX as u128) as u32,
                    );
                }
                if now < stop {
                    send(&client, &mut next, &mut sent);
                } else if sent.is_empty() {
                    break;
                }
            }
            _ => {}
        }
    }
    samples.lock().unwrap().extend(local);
    asked.lock().unwrap().extend(asked_local);
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// Rhasspy's base for `--protocol hermes`: keeps `inflight` sessions open
/// on each of `sats` sites, timing each NluIntent to its endSession.
async fn rhasspy_base(
    port: u16,
    o: Options,
    record_from: Instant,
    stop: Instant,
    samples: Arc<Mutex<Vec<u32>>>,
) {
    use hark_hub::protocols::hermes::nlu::{NluIntent, Slot};
    let (client, mut eventloop) =
        client(port, &format!("hark-load-rhasspy-{}", std::process::id()));
    let slots: Vec<Slot> = o
        .args
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| Slot {
            entity: Some(name.clone()),
            slot_name: Some(name.clone()),
            value: json!({"kind": "Unknown", "value": value})
                .as_object()
                .unwrap()
                .clone(),
            raw_value: None,
        })
        .collect();
    // session id -> (site, sent at)
    let mut sent: std::collections::HashMap<String, (usize, Instant)> = Default::default();
    let mut next = 0u64;
    let mut local = Vec::new();
    let send = |site: usize,
                next: &mut u64,
                sent: &mut std::collections::HashMap<String, (usize, Instant)>| {
        *next += 1;
        let session = format!("load-{site}-{next}");
        let nlu = NluIntent {
            input: Some("stop".into()),
            intent_name: o.intent.clone(),
            confidence_score: Some(1.0),
            slots: slots.clone(),
            site_id: format!("load-{site}"),
            session_id: Some(session.clone()),
            custom_data: Value::Null,
        };
        sent.insert(session, (site, Instant::now()));
        client
            .try_publish(
                format!("hermes/intent/{}", o.intent),
                QoS::AtLeastOnce,
                false,
                nlu.to_value().to_string(),
            )
            .unwrap();
    };
    loop {
        let event = match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => panic!("rhasspy: {e}"),
            Err(_) => panic!("rhasspy: no traffic for 5 s; is the responder up?"),
        };
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                client
                    .subscribe("hermes/dialogueManager/endSession", QoS::AtLeastOnce)
                    .await
                    .unwrap();
            }
            Event::Incoming(Packet::SubAck(_)) => {
                for site in 0..o.sats {
                    for _ in 0..o.inflight {
                        send(site, &mut next, &mut sent);
                    }
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                let end: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                let Some((site, started)) = end["sessionId"].as_str().and_then(|s| sent.remove(s))
                else {
                    continue;
                };
                let said = end["text"].as_str().unwrap_or_default();
                if o.expect == "ok" && said.starts_with("Sorry") {
                    panic!("rhasspy: expected success, got {end}");
                }
                let now = Instant::now();
                if started >= record_from {
                    local.push(
                        now.duration_since(started)
                            .as_micros()
                            .min(u32::MAX as u128) as u32,
                    );
                }
                if now < stop {
                    send(site, &mut next, &mut sent);
                } else if sent.is_empty() {
                    break;
                }
            }
            _ => {}
        }
    }
    samples.lock().unwrap().extend(local);
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let o = parse_options();
    let port = o.port.unwrap_or_else(free_port);
    let mosquitto = (o.broker == "mosquitto").then(|| start_mosquitto(port));
    let mut state = None;
    match (o.broker.as_str(), o.responder.as_str()) {
        ("embedded", "hub") => {
            state = Some(start_hub(
                format!("listen = \"127.0.0.1:{port}\""),
                o.skill.as_deref(),
                o.protocol == "hermes",
                &o.hub_toml,
            ))
        }
        ("embedded", "echo" | "none") => {
            let (_, open_files) = hark_hub::os::raise_open_files_limit().unwrap();
            // The broker alone, open to every client (`mqtt.auth = "off"`).
            use hark_hub::satellites::gate;
            let access = gate::Access::new(gate::Settings {
                prefix: "hark",
                admin_secret: "load-generator-secret".into(),
                configured: None,
                mode: gate::AuthMode::Off,
                exposed: false,
                registry: Default::default(),
            });
            let settings = hark_hub::broker::Settings {
                listen: ([127, 0, 0, 1], port).into(),
                tls: None,
                max_payload: 65536,
                open_files,
            };
            hark_hub::broker::start(&settings, Arc::new(access)).unwrap();
            if o.responder == "echo" {
                start_echo(port, o.echo_event, o.echo_list);
            }
        }
        (_, "hub") => {
            state = Some(start_hub(
                format!("url = \"mqtt://127.0.0.1:{port}\""),
                o.skill.as_deref(),
                o.protocol == "hermes",
                &o.hub_toml,
            ))
        }
        (_, "echo") => start_echo(port, o.echo_event, o.echo_list),
        _ => {}
    }
    wait_for_port(port);
    std::thread::sleep(Duration::from_millis(300));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let warmup = Duration::from_secs(1);
    let begin = Instant::now();
    let record_from = begin + warmup;
    let stop = record_from + Duration::from_secs_f64(o.seconds);
    rt.block_on(async {
        if o.protocol == "hermes" {
            rhasspy_base(port, o.clone(), record_from, stop, samples.clone()).await;
            return;
        }
        let mut tasks = Vec::new();
        for n in 0..o.sats {
            tasks.push(tokio::spawn(satellite(
                port,
                n,
                o.clone(),
                record_from,
                stop,
                samples.clone(),
                asked.clone(),
            )));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let measured = Instant::now().duration_since(record_from).as_secs_f64();
    let mut s = samples.lock().unwrap().clone();
    s.sort_unstable();
    println!(
        "protocol={} broker={} responder={} intent={} sats={} inflight={} requests={} \
         throughput={:.0}/s min={:.3}ms p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
        o.protocol,
        o.broker,
        o.responder,
        o.intent,
        o.sats,
        o.inflight,
        s.len(),
        s.len() as f64 / measured,
        percentile(&s, 0.0),
        percentile(&s, 0.50),
        percentile(&s, 0.90),
        percentile(&s, 0.99),
        percentile(&s, 1.0),
    );
    if o.confirm {
        // The line above timed the second leg (the yes to the call's reply).
        let mut a = asked.lock().unwrap().clone();
        a.sort_unstable();
        println!(
            "  first leg (intent to its question): requests={} min={:.3}ms p50={:.3}ms \
             p90={:.3}ms p99={:.3}ms max={:.3}ms; the line above is the second (yes to the \
             call's reply)",
            a.len(),
            percentile(&a, 0.0),
            percentile(&a, 0.50),
            percentile(&a, 0.90),
            percentile(&a, 0.99),
            percentile(&a, 1.0),
        );
    }
    if let Some(state) = state {
        let _ = std::fs::remove_dir_all(state);
    }
    // The hub and echo threads never return; exit without joining them,
    // but stop mosquitto first.
    drop(mosquitto);
    std::process::exit(0);
}
