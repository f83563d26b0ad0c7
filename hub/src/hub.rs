//! Assembly and the main loop: start the broker (if embedded), open the audit
//! log, register skills, connect, and serve until the shutdown future
//! resolves; then drain in-flight requests, record the stop and publish a
//! signed checkpoint that covers it, publish the offline status, flush the
//! audit log and return. The audit service syncs the log, signs checkpoints
//! and raises the alarm on a gap, off the loop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_skill_sdk::ErrorCode;
use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::admission::Admission;
use crate::audio::AudioOut;
use crate::audit::{self, Audit, AuditLog};
use crate::config::{Broker, Config};
use crate::confirm::Confirmations;
use crate::dispatch::Dispatcher;
use crate::effects::secrets::SecretStore;
use crate::effects::{Env, Services};
use crate::events::{Message, Outbox};
use crate::fair::Refusal;
use crate::inflight::InFlight;
use crate::mqtt::{self, Backoff};
use crate::playback::{AlarmRinger, PlaybackService};
use crate::protocols::native::Topics;
use crate::protocols::{self, Accepted, Adapter, Inbound, Job};
use crate::registry::Registry;
use crate::request::Failure;
use crate::timers::TimerService;

pub use crate::admission::MAX_CONCURRENT_REQUESTS;
/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests an adapter with a socket of its own may have on their way to
/// admission (each connection waits for its answer before the next).
const ADMIT_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Timers(#[from] crate::timers::TimerStoreError),
    #[error(transparent)]
    Skill(#[from] crate::registry::LoadError),
    #[error(transparent)]
    Audio(#[from] crate::audio::AudioError),
    #[error(transparent)]
    Satellites(#[from] crate::satellites::RegistryError),
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("cannot start the skill workers: {0}")]
    Workers(std::io::Error),
    #[error("{what}: cannot listen on {addr}: {source}")]
    Listen {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "mqtt.url is empty, so the hub would start its embedded broker, but this build has no \
         embedded broker (feature embedded-broker); set mqtt.url to your broker"
    )]
    NoEmbeddedBroker,
}

/// Everything the hub is made of except its network: what a bench or a
/// test can drive without a broker.
#[derive(Debug)]
pub struct Assembly {
    pub dispatcher: Arc<Dispatcher>,
    pub outbox: Outbox,
    pub outbox_rx: tokio::sync::mpsc::Receiver<Message>,
    pub timers: Arc<TimerService>,
    pub topics: Topics,
    pub engine: wasmi::Engine,
    pub fuel_per_ms: u64,
    /// The protocols configured on ([`protocols::ALL`]).
    pub adapters: Vec<Arc<dyn Adapter>>,
    /// Requests from adapters with sockets of their own, for admission.
    pub admit_rx: tokio::sync::mpsc::Receiver<Inbound>,
}

/// Opens the state dir, the audit log, the speaker and the timers, loads
/// the skills, starts the sandbox's workers (not in the paranoid tier) and
/// the protocol adapters. Records the start and every skill's admission.
/// Must run inside the tokio runtime the hub will use.
pub fn assemble(config: &Config) -> Result<Assembly, HubError> {
    crate::fsutil::create_private_dir(&config.state_dir).map_err(|source| HubError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let key =
        audit::checkpoint::load_or_create_key(&audit::checkpoint::hub_key_path(&config.state_dir))?;
    audit::checkpoint::publish_public_key(
        &audit::checkpoint::hub_public_key_path(&config.state_dir),
        &key,
    )?;
    let audit_log = Audit::with_checkpoints(
        AuditLog::open_signed(&config.audit_path, Some(key))?
            .with_max_bytes(config.audit_max_bytes),
        config.audit_checkpoint_every,
    );
    let topics = Topics::new(&config.mqtt.prefix);
    let (outbox, outbox_rx) = Outbox::channel(1024);

    let audio = AudioOut::open(config.audio.backend)?;
    let playback = PlaybackService::new(audio, config.audio.media_dir.clone(), outbox.clone());
    let timers = TimerService::open(
        &config.state_dir,
        config.timers,
        outbox.clone(),
        Box::new(AlarmRinger {
            playback: playback.clone(),
            ring_for: config.audio.alarm_max,
        }),
        audit_log.clone(),
    )?;
    let env = Arc::new(Env {
        tier: crate::policy::TierCell::new(config.tier),
        audit: audit_log.clone(),
        services: Services {
            timers: timers.clone(),
            playback,
            inflight: Arc::new(InFlight::default()),
            confirmations: Arc::new(Confirmations::new(
                &config.confirm,
                audit_log.clone(),
                outbox.clone(),
            )),
            outbox: outbox.clone(),
            topics: topics.clone(),
            secrets: Arc::new(SecretStore::new(config.state_dir.join("secrets.toml"))),
            http: Arc::new(crate::http::Client::new(config.net.ca_certs.clone())),
            metrics: Arc::default(),
        },
    });

    let engine = crate::sandbox::engine();
    let fuel_per_ms = fuel_per_ms(config, &engine);
    let registry = crate::loader::load_registry(config, &engine, fuel_per_ms)?;
    let dispatcher = Arc::new(Dispatcher::new(
        registry,
        env.clone(),
        config.mqtt.max_payload,
        config.skills.timeout,
    ));
    dispatcher.audit(&audit::Record {
        kind: audit::Kind::Start,
        message: Some(format!(
            "hark {} starting, tier {}, {} timers pending, {} fuel/ms",
            env!("CARGO_PKG_VERSION"),
            config.tier,
            timers.len(),
            fuel_per_ms
        )),
        ..Default::default()
    });
    audit_registry(&dispatcher, &dispatcher.registry(), &[]);

    if config.tier != crate::policy::Tier::Paranoid {
        dispatcher
            .start_pool(config.skills.workers, engine.clone())
            .map_err(HubError::Workers)?;
    }
    let (admit, admit_rx) = tokio::sync::mpsc::channel(ADMIT_QUEUE);
    let setup = protocols::Setup {
        config,
        dispatcher: &dispatcher,
        outbox: &outbox,
        admit: &admit,
    };
    let mut adapters = Vec::new();
    for start in protocols::ALL {
        adapters.extend(start(&setup)?);
    }
    Ok(Assembly {
        dispatcher,
        outbox,
        outbox_rx,
        timers,
        topics,
        engine,
        fuel_per_ms,
        adapters,
        admit_rx,
    })
}

/// This board's interpreter speed: from `skills.fuel_per_ms`, else measured
/// now in ~20 ms (not at all in the paranoid tier, which runs no WebAssembly).
pub fn fuel_per_ms(config: &Config, engine: &wasmi::Engine) -> u64 {
    if let Some(fuel) = config.skills.fuel_per_ms {
        return fuel;
    }
    if config.tier == crate::policy::Tier::Paranoid {
        return 0;
    }
    let c = crate::sandbox::calibrate::measure(engine, Duration::from_millis(20));
    tracing::info!(
        fuel_per_ms = c.fuel_per_ms,
        took_ms = c.took.as_millis() as u64,
        "calibrated the interpreter"
    );
    c.fuel_per_ms
}

/// One audit record per skill (loaded or refused) and per broken folder;
/// `notes` are reload messages (a skill kept at its old version).
fn audit_registry(dispatcher: &Dispatcher, registry: &Registry, notes: &[String]) {
    for skill in registry.iter() {
        if skill.kind() == crate::policy::SkillKind::Wasm && !skill.enabled() {
            tracing::warn!(skill = skill.name(), "disabled: {}", skill.admission.reason);
        } else if skill.admission.rule == "tier.convenient.unsigned" {
            tracing::warn!(
                skill = skill.name(),
                "running an unsigned skill (tier convenient: development only)"
            );
        }
        dispatcher.audit(&audit::Record {
            kind: if skill.enabled() {
                audit::Kind::Load
            } else {
                audit::Kind::Refusal
            },
            skill: Some(skill.name().to_string()),
            decision: Some(if skill.enabled() {
                audit::Decision::Allow
            } else {
                audit::Decision::Deny
            }),
            rule: Some(skill.admission.rule.to_string()),
            message: Some(skill.admission.reason.clone()),
            ..Default::default()
        });
    }
    for broken in registry.broken() {
        tracing::warn!(skill = %broken.name, "not loaded: {}", broken.problems);
        dispatcher.audit(&audit::Record {
            kind: audit::Kind::Refusal,
            skill: Some(broken.name.clone()),
            decision: Some(audit::Decision::Deny),
            rule: Some("load.invalid".into()),
            message: Some(broken.problems.clone()),
            ..Default::default()
        });
    }
    for note in notes {
        tracing::warn!("{note}");
        dispatcher.audit(&audit::Record {
            kind: audit::Kind::Refusal,
            rule: Some("load.kept_old_version".into()),
            message: Some(note.clone()),
            ..Default::default()
        });
    }
}

/// Runs the hub until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), HubError> {
    let started = Instant::now();
    let open_files = match crate::os::raise_open_files_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!(before, after, "raised the open-files limit");
            }
            after
        }
        Err(e) => {
            tracing::warn!("cannot read or raise the open-files limit: {e}");
            1024
        }
    };
    let embedded = match config.mqtt.broker {
        Broker::Embedded { listen } => Some(start_embedded_broker(listen, &config, open_files)?),
        Broker::External { .. } => None,
    };
    let Assembly {
        dispatcher,
        outbox,
        outbox_rx,
        timers,
        topics,
        engine,
        fuel_per_ms,
        adapters,
        admit_rx,
    } = assemble(&config)?;
    if let Some(embedded) = &embedded {
        // The broker's refusals are audited from here on.
        embedded.access.set_audit(dispatcher.audit_log().clone());
    }

    let will = LastWill::new(topics.status(), offline_status(), QoS::AtLeastOnce, true);
    let link = hub_link(&config)?;
    let client_id = crate::satellites::admin::hub_user(&config.mqtt.prefix);
    let (client, eventloop) = mqtt::connect(&link, &client_id, true, Some(will));
    let publisher = tokio::spawn(publish_outbox(client.clone(), outbox_rx));
    // Every protocol has its route now: each satellite's retained list of
    // timers is made current (timers may have come due while the hub was down).
    timers.announce_all();
    let timer_task = tokio::spawn(timers.clone().run());
    let confirm_task = tokio::spawn(dispatcher.services().confirmations.clone().run());
    let audit_task = tokio::spawn(audit_service(
        dispatcher.clone(),
        outbox.clone(),
        topics.clone(),
        config.audit_checkpoint_s,
        started,
    ));

    let metrics_task = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| HubError::Listen {
                    what: "metrics.listen",
                    addr,
                    source,
                })?;
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            let source = dispatcher.clone();
            let render = Arc::new(move || source.services().metrics.prometheus(&source.gauges()));
            Some(tokio::spawn(crate::metrics::serve(listener, render)))
        }
    };
    dispatcher.set_facts(crate::dispatch::Facts {
        config: config.source.clone(),
        broker: match &config.mqtt.broker {
            Broker::Embedded { listen } => format!("embedded, {listen}"),
            Broker::External { host, port, tls } => {
                format!("{}://{host}:{port}", if *tls { "mqtts" } else { "mqtt" })
            }
        },
        state_dir: config.state_dir.clone(),
    });
    let server = Server {
        client,
        topics,
        outbox,
        dispatcher: dispatcher.clone(),
        adapters,
        admission: std::sync::Mutex::new(Admission::default()),
        started,
        systemd: crate::systemd::Notifier::from_env(),
        reload: Reload {
            at_start: config.clone(),
            current: Arc::new(std::sync::Mutex::new(config.clone())),
            engine,
            fuel_per_ms: Arc::new(std::sync::atomic::AtomicU64::new(fuel_per_ms)),
            running: Arc::default(),
        },
    };
    server.serve(eventloop, admit_rx, shutdown).await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    for adapter in &server.adapters {
        adapter.stop();
    }

    timer_task.abort();
    confirm_task.abort();
    audit_task.abort();
    publisher.abort();
    // Anything recorded after the goodbye's checkpoint gets one of its own, on disk only.
    let audit = dispatcher.audit_log().clone();
    let _ = tokio::task::spawn_blocking(move || audit.write_out(true)).await;
    let timers = dispatcher.services().timers.clone();
    let _ = tokio::task::spawn_blocking(move || timers.flush(Duration::from_secs(2))).await;
    // The embedded broker stops when `embedded` drops, here or on an early
    // error return.
    drop(embedded);
    tracing::info!("hark stopped");
    Ok(())
}

