//! The embedded MQTT broker (the `mqtt5` crate's), for households without
//! one: `hark run` with no `mqtt.url` starts it on `mqtt.listen` (and on
//! `mqtt.tls_listen` with TLS) and connects to it like any other broker.
//! The satellites' gate ([`Access`], SPEC §7) decides who may connect and
//! what each client may publish and subscribe to; [`BrokerHandle::disconnect`]
//! cuts clients off at run time.
//! docs/broker.md says why this library and what it cannot do.
//!
//! Hark accepts on both listeners itself ([`listener`]) and hands each
//! connection to mqtt5: every accepted socket gets `TCP_NODELAY` (with Nagle
//! on, a satellite's request and the hub's reply stall ~40 ms on delayed
//! ACKs), one address's connection rate is limited, and TLS handshakes have
//! a deadline.

mod clients;
mod listener;
mod provider;

pub use listener::{ACCEPTS_PER_SOURCE_PER_SECOND, HANDSHAKE_TIMEOUT, check_tls_files};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt5::broker::config::{BrokerConfig, StorageBackend, StorageConfig};
use mqtt5::broker::router::MessageRouter;
use mqtt5::broker::server::BrokerShutdownHandle;
use mqtt5::broker::{MqttBroker, ResourceLimits};

use crate::config::TlsListen;
use crate::satellites::access::Principal;
use crate::satellites::gate::Access;
use clients::Clients;
use provider::GateProvider;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the embedded broker cannot listen on {listen}: {error}. {advice}")]
    Bind {
        listen: SocketAddr,
        error: std::io::Error,
        /// What to do, knowing who holds the port.
        advice: String,
    },
    #[error("config {key}: {path}: {message}")]
    Tls {
        key: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the embedded broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
    #[error("the embedded broker cannot start: {0}")]
    Start(String),
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(std::io::Error),
}

/// What to tell someone whose embedded broker cannot have `listen` (the
/// value of config `key`): most often a broker (mosquitto, Home
/// Assistant's) already holds the port, and the hub should use it rather
/// than start a second one.
fn bind_advice(key: &str, listen: SocketAddr, error: &std::io::Error) -> String {
    use crate::mqtt::probe::{Found, probe};
    if error.kind() != std::io::ErrorKind::AddrInUse {
        return format!("Move {key} to an address of this machine and a free port");
    }
    if key != "mqtt.listen" {
        return format!("Another program holds that port; move {key} to a free one");
    }
    let mut ask = listen;
    if ask.ip().is_unspecified() {
        ask.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match probe(ask, Duration::from_millis(500)) {
        Found::Broker { open } => format!(
            "An MQTT broker already listens there: use it instead of starting a second one, \
             with mqtt.url = \"mqtt://{ask}\"{} in the config, or move mqtt.listen to a free port",
            if open {
                ""
            } else {
                " (it asks for credentials: set mqtt.username and mqtt.password too)"
            }
        ),
        Found::Other | Found::Nothing => {
            "Another program holds that port; move mqtt.listen to a free one".to_string()
        }
    }
}

/// Fails, saying what to do, when the broker could not listen on `listen`
/// (the value of config `key`). mqtt5 reports a failed bind as a string;
/// find out first, where the user can be told.
pub fn ensure_free(listen: SocketAddr, key: &str) -> Result<(), BrokerError> {
    std::net::TcpListener::bind(listen)
        .map(drop)
        .map_err(|error| BrokerError::Bind {
            listen,
            advice: bind_advice(key, listen, &error),
            error,
        })
}

/// Most clients connected at once (fewer when the open-files limit is low):
/// a home has a few satellites, and each connection is a file descriptor
/// the hub's own files share.
pub const MAX_CONNECTIONS: usize = 1024;
/// A socket that has not sent CONNECT within this is closed (mqtt5's own
/// deadline, not a setting).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// New sockets accepted per second, on each listener together; more are
/// closed at once. With [`CONNECT_TIMEOUT`], sockets that never speak hold
/// at most about five thousand descriptors.
pub const ACCEPTS_PER_SECOND: u32 = 500;
/// Messages kept for one client's session while it is away.
const QUEUED_PER_CLIENT: usize = 1000;
/// Retained topics the broker keeps (the hub's own few per satellite, and
/// whatever other clients retain).
const MAX_RETAINED: usize = 10_000;

/// Connected clients allowed for a process that may have `open_files`
/// descriptors: at most a quarter of them, so sockets still waiting for
/// their CONNECT, the hub's own files and its broker link keep room.
pub fn max_connections(open_files: u64) -> usize {
    (open_files / 4).clamp(16, MAX_CONNECTIONS as u64) as usize
}

/// Where and how the embedded broker listens.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The plain listener (`mqtt.listen`).
    pub listen: SocketAddr,
    /// The TLS listener, if any (`mqtt.tls_listen`).
    pub tls: Option<TlsListen>,
    /// `mqtt.max_payload`; the packet limit is derived from it.
    pub max_payload: usize,
    /// The process's open-files limit.
    pub open_files: u64,
}

