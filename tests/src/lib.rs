//! Helpers for Hark's integration tests: real brokers (the embedded rumqttd
//! and a mosquitto process) on free ports, a real hub on its own thread or as
//! the `hark` binary, and a satellite client that speaks the native protocol.
//!
//! Missing tools fail the test with the command that provides them; nothing
//! here skips.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod hermes;
pub mod http_server;
pub mod python;
pub mod skills;
pub mod wyoming;

use hark_hub::Config;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long a test waits for something that should take milliseconds. Long,
/// because CI machines are slow; tests assert behaviour, not speed.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// SIGHUP to this process, where a [`Hub`] under test runs: it reads its
/// config file again. (nextest gives every test a process of its own.)
pub fn sighup_this_process() {
    // SAFETY: kill only sends a signal, to this very process.
    let sent = unsafe { libc::kill(std::process::id() as i32, libc::SIGHUP) };
    assert_eq!(sent, 0, "kill -HUP: {}", std::io::Error::last_os_error());
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hark-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // HARK_KEEP_TEMP=1 keeps a failed test's files (a hub's hark.log) to read.
        if std::env::var_os("HARK_KEEP_TEMP").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real mosquitto on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Mosquitto::start_on(free_port())
    }

    /// A mosquitto on `port` (e.g. to restart one where it was).
    pub fn start_on(port: u16) -> Mosquitto {
        Mosquitto::start_with(port, "allow_anonymous true\n")
    }

    /// A mosquitto on `port` with `auth` as its access lines (e.g. what
    /// `hark satellite acl --mosquitto` prints).
    pub fn start_with(port: u16, auth: &str) -> Mosquitto {
        let dir = TempDir::new("mosquitto");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n{auth}set_tcp_nodelay true\n\
                 persistence false\nmax_queued_messages 10000\n"
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto: {e}"));
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "mosquitto");
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGHUP: mosquitto reads its password and ACL files again.
    pub fn reload(&self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "mosquitto is not installed; these tests need a real broker. Install it with \
         `apt-get install mosquitto` (the README's test command, ./test.sh, does this)"
    );
}

/// Runs `hark <args>` in `dir`, blind to any `HARK_CONFIG` of the caller.
pub fn run_hark(dir: &Path, args: &[&str]) -> Output {
    Command::new(hark_binary())
        .args(args)
        .env_remove("HARK_CONFIG")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A command's output as text, whatever its bytes.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `hark` binary built beside this test executable.
///
/// Cross-compiled tests run under an emulator (qemu-user; scripts/arm.sh),
/// and the kernel cannot start a foreign binary by itself. There,
/// `HARK_TEST_RUNNER` names the emulator command (`qemu-aarch64`), and this
/// returns a script beside the binary that runs it through the emulator, so
/// tests spawn `hark` the same way everywhere.
pub fn hark_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/hark
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("hark"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing; build it first with `cargo build -p hark-hub --bins` \
         (the README's test command, ./test.sh, does this)",
        bin.display()
    );
    match std::env::var("HARK_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => through_runner(&bin, &runner),
        _ => bin,
    }
}

/// `<bin>-via-runner`: `exec <runner> <bin> "$@"`, written atomically, as
/// tests in parallel processes may ask for it at once.
fn through_runner(bin: &Path, runner: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = bin.with_file_name("hark-via-runner");
    let text = format!("#!/bin/sh\nexec {runner} '{}' \"$@\"\n", bin.display());
    if std::fs::read_to_string(&script).ok().as_deref() != Some(text.as_str()) {
        let temp = bin.with_file_name(format!("hark-via-runner.{}", std::process::id()));
        std::fs::write(&temp, &text).unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&temp, &script).unwrap();
    }
    script
}

/// Which broker a hub under test uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BrokerKind {
    #[default]
    Embedded,
    Mosquitto,
}

/// How to set up a hub under test, beyond its own state dir and broker.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub broker: BrokerKind,
    /// TOML before the first table (`tier = ...`).
    pub top: String,
    /// Extra `[table]`s after the generated ones.
    pub tables: String,
    pub media_dir: Option<PathBuf>,
}