/// The broker settings of the hub's own link: the config's, with the hub's
/// login (SPEC §7) when `mqtt.username` is empty. The embedded broker always
/// knows that login, so its secret is made on first need; an external broker
/// knows it once `hark satellite acl --mosquitto` wrote it there.
fn hub_link(config: &Config) -> Result<crate::config::MqttConfig, HubError> {
    use crate::satellites::admin;
    let mut link = config.mqtt.clone();
    if link.credentials.is_none() && matches!(link.broker, Broker::Embedded { .. }) {
        admin::read_or_create(&config.state_dir)?;
    }
    link.credentials = admin::login(
        link.credentials.as_ref(),
        &config.state_dir,
        &link.prefix,
        true,
    );
    Ok(link)
}

/// The embedded broker, its gate on the satellite registry (SPEC §7), and
/// the task that keeps the gate on the registry on disk.
#[cfg(feature = "embedded-broker")]
fn start_embedded_broker(
    listen: std::net::SocketAddr,
    config: &Config,
    open_files: u64,
) -> Result<EmbeddedBroker, HubError> {
    use crate::satellites::{Registry, admin, gate};
    // Before anything touches the state dir: a busy port is the most
    // common first-run mistake and should be the first thing said.
    crate::broker::ensure_free(listen, "mqtt.listen")?;
    let stamp = Registry::stamp(&config.state_dir);
    let registry = Registry::load(&config.state_dir)?;
    let exposed = !listen.ip().is_loopback()
        || config
            .mqtt
            .tls_listen
            .as_ref()
            .is_some_and(|t| !t.listen.ip().is_loopback());
    let access = Arc::new(gate::Access::new(gate::Settings {
        prefix: &config.mqtt.prefix,
        admin_secret: admin::read_or_create(&config.state_dir)?,
        configured: config.mqtt.credentials.clone(),
        mode: config.mqtt.auth,
        exposed,
        registry,
    }));
    let settings = crate::broker::Settings {
        listen,
        tls: config.mqtt.tls_listen.clone(),
        max_payload: config.mqtt.max_payload,
        open_files,
    };
    let broker = crate::broker::start(&settings, access.clone())?;
    let handle = broker.clone();
    let watcher = tokio::spawn(gate::keep_current(
        access.clone(),
        config.state_dir.clone(),
        stamp,
        move |cut| handle.disconnect(cut),
    ));
    Ok(EmbeddedBroker {
        access,
        broker,
        watcher,
    })
}

