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
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::audio::AudioOut;
use crate::audit::{self, Audit, AuditLog};
use crate::config::{AudioBackend, Broker, Config};
use crate::dispatch::{Dispatcher, Failure};
use crate::events::{Message, Outbox, Protocol};
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

/// Requests handled at once; beyond this a request is answered `busy`.
pub const MAX_CONCURRENT_REQUESTS: usize = 64;
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
    if let Broker::Embedded { listen } = config.mqtt.broker {
        // Before anything touches the state dir: a busy port is the most
        // common first-run mistake and should be the first thing said.
        start_embedded_broker(listen, &config)?;
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
        permits: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        started,
        tier: config.tier,
        reload: Reload {
            config: config.clone(),
            engine,
            fuel_per_ms,
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
    tracing::info!("hark stopped");
    Ok(())
}

#[cfg(feature = "embedded-broker")]
fn start_embedded_broker(listen: std::net::SocketAddr, config: &Config) -> Result<(), HubError> {
    crate::broker::start(
        listen,
        config.mqtt.max_payload,
        config.mqtt.credentials.as_ref(),
    )?;
    Ok(())
}

#[cfg(not(feature = "embedded-broker"))]
fn start_embedded_broker(_: std::net::SocketAddr, _: &Config) -> Result<(), HubError> {
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
    permits: Arc<Semaphore>,
    started: Instant,
    tier: crate::policy::Tier,
    reload: Reload,
}

/// What a SIGHUP needs to load the skills again.
struct Reload {
    config: Config,
    engine: wasmi::Engine,
    fuel_per_ms: u64,
}

impl Server {
    /// Loads `skills.dir` again and swaps the registry in one step; a skill
    /// whose new version fails keeps serving its old one.
    async fn reload(&self) {
        let started = Instant::now();
        let fresh = match Registry::load(
            &self.reload.config,
            &self.reload.engine,
            self.reload.fuel_per_ms,
        ) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!("reload failed, keeping every skill as it was: {e}");
                return;
            }
        };
        let (registry, notes) = self.dispatcher.registry().reloaded(fresh);
        audit_registry(&self.dispatcher, &registry, &notes);
        let count = registry.len();
        self.dispatcher.replace_registry(registry);
        tracing::info!(
            skills = count,
            took_ms = started.elapsed().as_millis() as u64,
            "skills reloaded"
        );
        self.publish_status(true).await;
    }

    async fn serve(&self, mut eventloop: rumqttc::EventLoop, shutdown: impl Future<Output = ()>) {
        let mut requests = JoinSet::new();
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
                        self.on_event(event, &mut requests, false).await;
                    }
                    Err(e) => {
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
                Some(_) = requests.join_next() => {}
                _ = status_tick.tick() => self.publish_status(true).await,
            }
        }

        // Draining: finish what is running, refuse what arrives.
        tracing::info!(in_flight = requests.len(), "shutting down");
        let deadline = tokio::time::sleep(DRAIN_TIMEOUT);
        tokio::pin!(deadline);
        while !requests.is_empty() {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!("{} requests still running at shutdown", requests.len());
                    break;
                }
                Some(_) = requests.join_next() => {}
                event = eventloop.poll() => match event {
                    Ok(event) => self.on_event(event, &mut requests, true).await,
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

    async fn on_event(&self, event: Event, requests: &mut JoinSet<()>, draining: bool) {
        match event {
            Event::Incoming(Packet::ConnAck(ack)) => {
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
                if self.permits.available_permits() == 0 {
                    // A burst (a backlog delivered on reconnect) arrives
                    // without the loop ever yielding, so the requests it
                    // spawned have not had a chance to run. Let them: built-ins
                    // finish in one poll, and only real overload is `busy`.
                    tokio::task::yield_now().await;
                }
                self.on_publish(publish, requests, draining);
            }
            _ => {}
        }
    }

    /// A permit to run one request, or why not (shutting down, busy).
    fn admit(&self, draining: bool) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        if draining {
            return Err(Failure::new(
                Status::Busy,
                "shutting_down",
                "the hub is shutting down; retry in a moment",
            ));
        }
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Failure::new(
                Status::Busy,
                "busy",
                format!(
                    "the hub is already handling {MAX_CONCURRENT_REQUESTS} requests; \
                     retry in a moment"
                ),
            )
        })
    }

    /// Routes one message: Hermes topics (when enabled) to the adapter, the
    /// rest to the native protocol.
    fn on_publish(&self, publish: rumqttc::Publish, requests: &mut JoinSet<()>, draining: bool) {
        if let Some(hermes) = &self.hermes {
            use crate::hermes::topics::{self as hermes_topics, Incoming as HermesIncoming};
            let kind = match hermes_topics::parse(&publish.topic) {
                HermesIncoming::Intent { name } => crate::hermes::Kind::Intent(name.to_string()),
                HermesIncoming::NotRecognized => crate::hermes::Kind::NotRecognized,
                HermesIncoming::PlayFinished { site_id } => {
                    // Handled at once, in order: a request that follows it sees it.
                    hermes.play_finished(site_id, &publish.payload);
                    return;
                }
                HermesIncoming::Other => return self.on_native(publish, requests, draining),
            };
            match self.admit(draining) {
                Ok(permit) => {
                    let hermes = hermes.clone();
                    requests.spawn(async move {
                        hermes.handle(&kind, &publish.payload).await;
                        drop(permit);
                    });
                }
                Err(failure) => {
                    if let Some(answer) = hermes.refuse(&kind, &publish.payload, failure) {
                        let outbox = self.outbox.clone();
                        requests.spawn(async move { outbox.send(answer).await });
                    }
                }
            }
            return;
        }
        self.on_native(publish, requests, draining);
    }

    fn on_native(&self, publish: rumqttc::Publish, requests: &mut JoinSet<()>, draining: bool) {
        let topic = publish.topic.clone();
        match self.topics.parse(&topic) {
            Incoming::Intent { satellite } => {
                let satellite = satellite.to_string();
                let reply_topic = self.topics.reply(&satellite);
                let permit = self.admit(draining);
                let dispatcher = self.dispatcher.clone();
                let outbox = self.outbox.clone();
                match permit {
                    Ok(permit) => {
                        requests.spawn(async move {
                            let reply = dispatcher
                                .handle_payload(&satellite, Protocol::Native, &publish.payload)
                                .await;
                            log_reply(&satellite, &reply);
                            outbox.reply(reply_topic, &reply).await;
                            drop(permit);
                        });
                    }
                    Err(failure) => {
                        let reply = dispatcher.refuse(
                            &satellite,
                            Protocol::Native,
                            &publish.payload,
                            failure,
                        );
                        log_reply(&satellite, &reply);
                        requests.spawn(async move { outbox.reply(reply_topic, &reply).await });
                    }
                }
            }
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
                    requests.spawn(async move { outbox.reply(topic, &reply).await });
                }
            }
            Incoming::Other => {
                tracing::debug!(%topic, "ignoring a message on a topic the hub does not serve");
            }
        }
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