/// The running broker, for whoever must cut clients off.
#[derive(Clone)]
pub struct BrokerHandle {
    router: Arc<MessageRouter>,
    runtime: tokio::runtime::Handle,
    clients: Arc<Mutex<Clients>>,
    shutdown: BrokerShutdownHandle,
    /// The broker's thread, taken by the first [`BrokerHandle::stop`].
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for BrokerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerHandle").finish_non_exhaustive()
    }
}

impl BrokerHandle {
    /// Closes every connected client whose principal `which` picks (a
    /// removed satellite, one whose password was rotated). Returns at once;
    /// the connections close on the broker's thread within milliseconds.
    /// A closed client that comes back meets the gate again at CONNECT.
    pub fn disconnect(&self, which: &dyn Fn(&Principal) -> bool) {
        let ids = lock(&self.clients).take(which);
        if ids.is_empty() {
            return;
        }
        let router = Arc::clone(&self.router);
        self.runtime.spawn(async move {
            for id in ids {
                tracing::info!(client_id = %id, "the embedded broker disconnects a client");
                router.disconnect_client(&id).await;
            }
        });
    }

    /// Stops the broker and waits (blocking, up to 2 s) for its thread to
    /// end: its port is free and the gate it held is dropped when this
    /// returns, so a hub started again in the same process (tests, a
    /// supervisor) finds both.
    pub fn stop(&self) {
        self.shutdown.shutdown();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(thread) = thread else { return };
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("the embedded broker did not stop within 2 s");
        }
    }
}

fn lock<T>(clients: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    clients.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the broker on its own thread and returns once it is listening.
///
/// Connections are bounded three ways: at most [`max_connections`] clients,
/// a socket that sends no CONNECT within [`CONNECT_TIMEOUT`] is closed, and
/// at most [`ACCEPTS_PER_SECOND`] new sockets are accepted a second.
pub fn start(settings: &Settings, access: Arc<Access>) -> Result<BrokerHandle, BrokerError> {
    let plain = listener::Listener::plain(settings.listen)?;
    let tls = settings
        .tls
        .as_ref()
        .map(listener::Listener::tls)
        .transpose()?;

    let config = broker_config(settings);
    let limits = ResourceLimits {
        max_connections: max_connections(settings.open_files),
        max_connections_per_ip: max_connections(settings.open_files),
        max_message_rate_per_client: 0,
        max_bandwidth_per_client: 0,
        max_connection_rate: ACCEPTS_PER_SECOND,
        rate_limit_window: Duration::from_secs(1),
    };
    let clients = Arc::new(Mutex::new(Clients::default()));
    let provider = Arc::new(GateProvider {
        access,
        clients: Arc::clone(&clients),
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let thread = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&thread);
    let joined = std::thread::Builder::new()
        .name("hark-broker".into())
        .spawn(move || {
            // Blocking threads ask the gate (`provider`): one Argon2id check
            // at a time (`gate::CHECKS_AT_ONCE`) and quick answers beside it.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(4)
                .thread_name("hark-broker-login")
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(BrokerError::Thread(e)));
                    return;
                }
            };
            let ready = Ready {
                tx: ready_tx,
                thread: slot,
            };
            let listeners = [Some(plain), tls].into_iter().flatten().collect();
            runtime.block_on(serve(config, limits, provider, clients, listeners, ready));
        })
        .map_err(BrokerError::Thread)?;
    *lock(&thread) = Some(joined);

    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(handle)) => {
            match &settings.tls {
                Some(tls) => {
                    tracing::info!(listen = %settings.listen, tls_listen = %tls.listen, "embedded broker listening")
                }
                None => tracing::info!(listen = %settings.listen, "embedded broker listening"),
            }
            Ok(handle)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BrokerError::NotListening(settings.listen)),
    }
}