/// The embedded broker the hub started, with its gate.
#[cfg(feature = "embedded-broker")]
struct EmbeddedBroker {
    access: Arc<crate::satellites::gate::Access>,
    broker: crate::broker::BrokerHandle,
    /// Keeps the gate on the registry on disk.
    watcher: tokio::task::JoinHandle<()>,
}

/// Stops the broker, blocking for the few milliseconds its thread takes to
/// end (it runs its own runtime, so this thread's is not needed for it):
/// a hub started again in the same process finds the port and the audit
/// log free.
#[cfg(feature = "embedded-broker")]
impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.watcher.abort();
        self.broker.stop();
    }
}

#[cfg(not(feature = "embedded-broker"))]
struct EmbeddedBroker {
    access: Arc<crate::satellites::gate::Access>,
}

#[cfg(not(feature = "embedded-broker"))]
fn start_embedded_broker(
    _: std::net::SocketAddr,
    _: &Config,
    _: u64,
) -> Result<EmbeddedBroker, HubError> {
    Err(HubError::NoEmbeddedBroker)
}

/// Makes the audit log durable every second, signs a checkpoint every `audit.checkpoint_every`
/// records or `audit.checkpoint_s` seconds (if anything was written) and publishes it retained,
/// and raises the alarm when the log reports a gap. The disk work runs off the hub's loop:
/// fsync takes milliseconds on an SD card, and no request waits for it.
async fn audit_service(
    dispatcher: Arc<Dispatcher>,
    outbox: Outbox,
    topics: Topics,
    checkpoint_every: Duration,
    started: Instant,
) {
    let audit = dispatcher.audit_log().clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_checkpoint = Instant::now();
    loop {
        let full = tokio::select! {
            _ = tick.tick() => false,
            () = audit.checkpoint_due() => true,
        };
        if let Some(gap) = audit.take_gap() {
            raise_alarm(&dispatcher, &outbox, &topics, &gap, started).await;
        }
        let checkpoint =
            full || audit.since_checkpoint() > 0 && last_checkpoint.elapsed() >= checkpoint_every;
        if checkpoint {
            last_checkpoint = Instant::now();
        } else if !audit.unsynced() {
            continue;
        }
        let audit = audit.clone();
        match tokio::task::spawn_blocking(move || audit.write_out(checkpoint)).await {
            Ok(Some(note)) => {
                outbox
                    .send(Message {
                        topic: topics.audit_checkpoint(),
                        payload: note.into_bytes(),
                        retain: true,
                    })
                    .await;
            }
            Ok(None) => {}
            Err(e) => tracing::error!("audit sync task: {e}"),
        }
    }
}

