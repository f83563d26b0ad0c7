//! Assembly and the main loop: start the broker (if embedded), open the audit
//! log, register skills, connect, and serve until the shutdown future
//! resolves; then drain in-flight requests, publish the offline status,
//! flush the audit log and return.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_skill_sdk::Status;
use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::admission::Admission;
use crate::audio::AudioOut;
use crate::audit::{self, Audit, AuditLog};
use crate::config::{AudioBackend, Broker, Config};
use crate::dispatch::{Dispatcher, Failure};
use crate::events::{Message, Outbox, Protocol};
use crate::fair::Refusal;
use crate::host::Services;
use crate::inflight::InFlight;
use crate::mqtt::topics::{Incoming, Topics};
use crate::mqtt::{self, Backoff};
use crate::playback::{AlarmRinger, PlaybackService};
use crate::registry::Registry;
use crate::sandbox::host::HostEnv;
use crate::sandbox::pool::Pool;
use crate::sandbox::secrets::SecretStore;
use crate::timers::TimerService;

pub use crate::admission::MAX_CONCURRENT_REQUESTS;
/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

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
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("cannot start the skill workers: {0}")]
    Workers(std::io::Error),
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
}

/// Opens the state dir, the audit log, the speaker and the timers, loads
/// the skills and starts the sandbox's workers (not in the paranoid tier).
/// Records the start and every skill's admission. Must run inside the tokio
/// runtime the hub will use.
pub fn assemble(config: &Config) -> Result<Assembly, HubError> {
    crate::fsutil::create_private_dir(&config.state_dir).map_err(|source| HubError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let audit_log = Audit::new(AuditLog::open(&config.audit_path)?);
    let topics = Topics::new(&config.mqtt.prefix);
    let (outbox, outbox_rx) = Outbox::channel(topics.clone(), 1024);

    let backend = match config.audio.backend {
        AudioBackend::Auto => crate::audio::Backend::Auto,
        AudioBackend::Cpal => crate::audio::Backend::Cpal,
        AudioBackend::Null => crate::audio::Backend::Null,
    };
    let audio = AudioOut::open(backend)?;
    let playback = PlaybackService::new(
        audio,
        config.audio.media_dir.clone(),
        outbox.clone(),
        crate::hermes::play_bytes_limit(config.mqtt.max_payload),
    );
    let timers = TimerService::open(
        &config.state_dir,
        config.timers,
        outbox.clone(),
        Box::new(AlarmRinger(playback.clone())),
        audit_log.clone(),
    )?;
    let services = Services {
        timers: timers.clone(),
        playback,
        inflight: Arc::new(InFlight::default()),
    };

    let engine = crate::sandbox::engine();
    let fuel_per_ms = fuel_per_ms(config, &engine);
    let registry = Registry::load(config, &engine, fuel_per_ms)?;
    let dispatcher = Arc::new(Dispatcher::new(
        registry,
        audit_log.clone(),
        services.clone(),
        config.tier,
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
        let env = Arc::new(HostEnv {
            tier: config.tier,
            services,
            outbox: outbox.clone(),
            topics: topics.clone(),
            audit: audit_log,
            secrets: SecretStore::new(config.state_dir.join("secrets.toml")),
        });
        let workers = config.skills.workers;
        let pool = Pool::start(
            workers,
            workers * 4,
            engine.clone(),
            env,
            tokio::runtime::Handle::current(),
        )
        .map_err(HubError::Workers)?;
        dispatcher.set_pool(pool);
    }
    Ok(Assembly {
        dispatcher,
        outbox,
        outbox_rx,
        timers,
        topics,
        engine,
        fuel_per_ms,
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
        if skill.kind == crate::policy::SkillKind::Wasm && !skill.enabled() {
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
    if let Broker::Embedded { listen } = config.mqtt.broker {
        // Before anything touches the state dir: a busy port is the most
        // common first-run mistake and should be the first thing said.
        start_embedded_broker(listen, &config, open_files)?;
    }
    let Assembly {
        dispatcher,
        outbox,
        outbox_rx,
        timers,
        topics,
        engine,
        fuel_per_ms,
    } = assemble(&config)?;

    let will = LastWill::new(topics.status(), offline_status(), QoS::AtLeastOnce, true);
    let client_id = format!("{}-hub", config.mqtt.prefix.replace('/', "-"));
    let (client, eventloop) = mqtt::connect(&config.mqtt, &client_id, true, Some(will));
    let publisher = tokio::spawn(publish_outbox(client.clone(), outbox_rx));
    let timer_task = tokio::spawn(timers.clone().run());
    let audit_task = tokio::spawn({
        let dispatcher = dispatcher.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                // fsync takes milliseconds on an SD card: off the loop, so
                // no request waits for the disk.
                if let Some(job) = dispatcher.audit_log().sync_job() {
                    match tokio::task::spawn_blocking(move || job.run()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!("audit log: {e}"),
                        Err(e) => tracing::error!("audit sync task: {e}"),
                    }
                }
            }
        }
    });

    let hermes = config.hermes.enabled.then(|| {
        Arc::new(crate::hermes::Adapter::new(
            dispatcher.clone(),
            outbox.clone(),
            config.hermes.intents.clone(),
            config.mqtt.max_payload,
        ))
    });
    let server = Server {
        client,
        topics,
        outbox,
        dispatcher: dispatcher.clone(),
        hermes,
        admission: std::sync::Mutex::new(Admission::default()),
        started,
        tier: config.tier,
        reload: Reload {
            config: config.clone(),
            engine,
            fuel_per_ms,
            running: Arc::default(),
        },
    };
    server.serve(eventloop, shutdown).await;

    timer_task.abort();
    audit_task.abort();
    publisher.abort();
    dispatcher.audit(&audit::Record {
        kind: audit::Kind::Stop,
        message: Some("hark stopped".into()),
        ..Default::default()
    });
    dispatcher.sync_audit();
    let timers = dispatcher.services().timers.clone();
    let _ = tokio::task::spawn_blocking(move || timers.flush(Duration::from_secs(2))).await;
    tracing::info!("hark stopped");
    Ok(())
}

#[cfg(feature = "embedded-broker")]
fn start_embedded_broker(
    listen: std::net::SocketAddr,
    config: &Config,
    open_files: u64,
) -> Result<(), HubError> {
    crate::broker::start(
        listen,
        config.mqtt.max_payload,
        config.mqtt.credentials.as_ref(),
        open_files,
    )?;
    Ok(())
}

#[cfg(not(feature = "embedded-broker"))]
fn start_embedded_broker(_: std::net::SocketAddr, _: &Config, _: u64) -> Result<(), HubError> {
    Err(HubError::NoEmbeddedBroker)
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
    /// The Hermes adapter, when `hermes.enabled`.
    hermes: Option<Arc<crate::hermes::Adapter>>,
    /// Requests waiting for their turn, and how many run.
    admission: std::sync::Mutex<Admission<Pending>>,
    started: Instant,
    tier: crate::policy::Tier,
    reload: Reload,
}

/// The request tasks; each returns the satellite whose place it held
/// (`None` for a task that only sends a refusal).
type Requests = JoinSet<Option<String>>;

/// Which protocol a request came by.
#[derive(Debug)]
enum Route {
    Native { satellite: String },
    Hermes { kind: crate::hermes::Kind },
}

/// A request waiting for its turn.
#[derive(Debug)]
pub struct Pending {
    route: Route,
    publish: rumqttc::Publish,
}

/// What a SIGHUP needs to load the skills again.
struct Reload {
    config: Config,
    engine: wasmi::Engine,
    fuel_per_ms: u64,
    /// Held by the reload that runs; another SIGHUP's reload waits for it.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Server {
    /// Loads `skills.dir` again and swaps the registry in one step; a skill
    /// whose new version fails keeps serving its old one, and a module whose
    /// sha256 did not change keeps its compiled code.
    ///
    /// Returns at once: the reload runs in a task of its own and compiles on
    /// a blocking thread, so the loop goes on serving meanwhile (compiling
    /// takes up to seconds on a slow board). Reloads run one at a time.
    async fn reload(&self) {
        let dispatcher = self.dispatcher.clone();
        let (config, engine, fuel_per_ms) = (
            self.reload.config.clone(),
            self.reload.engine.clone(),
            self.reload.fuel_per_ms,
        );
        let running = self.reload.running.clone();
        let (outbox, status_topic) = (self.outbox.clone(), self.topics.status());
        let (tier, started) = (self.tier, self.started);
        tokio::spawn(async move {
            let _one_at_a_time = running.lock_owned().await;
            let begun = Instant::now();
            let compiled = dispatcher.registry().compiled();
            let load = tokio::task::spawn_blocking(move || {
                Registry::load_reusing(&config, &engine, fuel_per_ms, &compiled)
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
            let payload = status_payload(&dispatcher, tier, started, true);
            outbox
                .send(Message {
                    topic: status_topic,
                    payload: payload.to_string().into_bytes(),
                    retain: true,
                })
                .await;
        });
    }

    async fn serve(&self, mut eventloop: rumqttc::EventLoop, shutdown: impl Future<Output = ()>) {
        let mut requests = Requests::new();
        let mut backoff = Backoff::default();
        let mut status_tick = tokio::time::interval(Duration::from_secs(60));
        status_tick.tick().await;
        tokio::pin!(shutdown);

        // After a connection error, wait out the backoff before polling again,
        // without going deaf to shutdown or to running requests finishing.
        let mut retry = Box::pin(tokio::time::sleep(Duration::ZERO));
        let mut waiting = false;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!("cannot listen for SIGHUP, reload by restarting: {e}"))
            .ok();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading skills");
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
                _ = status_tick.tick() => self.publish_status(true).await,
            }
        }

        // Draining: finish what is running, refuse what waits and what arrives.
        tracing::info!(in_flight = requests.len(), "shutting down");
        let waiting = self.admission().drain();
        for pending in waiting {
            let failure = Failure::new(
                Status::Busy,
                "shutting_down",
                "the hub is shutting down; retry in a moment",
            );
            self.refuse(pending, failure, &mut requests);
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
                event = eventloop.poll() => match event {
                    Ok(event) => self.on_event(event, &mut eventloop, &mut requests, true).await,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
            }
        }
        requests.abort_all();

        // Say goodbye in order: offline status, then disconnect, then stop
        // polling once the broker has both (or after a second).
        let client = self.client.clone();
        let status_topic = self.topics.status();
        let goodbye = tokio::spawn(async move {
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
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                // Subscribe on every connect: a broker that lost our session
                // would otherwise leave us deaf.
                if let Err(e) = self
                    .client
                    .try_subscribe(self.topics.intent_filter(), QoS::AtLeastOnce)
                {
                    tracing::error!("cannot subscribe: {e}");
                }
                if self.hermes.is_some() {
                    for filter in crate::hermes::topics::SUBSCRIPTIONS {
                        if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                            tracing::error!("cannot subscribe to {filter}: {e}");
                        }
                    }
                }
                self.publish_status(true).await;
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

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission<Pending>> {
        // Only the loop's thread takes it, never across an await.
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes one message: Hermes topics (when enabled) to the adapter, the
    /// rest to the native protocol. A request is queued for its turn
    /// ([`Server::pump`] starts it), or answered at once when it cannot be.
    fn on_publish(&self, publish: rumqttc::Publish, requests: &mut Requests, draining: bool) {
        let route = match self.route(&publish, requests) {
            Some(route) => route,
            None => return,
        };
        let key = match &route {
            Route::Native { satellite } => satellite.clone(),
            Route::Hermes { .. } => crate::hermes::site_of(&publish.payload),
        };
        let pending = Pending { route, publish };
        if draining {
            let failure = Failure::new(
                Status::Busy,
                "shutting_down",
                "the hub is shutting down; retry in a moment",
            );
            return self.refuse(pending, failure, requests);
        }
        let bytes = pending.publish.payload.len();
        let offer = self.admission().offer(&key, pending, bytes);
        for pushed_out in offer.evicted {
            let failure = Failure::new(
                Status::Busy,
                "busy",
                "the hub's queue is full and this satellite had the most requests waiting; \
                 one gave way to another satellite's; retry when one is answered",
            );
            self.refuse(pushed_out, failure, requests);
        }
        if let Some((pending, refusal)) = offer.refused {
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
            return self.refuse(
                pending,
                Failure::new(Status::Busy, "busy", message),
                requests,
            );
        }
        self.pump(requests);
    }

    /// What kind of request `publish` is, or `None` when it was handled
    /// here (a Hermes playFinished, a bad satellite id, a foreign topic).
    fn route(&self, publish: &rumqttc::Publish, requests: &mut Requests) -> Option<Route> {
        if let Some(hermes) = &self.hermes {
            use crate::hermes::topics::{self as hermes_topics, Incoming as HermesIncoming};
            match hermes_topics::parse(&publish.topic) {
                HermesIncoming::Intent { name } => {
                    return Some(Route::Hermes {
                        kind: crate::hermes::Kind::Intent(name.to_string()),
                    });
                }
                HermesIncoming::NotRecognized => {
                    return Some(Route::Hermes {
                        kind: crate::hermes::Kind::NotRecognized,
                    });
                }
                HermesIncoming::PlayFinished { site_id } => {
                    // Handled at once, in order: a request that follows it sees it.
                    hermes.play_finished(site_id, &publish.payload);
                    return None;
                }
                HermesIncoming::Other => {}
            }
        }
        match self.topics.parse(&publish.topic) {
            Incoming::Intent { satellite } => Some(Route::Native {
                satellite: satellite.to_string(),
            }),
            Incoming::BadSatellite {
                raw,
                reason,
                reply_to,
            } => {
                let failure = Failure::new(Status::Invalid, "bad_satellite", reason);
                let reply =
                    self.dispatcher
                        .refuse(raw, Protocol::Native, &publish.payload, failure);
                log_reply(raw, &reply);
                if let Some(topic) = reply_to {
                    let outbox = self.outbox.clone();
                    requests.spawn(async move {
                        outbox.reply(topic, &reply).await;
                        None
                    });
                }
                None
            }
            Incoming::Other => {
                tracing::debug!(topic = %publish.topic, "ignoring a message on a topic the hub does not serve");
                None
            }
        }
    }

    /// Starts waiting requests while there is room.
    fn pump(&self, requests: &mut Requests) {
        loop {
            let Some((key, pending)) = self.admission().start_next() else {
                return;
            };
            let Pending { route, publish } = pending;
            match route {
                Route::Native { satellite } => {
                    let dispatcher = self.dispatcher.clone();
                    let outbox = self.outbox.clone();
                    let reply_topic = self.topics.reply(&satellite);
                    requests.spawn(async move {
                        let handled = crate::panics::caught(dispatcher.handle_payload(
                            &satellite,
                            Protocol::Native,
                            &publish.payload,
                        ))
                        .await;
                        let reply = handled.unwrap_or_else(|panic| {
                            dispatcher.refuse(
                                &satellite,
                                Protocol::Native,
                                &publish.payload,
                                internal_failure(&panic),
                            )
                        });
                        log_reply(&satellite, &reply);
                        outbox.reply(reply_topic, &reply).await;
                        Some(key)
                    });
                }
                Route::Hermes { kind } => {
                    let hermes = self
                        .hermes
                        .clone()
                        .expect("Hermes requests are routed only when it is enabled");
                    let outbox = self.outbox.clone();
                    requests.spawn(async move {
                        let handled =
                            crate::panics::caught(hermes.handle(&kind, &publish.payload)).await;
                        if let Err(panic) = handled {
                            let failure = internal_failure(&panic);
                            if let Some(answer) = hermes.refuse(&kind, &publish.payload, failure) {
                                outbox.send(answer).await;
                            }
                        }
                        Some(key)
                    });
                }
            }
        }
    }

    /// Answers a request that will not run (busy, shutting down).
    fn refuse(&self, pending: Pending, failure: Failure, requests: &mut Requests) {
        let Pending { route, publish } = pending;
        match route {
            Route::Native { satellite } => {
                let reply =
                    self.dispatcher
                        .refuse(&satellite, Protocol::Native, &publish.payload, failure);
                log_reply(&satellite, &reply);
                let outbox = self.outbox.clone();
                let topic = self.topics.reply(&satellite);
                requests.spawn(async move {
                    outbox.reply(topic, &reply).await;
                    None
                });
            }
            Route::Hermes { kind } => {
                let hermes = self
                    .hermes
                    .as_ref()
                    .expect("Hermes requests are routed only when it is enabled");
                if let Some(answer) = hermes.refuse(&kind, &publish.payload, failure) {
                    let outbox = self.outbox.clone();
                    requests.spawn(async move {
                        outbox.send(answer).await;
                        None
                    });
                }
            }
        }
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

    async fn publish_status(&self, online: bool) {
        let payload = status_payload(&self.dispatcher, self.tier, self.started, online);
        self.outbox
            .send(Message {
                topic: self.topics.status(),
                payload: payload.to_string().into_bytes(),
                retain: true,
            })
            .await;
    }
}

/// The answer to a request whose handling panicked: a bug of the hub's,
/// logged here, that costs this request and nothing else.
fn internal_failure(panic: &str) -> Failure {
    tracing::error!("a request hit a bug in the hub and was answered `error`: {panic}");
    Failure::new(
        Status::Error,
        "internal",
        format!("the hub hit a bug while handling this request ({panic}); it was logged"),
    )
}

fn log_reply(satellite: &str, reply: &hark_skill_sdk::Reply) {
    match &reply.error {
        None => tracing::debug!(satellite, id = ?reply.id, intent = ?reply.intent, "ok"),
        Some(error) => tracing::info!(
            satellite,
            id = ?reply.id,
            intent = ?reply.intent,
            status = %reply.status,
            code = %error.code,
            "{}",
            error.message
        ),
    }
}

/// The retained status: how a UI learns what runs and what is off, and why.
pub fn status_payload(
    dispatcher: &Dispatcher,
    tier: crate::policy::Tier,
    started: Instant,
    online: bool,
) -> Value {
    let skills: Vec<Value> = dispatcher.registry().describe();
    json!({
        "online": online,
        "version": env!("CARGO_PKG_VERSION"),
        "tier": tier.as_str(),
        "uptime_s": started.elapsed().as_secs(),
        "audio": dispatcher.services().playback.backend_name(),
        "skills": skills,
    })
}
