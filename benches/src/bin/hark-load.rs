//! hark-load: the end-to-end load generator. Satellites send intents over a
//! real broker and time each round trip to its reply.
//!
//! ```text
//! cargo run --release -p hark-benches --bin hark-load -- \
//!     [--broker embedded|mosquitto] [--responder hub|echo] \
//!     [--sats 1] [--inflight 1] [--seconds 5] [--intent system.cancel] \
//!     [--skill dice|spin] [--expect ok|timeout]
//! ```
//!
//! `--skill` installs a WebAssembly skill (the SDK's `dice`, or `spin`, an
//! infinite loop) and runs the hub in the convenient tier; `--intent`
//! defaults to that skill. `--expect timeout` measures how long the hub
//! takes to stop a runaway call.
//!
//! `--responder echo` replaces the hub with a minimal client that answers
//! every intent at once: the floor that broker and network alone impose.

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
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if !["embedded", "mosquitto"].contains(&o.broker.as_str())
        || !["hub", "echo"].contains(&o.responder.as_str())
    {
        usage("--broker is embedded|mosquitto, --responder is hub|echo");
    }
    o
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("hark-load: {problem}");
    }
    eprintln!(
        "usage: hark-load [--broker embedded|mosquitto] [--responder hub|echo] [--sats N] \
         [--inflight K] [--seconds S] [--intent NAME] [--args JSON] [--skill dice|spin] \
         [--expect ok|timeout]"
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

/// Answers every intent at once, on its own thread like the hub.
fn start_echo(port: u16) {
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
                        client
                            .subscribe("hark/intent/+", QoS::AtLeastOnce)
                            .await
                            .unwrap();
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
    let module = match skill {
        "dice" => {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../skill-sdk/examples/target/wasm32-unknown-unknown/release/dice.wasm");
            std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; build the example skills first (./test.sh does)",
                    path.display()
                )
            })
        }
        "spin" => {
            let wat = r#"(module (memory (export "memory") 1)
                (func (export "hark_alloc") (param i32) (result i32) (i32.const 1024))
                (func (export "hark_handle") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"#;
            wat::parse_str(wat).unwrap()
        }
        other => usage(&format!("--skill {other}: only dice and spin are built in")),
    };
    let dir = state.join("skills").join(skill);
    std::fs::create_dir_all(&dir).unwrap();
    let sha: String = sha2::Sha256::digest(&module)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = json!({
        "name": skill, "version": "1.0.0", "abi": 1, "entrypoint": "skill.wasm", "sha256": sha,
        "args_schema": {"type": "object"}, "permissions": ["log"]
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("skill.wasm"), module).unwrap();
    format!(
        "tier = \"convenient\"\n[skills]\ndir = \"{}\"\n",
        state.join("skills").display()
    )
}

fn start_hub(broker_line: String, skill: Option<&str>) -> std::path::PathBuf {
    let state = std::env::temp_dir().join(format!("hark-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let skill_toml = skill.map(|s| install_skill(&state, s)).unwrap_or_default();
    // Top-level keys must come before the first table.
    let (top, tables) = skill_toml
        .split_once("[skills]")
        .map_or((String::new(), String::new()), |(t, rest)| {
            (t.to_string(), format!("[skills]{rest}"))
        });
    let text = format!(
        "{top}state_dir = \"{}\"\n[mqtt]\n{broker_line}\n[audio]\nbackend = \"null\"\n{tables}",
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
) {
    let name = format!("load-{n}");
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
        let payload = json!({"id": id, "intent": o.intent, "args": o.args}).to_string();
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
    let port = free_port();
    let mosquitto = (o.broker == "mosquitto").then(|| start_mosquitto(port));
    let mut state = None;
    match (o.broker.as_str(), o.responder.as_str()) {
        ("embedded", "hub") => {
            state = Some(start_hub(
                format!("listen = \"127.0.0.1:{port}\""),
                o.skill.as_deref(),
            ))
        }
        ("embedded", "echo") => {
            hark_hub::broker::start(([127, 0, 0, 1], port).into(), 65536, None).unwrap();
            start_echo(port);
        }
        (_, "hub") => {
            state = Some(start_hub(
                format!("url = \"mqtt://127.0.0.1:{port}\""),
                o.skill.as_deref(),
            ))
        }
        _ => start_echo(port),
    }
    wait_for_port(port);
    std::thread::sleep(Duration::from_millis(300));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let warmup = Duration::from_secs(1);
    let begin = Instant::now();
    let record_from = begin + warmup;
    let stop = record_from + Duration::from_secs_f64(o.seconds);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..o.sats {
            tasks.push(tokio::spawn(satellite(
                port,
                n,
                o.clone(),
                record_from,
                stop,
                samples.clone(),
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
        "broker={} responder={} intent={} sats={} inflight={} requests={} \
         throughput={:.0}/s min={:.3}ms p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.3}ms",
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
    if let Some(state) = state {
        let _ = std::fs::remove_dir_all(state);
    }
    // The hub and echo threads never return; exit without joining them,
    // but stop mosquitto first.
    drop(mosquitto);
    std::process::exit(0);
}