/// The log lost records: retained on `<prefix>/hub/alarm`, and the status says so at once.
async fn raise_alarm(
    dispatcher: &Dispatcher,
    outbox: &Outbox,
    topics: &Topics,
    gap: &audit::Gap,
    started: Instant,
) {
    let alarm = json!({
        "alarm": "audit_gap",
        "seq": gap.seq,
        "message": gap.message,
        "ts": audit::format_timestamp(std::time::SystemTime::now()),
    });
    for (topic, payload) in [
        (topics.alarm(), alarm),
        (topics.status(), status_payload(dispatcher, started, true)),
    ] {
        outbox
            .send(Message {
                topic,
                payload: payload.to_string().into_bytes(),
                retain: true,
            })
            .await;
    }
}

fn offline_status() -> Vec<u8> {
    serde_json::to_vec(&json!({"online": false})).expect("status serializes")
}

/// Drains the outbox into the MQTT client. A separate task, so a full client
/// queue never stalls the loop that polls the connection.
async fn publish_outbox(client: AsyncClient, mut rx: tokio::sync::mpsc::Receiver<Message>) {
    while let Some(m) = rx.recv().await {
        if let Err(e) = client
            .publish(&m.topic, QoS::AtLeastOnce, m.retain, m.payload)
            .await
        {
            tracing::warn!(topic = %m.topic, "publish failed: {e}");
        }
    }
}