/// A hub config for tests: its own state dir, the given broker line, no
/// sound card, and what `setup` adds.
pub fn test_config(state: &Path, broker: &str, setup: &Setup) -> String {
    let media = setup
        .media_dir
        .as_ref()
        .map(|d| format!("media_dir = \"{}\"\n", d.display()))
        .unwrap_or_default();
    format!(
        "state_dir = \"{}\"\n{}\n[mqtt]\n{broker}\n[audio]\nbackend = \"null\"\n{media}{}\n",
        state.display(),
        setup.top,
        setup.tables
    )
}

/// A hub running in this process on its own thread and runtime.
#[derive(Debug)]
pub struct Hub {
    pub port: u16,
    pub prefix: String,
    pub state: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    _mosquitto: Option<Mosquitto>,
}

impl Hub {
    /// Starts a hub with the embedded broker and waits until it is online.
    pub fn start(state: &Path) -> Hub {
        Hub::start_with(state, &Setup::default())
    }

    pub fn start_with(state: &Path, setup: &Setup) -> Hub {
        let (port, mosquitto, broker) = match setup.broker {
            BrokerKind::Embedded => {
                let port = free_port();
                (port, None, format!("listen = \"127.0.0.1:{port}\""))
            }
            BrokerKind::Mosquitto => {
                let m = Mosquitto::start();
                let url = m.url();
                (m.port, Some(m), format!("url = \"{url}\""))
            }
        };
        let text = test_config(state, &broker, setup);
        // On disk, as `hark run` reads it: a SIGHUP reads it again.
        std::fs::create_dir_all(state).unwrap();
        let path = state.join("hark.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("test config: {e}\n{text}"));
        let prefix = config.mqtt.prefix.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(hark_hub::run(config, async {
                let _ = rx.await;
            }))
            .map_err(|e| e.to_string())
        });
        let mut hub = Hub {
            port,
            prefix,
            state: state.to_path_buf(),
            shutdown: Some(tx),
            thread: Some(thread),
            _mosquitto: mosquitto,
        };
        hub.wait_online();
        hub
    }

    fn wait_online(&mut self) {
        if let Err(e) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.watch_status()))
        {
            // Say why the hub is not online when it stopped by itself.
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let result = self.thread.take().unwrap().join();
                panic!("the hub stopped while starting: {result:?}");
            }
            std::panic::resume_unwind(e);
        }
    }

    fn watch_status(&self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut watcher =
                Satellite::connect_as(self.port, &self.prefix, "status-watcher").await;
            watcher
                .subscribe(&format!("{}/hub/status", self.prefix))
                .await;
            let deadline = Instant::now() + PATIENCE;
            loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let Some((_, status)) = watcher.next_message(remaining).await else {
                    panic!("the hub did not come online within {PATIENCE:?}");
                };
                if status["online"] == json!(true) {
                    return;
                }
            }
        });
    }

    /// SIGTERM's equivalent: drain, flush, return.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown.take().map(|tx| tx.send(()));
        self.thread.take().unwrap().join().unwrap()
    }

    pub fn audit_path(&self) -> PathBuf {
        self.state.join("audit.jsonl")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Blocks until the retained status on the broker at `port` says online.
pub fn wait_online(port: u16, prefix: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + PATIENCE;
        // The broker may itself be starting (embedded in a hub process).
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "the broker");
        let mut watcher = Satellite::connect_as(port, prefix, "status-watcher").await;
        watcher.subscribe(&format!("{prefix}/hub/status")).await;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some((_, status)) = watcher.next_message(remaining).await else {
                panic!("the hub did not come online within {PATIENCE:?}");
            };
            if status["online"] == json!(true) {
                return status;
            }
        }
    })
}