/// How the broker's thread reports that it listens, and where its own
/// join handle will be.
struct Ready {
    tx: std::sync::mpsc::SyncSender<Result<BrokerHandle, BrokerError>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Runs on the broker's thread: binds, reports, then serves until stopped.
async fn serve(
    config: BrokerConfig,
    limits: ResourceLimits,
    provider: Arc<GateProvider>,
    clients: Arc<Mutex<Clients>>,
    listeners: Vec<listener::Listener>,
    ready: Ready,
) {
    let auth: Arc<dyn mqtt5::broker::auth::AuthProvider> = provider;
    let mut broker = match MqttBroker::with_config(config.clone()).await {
        Ok(broker) => broker.with_auth_provider(Arc::clone(&auth)),
        Err(e) => {
            let _ = ready.tx.send(Err(BrokerError::Start(e.to_string())));
            return;
        }
    };
    broker.resource_monitor().update_limits(limits);
    let handle = BrokerHandle {
        router: broker.router(),
        runtime: tokio::runtime::Handle::current(),
        clients,
        shutdown: broker.shutdown_handle(),
        thread: ready.thread,
    };
    let parts = Arc::new(listener::Parts::of(&broker, Arc::new(config), auth));
    for listener in listeners {
        tokio::spawn(listener::serve(listener, Arc::clone(&parts)));
    }
    tokio::spawn(forget_gone_clients(handle.clone()));
    let _ = ready.tx.send(Ok(handle));
    if let Err(e) = broker.run().await {
        tracing::error!("embedded broker stopped: {e}");
    }
}

fn broker_config(settings: &Settings) -> BrokerConfig {
    let packet_limit = crate::mqtt::packet_limit(settings.max_payload);
    let mut config = BrokerConfig::default()
        // mqtt5 must have a listener of its own; this one, on an ephemeral
        // loopback port nobody is told of, stays idle (and meets the same
        // gate). Clients reach the broker through Hark's [`listener`]s.
        .with_bind_address(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_max_clients(max_connections(settings.open_files))
        .with_max_packet_size(packet_limit)
        .with_max_retained_messages(MAX_RETAINED)
        .with_max_retained_message_size(packet_limit)
        // Sessions and retained messages in memory, as before: a hub
        // restart is a broker restart, and the hub resubscribes.
        .with_storage(StorageConfig {
            backend: StorageBackend::Memory,
            enable_persistence: true,
            max_queued_messages_per_client: QUEUED_PER_CLIENT,
            max_queued_bytes_per_client: 2 * packet_limit,
            ..StorageConfig::default()
        })
        // `$SYS/#` is reserved (SPEC §7); the hub publishes no broker statistics.
        .with_sys_topics_enabled(false);
    config.shared_subscription_available = false;
    config
}

/// Forgets, once a minute, the clean-session clients that are gone, so the
/// table of who is who stays as small as what is connected. A client
/// admitted less than a minute ago is kept even if the router does not know
/// it yet (it may be between its CONNECT and its CONNACK).
async fn forget_gone_clients(handle: BrokerHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let candidates =
            lock(&handle.clients).clean_ids(std::time::Instant::now(), Duration::from_secs(60));
        for id in candidates {
            if !handle.router.is_connected(&id).await {
                lock(&handle.clients).forget(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_for_the_hubs_own_files() {
        assert_eq!(max_connections(1024), 256);
        assert_eq!(max_connections(524_288), MAX_CONNECTIONS);
        assert_eq!(max_connections(20), 16);
    }

    fn settings(listen: SocketAddr) -> Settings {
        Settings {
            listen,
            tls: None,
            max_payload: 65536,
            open_files: 1024,
        }
    }

    #[test]
    fn a_busy_port_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let access = Access::new(crate::satellites::gate::Settings {
            prefix: "hark",
            admin_secret: "admin-secret-0123456789".into(),
            configured: None,
            mode: Default::default(),
            exposed: false,
            registry: Default::default(),
        });
        let err = start(&settings(addr), Arc::new(access))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("mqtt.listen"),
            "{err}"
        );
    }
}