struct Server {
    client: AsyncClient,
    topics: Topics,
    outbox: Outbox,
    dispatcher: Arc<Dispatcher>,
    /// The protocols configured on; MQTT messages are offered to each in turn.
    adapters: Vec<Arc<dyn Adapter>>,
    /// Requests waiting for their turn, and how many run.
    admission: std::sync::Mutex<Admission<Box<dyn Job>>>,
    started: Instant,
    /// Tells systemd the hub is ready, alive, stopping.
    systemd: crate::systemd::Notifier,
    reload: Reload,
}

/// The request tasks; each returns the satellite whose place it held
/// (`None` for a task that only sends a refusal).
type Requests = JoinSet<Option<String>>;

/// What a SIGHUP needs to read the config and load the skills again.
struct Reload {
    /// The config the hub started with: what needs a restart is judged
    /// against it.
    at_start: Config,
    /// The config in force: the last reload's, or the one at start.
    current: Arc<std::sync::Mutex<Config>>,
    engine: wasmi::Engine,
    /// This board's interpreter speed; 0 until measured (a hub started
    /// paranoid measures it at the reload that first needs it).
    fuel_per_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Held by the reload that runs; another SIGHUP's reload waits for it.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Server {
    /// Reads the config file again (SIGHUP) and applies what can change
    /// while running: the tier, `[confirm] skills`, the Hermes and Wyoming mappings
    /// (and, through the skills' reload, trust keys, hermetic mode, grants
    /// and `skills.dir`). What needs a restart (`Config::RESTART`) keeps
    /// its running value, and is logged, audited and shown in the status.
    /// A file that no longer reads keeps everything as it was. Returns the
    /// config the skills are to be loaded under.
    fn reread_config(&self) -> Option<Config> {
        let current = self
            .reload
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(path) = current.source.clone() else {
            return Some(current);
        };
        let fresh = match Config::load(&path) {
            Ok(fresh) => fresh,
            Err(e) => {
                let message = format!("reload: {e}; keeping the running config");
                tracing::error!("{message}");
                self.dispatcher.audit(&audit::Record {
                    kind: audit::Kind::Error,
                    rule: Some("config.reload".into()),
                    message: Some(message),
                    ..Default::default()
                });
                return None;
            }
        };
        let restart: Vec<String> = fresh
            .needs_restart(&self.reload.at_start)
            .into_iter()
            .map(String::from)
            .collect();
        let applied = fresh.reloadable_over(&self.reload.at_start);
        let mut notes = Vec::new();
        let (was, now) = (current.tier, applied.tier);
        if was != now {
            notes.push(format!("tier {was} -> {now}"));
        }
        if now != crate::policy::Tier::Paranoid && !self.dispatcher.has_pool() {
            let workers = applied.skills.workers;
            if let Err(e) = self
                .dispatcher
                .start_pool(workers, self.reload.engine.clone())
            {
                tracing::error!(
                    "reload: cannot start the skill workers the {now} tier needs ({e}); \
                     keeping the running config"
                );
                return None;
            }
        }
        self.dispatcher.env().tier.set(now);
        let confirmations = &self.dispatcher.services().confirmations;
        confirmations.set_listed(applied.confirm.skills.clone());
        for adapter in &self.adapters {
            adapter.reconfigure(&applied);
        }
        if !restart.is_empty() {
            tracing::warn!(
                "reload: {} changed; that takes a restart of the hub (running with the old values)",
                restart.join(", ")
            );
            notes.push(format!("needs a restart for: {}", restart.join(", ")));
        }
        self.dispatcher.set_pending_restart(restart);
        tracing::info!("SIGHUP: config {} read again", path.display());
        self.dispatcher.audit(&audit::Record {
            kind: audit::Kind::Load,
            decision: Some(audit::Decision::Allow),
            rule: Some("config.reload".into()),
            message: Some(format!(
                "config {} read again{}",
                path.display(),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", notes.join("; "))
                }
            )),
            ..Default::default()
        });
        *self
            .reload
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = applied.clone();
        Some(applied)
    }

    /// Loads `skills.dir` again and swaps the registry in one step; a skill
    /// whose new version fails keeps serving its old one, and a module whose
    /// sha256 did not change keeps its compiled code.
    ///
    /// Returns at once: the reload runs in a task of its own and compiles on
    /// a blocking thread, so the loop goes on serving meanwhile (compiling
    /// takes up to seconds on a slow board). Reloads run one at a time.
    async fn reload(&self) {
        let Some(config) = self.reread_config() else {
            return;
        };
        let dispatcher = self.dispatcher.clone();
        let (engine, speed) = (self.reload.engine.clone(), self.reload.fuel_per_ms.clone());
        let running = self.reload.running.clone();
        let (outbox, status_topic) = (self.outbox.clone(), self.topics.status());
        let started = self.started;
        tokio::spawn(async move {
            let _one_at_a_time = running.lock_owned().await;
            let begun = Instant::now();
            let compiled = crate::loader::compiled(&dispatcher.registry());
            let load = tokio::task::spawn_blocking(move || {
                use std::sync::atomic::Ordering;
                let mut fuel_per_ms = speed.load(Ordering::Relaxed);
                if fuel_per_ms == 0 {
                    fuel_per_ms = crate::hub::fuel_per_ms(&config, &engine);
                    speed.store(fuel_per_ms, Ordering::Relaxed);
                }
                crate::loader::load_registry_reusing(&config, &engine, fuel_per_ms, &compiled)
            });
            let loaded = match load.await {
                Ok(loaded) => loaded.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the loading thread failed: {e}")),
            };
            let (fresh, kept) = match loaded {
                Ok(loaded) => loaded,
                Err(e) => {
                    tracing::error!("reload failed, keeping every skill as it was: {e}");
                    return;
                }
            };
            for skill in &kept {
                tracing::debug!(skill, "kept compiled module: its sha256 did not change");
            }
            let (registry, notes) = dispatcher.registry().reloaded(fresh);
            audit_registry(&dispatcher, &registry, &notes);
            let count = registry.len();
            dispatcher.replace_registry(registry);
            tracing::info!(
                skills = count,
                kept_compiled = kept.len(),
                took_ms = begun.elapsed().as_millis() as u64,
                "skills reloaded"
            );
            let payload = status_payload(&dispatcher, started, true);
            outbox
                .send(Message {
                    topic: status_topic,
                    payload: payload.to_string().into_bytes(),
                    retain: true,
                })
                .await;
        });
    }

    async fn serve(
        &self,
        mut eventloop: rumqttc::EventLoop,
        mut admit_rx: tokio::sync::mpsc::Receiver<Inbound>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut requests = Requests::new();
        let mut backoff = Backoff::default();
        let mut status_tick = tokio::time::interval(Duration::from_secs(60));
        status_tick.tick().await;
        tokio::pin!(shutdown);

        // After a connection error, wait out the backoff before polling again,
        // without going deaf to shutdown or to running requests finishing.
        let mut retry = Box::pin(tokio::time::sleep(Duration::ZERO));
        let mut waiting = false;
        // systemd's watchdog is fed from this loop, so a hung loop starves it.
        let mut watchdog = self
            .systemd
            .watchdog_interval()
            .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!("cannot listen for SIGHUP, reload by restarting: {e}"))
            .ok();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reading the config and the skills again");
                    self.reload().await;
                }
                () = &mut retry, if waiting => waiting = false,
                event = eventloop.poll(), if !waiting => match event {
                    Ok(event) => {
                        backoff.reset();
                        self.on_event(event, &mut eventloop, &mut requests, false).await;
                    }
                    Err(e) => {
                        if let Some(size) = mqtt::oversized_packet(&e) {
                            self.drop_oversized(&mut eventloop, size);
                        }
                        let first = backoff.is_first();
                        let delay = backoff.next_delay();
                        if first {
                            tracing::warn!("MQTT connection: {e}; retrying");
                        } else {
                            tracing::debug!("MQTT connection: {e}; retrying in {delay:?}");
                        }
                        retry.as_mut().reset(tokio::time::Instant::now() + delay);
                        waiting = true;
                    }
                },
                Some(ended) = requests.join_next() => self.finished(ended, &mut requests),
                Some(inbound) = admit_rx.recv() => self.admit(inbound, &mut requests, false),
                _ = status_tick.tick() => {
                    self.publish_status(true).await;
                    self.publish_metrics().await;
                }
                _ = async { match watchdog.as_mut() { Some(w) => w.tick().await, None => std::future::pending().await } } => {
                    self.systemd.notify("WATCHDOG=1");
                }
            }
        }

        // Draining: finish what is running, refuse what waits and what arrives.
        self.systemd.notify("STOPPING=1");
        tracing::info!(in_flight = requests.len(), "shutting down");
        let waiting = self.admission().drain();
        for job in waiting {
            self.refuse(job, shutting_down(), &mut requests);
        }
        let deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(deadline);
        while !requests.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!("{} requests still running at shutdown", requests.len());
                    break;
                }
                Some(ended) = requests.join_next() => self.finished(ended, &mut requests),
                Some(inbound) = admit_rx.recv() => self.admit(inbound, &mut requests, true),
                event = eventloop.poll() => match event {
                    Ok(event) => self.on_event(event, &mut eventloop, &mut requests, true).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
            }
        }
        requests.abort_all();

        // The last records and a checkpoint that covers them, so the
        // retained copy off the hub's disk is current while it is down.
        self.dispatcher.audit(&audit::Record {
            kind: audit::Kind::Stop,
            message: Some("hark stopped".into()),
            ..Default::default()
        });
        let audit = self.dispatcher.audit_log().clone();
        let note = tokio::task::spawn_blocking(move || audit.write_out(true))
            .await
            .ok()
            .flatten();

        // Say goodbye in order: checkpoint, offline status, then disconnect,
        // then stop polling once the broker has all (or after a second).
        let client = self.client.clone();
        let status_topic = self.topics.status();
        let checkpoint_topic = self.topics.audit_checkpoint();
        let goodbye = tokio::spawn(async move {
            if let Some(note) = note {
                let _ = client
                    .publish(checkpoint_topic, QoS::AtLeastOnce, true, note)
                    .await;
            }
            let _ = client
                .publish(status_topic, QoS::AtLeastOnce, true, offline_status())
                .await;
            let _ = client.disconnect().await;
        });
        let flush = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        goodbye.abort();
    }

    /// The broker delivered a packet larger than the hub reads: the
    /// connection is gone, and a persistent session would deliver the same
    /// packet again at every reconnect. Reconnect once with a clean session
    /// (losing what the broker queued meanwhile), and say so.
    fn drop_oversized(&self, eventloop: &mut rumqttc::EventLoop, size: usize) {
        let limit = eventloop.mqtt_options.max_packet_size();
        let message = format!(
            "the broker delivered a packet of {size} bytes, over the hub's limit of {limit} \
             (mqtt.max_payload x 32); it was dropped unread, with the broker's session"
        );
        tracing::error!("{message}");
        self.dispatcher.audit(&audit::Record {
            kind: audit::Kind::Refusal,
            decision: Some(audit::Decision::Deny),
            rule: Some("mqtt.packet_too_large".into()),
            message: Some(message),
            ..Default::default()
        });
        eventloop.mqtt_options.set_clean_session(true);
    }

    async fn on_event(
        &self,
        event: Event,
        eventloop: &mut rumqttc::EventLoop,
        requests: &mut Requests,
        draining: bool,
    ) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
                // After an oversized packet the hub connects once with a clean
                // session; from now on its session persists again.
                eventloop.mqtt_options.set_clean_session(false);
                self.dispatcher.services().metrics.connected();
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                // Subscribe on every connect: a broker that lost our session
                // would otherwise leave us deaf.
                let refresh = self.topics.refresh();
                for filter in self
                    .adapters
                    .iter()
                    .flat_map(|a| a.subscriptions())
                    .chain(std::iter::once(refresh))
                {
                    if let Err(e) = self.client.try_subscribe(&filter, QoS::AtLeastOnce) {
                        tracing::error!("cannot subscribe to {filter}: {e}");
                    }
                }
                self.publish_status(true).await;
                self.publish_metrics().await;
                // systemd: started (again, after a reconnect: harmless).
                self.systemd
                    .notify("READY=1\nSTATUS=connected to the broker, serving");
            }
            Event::Incoming(Packet::Publish(publish)) if publish.topic == self.topics.refresh() => {
                // Only the hub and the local admin may publish here (the
                // broker's gate, and the generated mosquitto ACL).
                self.publish_status(true).await;
                self.publish_metrics().await;
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if self.admission().queued() > 0 {
                    // A burst (a backlog delivered on reconnect) arrives
                    // without the loop ever yielding, so the requests it
                    // started have not had a chance to run. Let them: built-ins
                    // finish in one poll and make room for those waiting.
                    tokio::task::yield_now().await;
                }
                self.on_publish(publish, requests, draining);
            }
            _ => {}
        }
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission<Box<dyn Job>>> {
        // Only the loop's thread takes it, never across an await.
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers one message to each adapter in turn; the one it belongs to
    /// decodes it into a request (queued for its turn, [`Server::pump`]
    /// starts it) or deals with it at once.
    fn on_publish(&self, publish: rumqttc::Publish, requests: &mut Requests, draining: bool) {
        for adapter in &self.adapters {
            match adapter.accept(&publish) {
                Accepted::NotMine => continue,
                Accepted::Done(answer) => {
                    if let Some(answer) = answer {
                        requests.spawn(async move {
                            answer.await;
                            None
                        });
                    }
                }
                Accepted::Request(inbound) => self.admit(inbound, requests, draining),
            }
            return;
        }
        tracing::debug!(topic = %publish.topic, "ignoring a message on a topic the hub does not serve");
    }

    /// Queues a request under its satellite's key, or answers it at once
    /// when it cannot be queued.
    fn admit(&self, inbound: Inbound, requests: &mut Requests, draining: bool) {
        let Inbound { key, bytes, job } = inbound;
        if draining {
            return self.refuse(job, shutting_down(), requests);
        }
        let offer = self.admission().offer(&key, job, bytes);
        for pushed_out in offer.evicted {
            let failure = Failure::new(
                ErrorCode::Busy,
                "the hub's queue is full and this satellite had the most requests waiting; \
                 one gave way to another satellite's; retry when one is answered",
            );
            self.refuse(pushed_out, failure, requests);
        }
        if let Some((job, refusal)) = offer.refused {
            let message = match refusal {
                Refusal::Full => format!(
                    "the hub is already handling {} requests with {} waiting, and this \
                     satellite has as many waiting as any; retry in a moment",
                    crate::admission::MAX_CONCURRENT_REQUESTS,
                    crate::admission::MAX_QUEUED,
                ),
                Refusal::SatelliteFull => format!(
                    "this satellite already has {} requests waiting, its share; retry when one \
                     is answered",
                    crate::admission::MAX_QUEUED_PER_SATELLITE
                ),
            };
            return self.refuse(job, Failure::new(ErrorCode::Busy, message), requests);
        }
        self.pump(requests);
    }

    /// Starts waiting requests while there is room.
    fn pump(&self, requests: &mut Requests) {
        loop {
            let Some((key, job)) = self.admission().start_next() else {
                return;
            };
            let dispatcher = self.dispatcher.clone();
            requests.spawn(async move {
                protocols::run(&dispatcher, job).await;
                Some(key)
            });
        }
    }

    /// Answers a request that will not run (busy, shutting down).
    fn refuse(&self, job: Box<dyn Job>, failure: Failure, requests: &mut Requests) {
        let answer = protocols::refuse(&self.dispatcher, job, failure);
        requests.spawn(async move {
            answer.await;
            None
        });
    }

    /// A request task ended: give its place back and start the next.
    fn finished(
        &self,
        ended: Result<Option<String>, tokio::task::JoinError>,
        requests: &mut Requests,
    ) {
        if let Ok(Some(key)) = ended {
            self.admission().done(&key);
        }
        self.pump(requests);
    }

    /// The metrics as JSON, retained beside the status (SPEC §10), with
    /// what only the admin reads: the setup, the satellites and their
    /// timers (the status is every satellite's to read; this is not).
    async fn publish_metrics(&self) {
        let metrics = &self.dispatcher.services().metrics;
        let mut payload = metrics.json(&self.dispatcher.gauges());
        payload["hub"] = admin_facts(&self.dispatcher).await;
        self.outbox
            .send(Message {
                topic: self.topics.metrics(),
                payload: payload.to_string().into_bytes(),
                retain: true,
            })
            .await;
    }

    async fn publish_status(&self, online: bool) {
        let payload = status_payload(&self.dispatcher, self.started, online);
        self.outbox
            .send(Message {
                topic: self.topics.status(),
                payload: payload.to_string().into_bytes(),
                retain: true,
            })
            .await;
    }
}