/// The CONNACK a client gets for this login and client id: `Ok` if the
/// broker accepted it, else the refusal's code, as words.
pub async fn try_login(
    port: u16,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Result<(), String> {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((username, password)) = login {
        options.set_credentials(username, password);
    }
    let (_client, mut eventloop) = AsyncClient::new(options, 4);
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    return match ack.code {
                        rumqttc::ConnectReturnCode::Success => Ok(()),
                        code => Err(format!("{code:?}")),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    answer.unwrap_or_else(|_| panic!("no CONNACK within {PATIENCE:?}"))
}

/// The `hark` binary running as a separate process, as a user runs it.
#[derive(Debug)]
pub struct HubProcess {
    child: Child,
    pub log: PathBuf,
}

impl HubProcess {
    /// `hark run --config <config>`, logging to `<dir>/hark.log`.
    pub fn spawn(dir: &Path, config: &Path) -> HubProcess {
        let mut command = Command::new(hark_binary());
        command.arg("--config").arg(config).arg("run");
        HubProcess::spawn_command(dir, command)
    }

    /// Like [`HubProcess::spawn`], with these environment variables set
    /// (`RUST_LOG`, systemd's `NOTIFY_SOCKET`, ...).
    pub fn spawn_with_env(dir: &Path, config: &Path, env: &[(&str, &str)]) -> HubProcess {
        let mut command = Command::new(hark_binary());
        command.arg("--config").arg(config).arg("run");
        command.envs(env.iter().copied());
        HubProcess::spawn_command(dir, command)
    }

    /// Like [`HubProcess::spawn`], started as systemd and most shells start
    /// services: with a soft limit of `soft` open files (the hard limit
    /// stays as it is).
    pub fn spawn_with_open_files(dir: &Path, config: &Path, soft: u64) -> HubProcess {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""))
            .arg(hark_binary())
            .arg("--config")
            .arg(config)
            .arg("run");
        HubProcess::spawn_command(dir, command)
    }

    fn spawn_command(dir: &Path, mut command: Command) -> HubProcess {
        let log = dir.join("hark.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = command
            .env_remove("HARK_CONFIG")
            .current_dir(dir)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        HubProcess { child, log }
    }

    /// The hub's process id (under qemu-user, the emulator's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/<pid>/status` (`VmHWM`, `VmRSS`, `Threads`) as a number.
    pub fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc/{}/status", self.pid()))
    }

    /// `kill -9`: no draining, no goodbye.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hark did not exit within {PATIENCE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A satellite (or any MQTT client) for tests.
#[derive(Debug)]
pub struct Satellite {
    pub name: String,
    prefix: String,
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    subacks: mpsc::UnboundedReceiver<()>,
    /// Messages received while waiting for another one, oldest first.
    backlog: std::collections::VecDeque<(String, Value)>,
    next_id: u64,
}

impl Satellite {
    /// Connects as satellite `name` and subscribes to its reply and event topics.
    pub async fn connect(port: u16, prefix: &str, name: &str) -> Satellite {
        let mut sat = Satellite::connect_as(port, prefix, name).await;
        sat.subscribe(&format!("{prefix}/reply/{name}")).await;
        sat.subscribe(&format!("{prefix}/event/{name}")).await;
        sat
    }

    /// Connects without subscribing to anything.
    pub async fn connect_as(port: u16, prefix: &str, name: &str) -> Satellite {
        Satellite::connect_with(port, prefix, name, None).await
    }

    /// Connects with `login` (username, password), without subscribing.
    pub async fn connect_with(
        port: u16,
        prefix: &str,
        name: &str,
        login: Option<(&str, &str)>,
    ) -> Satellite {
        static N: AtomicU64 = AtomicU64::new(0);
        let client_id = format!(
            "test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        if let Some((username, password)) = login {
            options.set_credentials(username, password);
        }
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
        Satellite {
            name: name.to_string(),
            prefix: prefix.to_string(),
            client,
            messages,
            subacks,
            backlog: Default::default(),
            next_id: 0,
        }
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

    /// Publishes raw bytes on `topic`.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// Publishes `body` retained on `topic`.
    pub async fn publish_retained(&self, topic: &str, body: Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, body.to_string())
            .await
            .unwrap();
    }

    /// Publishes raw bytes as this satellite's intent.
    pub async fn send_raw(&self, payload: impl Into<Vec<u8>>) {
        let topic = format!("{}/intent/{}", self.prefix, self.name);
        self.publish(&topic, payload).await;
    }

    /// Sends `intent` with `args` and returns its reply.
    pub async fn request(&mut self, intent: &str, args: Value) -> Value {
        self.next_id += 1;
        let id = format!("{}-{}", self.name, self.next_id);
        self.send_raw(json!({"id": id, "intent": intent, "args": args}).to_string())
            .await;
        self.reply_for(Some(&id)).await
    }

    /// The next reply with this id (`None`: an id-less reply).
    pub async fn reply_for(&mut self, id: Option<&str>) -> Value {
        let reply_topic = format!("{}/reply/{}", self.prefix, self.name);
        self.wait_for(PATIENCE, |topic, body| {
            topic == reply_topic && body["id"].as_str() == id
        })
        .await
        .unwrap_or_else(|| panic!("no reply to {id:?} for {} within {PATIENCE:?}", self.name))
    }

    /// The next event on this satellite's event topic of kind `event`.
    pub async fn event(&mut self, event: &str, within: Duration) -> Value {
        let event_topic = format!("{}/event/{}", self.prefix, self.name);
        self.wait_for(within, |topic, body| {
            topic == event_topic && body["event"] == event
        })
        .await
        .unwrap_or_else(|| panic!("no {event} event for {} within {within:?}", self.name))
    }

    /// The first message (kept from earlier, or new) that `wanted` accepts;
    /// the others stay in the backlog for later waits.
    pub async fn wait_for(
        &mut self,
        within: Duration,
        wanted: impl Fn(&str, &Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(|(t, b)| wanted(t, b)) {
            return self.backlog.remove(i).map(|(_, b)| b);
        }
        let deadline = Instant::now() + within;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (topic, body) = self.receive(remaining).await?;
            if wanted(&topic, &body) {
                return Some(body);
            }
            self.backlog.push_back((topic, body));
        }
    }

    /// The next message on any subscribed topic, parsed as JSON (or `null`).
    pub async fn next_message(&mut self, within: Duration) -> Option<(String, Value)> {
        if let Some(message) = self.backlog.pop_front() {
            return Some(message);
        }
        self.receive(within).await
    }

    async fn receive(&mut self, within: Duration) -> Option<(String, Value)> {
        let (topic, payload) = tokio::time::timeout(within, self.messages.recv())
            .await
            .ok()??;
        Some((
            topic,
            serde_json::from_slice(&payload).unwrap_or(Value::Null),
        ))
    }

    /// Messages already received, without waiting.
    pub fn drain(&mut self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = self.backlog.drain(..).collect();
        while let Ok((topic, payload)) = self.messages.try_recv() {
            out.push((
                topic,
                serde_json::from_slice(&payload).unwrap_or(Value::Null),
            ));
        }
        out
    }
}

/// Whether the tests run as root (CI does): root reads every file, so a
/// test of a permission error drops to `nobody` first.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// Reads the audit log as JSON values.
pub fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A runtime for a test's MQTT clients, on the test's own thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it,
/// made with the `openssl` command in `dir`: `ca.pem`, `server.pem`, `server.key`.
#[derive(Debug)]
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path, name: &str) -> Certs {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run openssl ({e}); the TLS tests make their certificates with it. \
                         Install it with `apt-get install openssl` (./test.sh does this)"
                    )
                });
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                text(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=Hark test CA"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&ca);
        let mut csr = vec!["req", "-new", "-subj", "/CN=localhost"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(&csr);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        // mosquitto, started as root, reads its key as the `mosquitto` user: a
        // throwaway test key may be readable by all.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// The hub's retained status (`<prefix>/hub/status`), as a client sees it.
pub async fn hub_status(hub: &Hub) -> Value {
    let mut watcher = Satellite::connect_as(hub.port, &hub.prefix, "watch").await;
    watcher
        .subscribe(&format!("{}/hub/status", hub.prefix))
        .await;
    watcher
        .next_message(PATIENCE)
        .await
        .expect("a retained status")
        .1
}

/// Skill `name`'s entry in a status from [`hub_status`].
pub fn skill_entry(status: &Value, name: &str) -> Value {
    status["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not in the status: {status}"))
}