fn shutting_down() -> Failure {
    Failure::new(
        ErrorCode::ShuttingDown,
        "the hub is shutting down; retry in a moment",
    )
}

/// The hub's setup and its satellites, for the admin's eyes only.
async fn admin_facts(dispatcher: &Dispatcher) -> Value {
    let facts = dispatcher.facts();
    // Registered satellites, and when each last logged in (the embedded
    // broker writes that, once a minute at most). A file read, so not on the
    // loop that answers requests.
    let state_dir = facts.state_dir.clone();
    let satellites: Vec<Value> = tokio::task::spawn_blocking(move || {
        crate::satellites::Registry::load(&state_dir)
            .map(|r| {
                r.iter()
                    .map(|s| json!({"id": s.id, "last_seen": s.last_seen}))
                    .collect()
            })
            .unwrap_or_default()
    })
    .await
    .unwrap_or_default();
    json!({
        "config": facts.config,
        "broker": facts.broker,
        "satellites": satellites,
        "timers": dispatcher.services().timers.per_satellite(),
    })
}

/// The retained status: how a UI learns what runs and what is off, and why.
pub fn status_payload(dispatcher: &Dispatcher, started: Instant, online: bool) -> Value {
    let tier = dispatcher.tier();
    let audit = dispatcher.audit_log();
    let head = audit.last_seq();
    let skills: Vec<Value> = dispatcher.registry().describe();
    json!({
        "online": online,
        "version": env!("CARGO_PKG_VERSION"),
        "tier": tier.as_str(),
        "uptime_s": started.elapsed().as_secs(),
        "audio": dispatcher.services().playback.backend_name(),
        "audit": match dispatcher.audit_log().broken_since() {
            Some(seq) => format!("broken since seq {seq}"),
            None => "intact".to_owned(),
        },
        "skills": skills,
        "audit_head": head,
        "audit_checkpoint": head.saturating_sub(audit.since_checkpoint()),
        "restart_needed": dispatcher.pending_restart(),
    })
}
