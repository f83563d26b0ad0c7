//! The embedded broker's listeners (`mqtt.listen`, and `mqtt.tls_listen`
//! with its certificate and key read and checked at start). Hark accepts on
//! them itself and hands each connection to mqtt5's client handler:
//! - so that one source address cannot take the accept rate from everyone
//!   else ([`Sources`]);
//! - so that each TLS handshake runs on its own task with a deadline
//!   (mqtt5's own TLS listener does the handshake inline in its accept loop
//!   with no deadline, so one silent socket would hold off every TLS client
//!   after it);
//! - and to set `TCP_NODELAY` on every accepted socket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqtt5::broker::client_handler::ClientHandler;
use mqtt5::broker::config::BrokerConfig;
use mqtt5::broker::server::MqttBroker;
use mqtt5::broker::tls_acceptor::TlsStreamWrapper;
use mqtt5::broker::transport::BrokerTransport;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::BrokerError;
use crate::config::TlsListen;

/// A TLS handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// New connections accepted from one address a second; more are closed at
/// once. A satellite connects once and again after a network hiccup; this
/// machine's own addresses (the hub, the CLI) are not limited.
pub const ACCEPTS_PER_SOURCE_PER_SECOND: u32 = 20;

/// A listener, bound, with its certificate loaded if it speaks TLS.
pub(super) struct Listener {
    socket: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Binds `mqtt.listen`.
    pub(super) fn plain(listen: SocketAddr) -> Result<Listener, BrokerError> {
        Ok(Listener {
            socket: bind(listen, "mqtt.listen")?,
            tls: None,
        })
    }

    /// Reads and checks the certificate and key, then binds: a bad file is
    /// reported before anything listens.
    pub(super) fn tls(tls: &TlsListen) -> Result<Listener, BrokerError> {
        let acceptor = acceptor(&tls.cert, &tls.key)?;
        Ok(Listener {
            socket: bind(tls.listen, "mqtt.tls_listen")?,
            tls: Some(acceptor),
        })
    }
}

/// Binds `listen` (the value of config `key`), saying what to do if it cannot.
fn bind(listen: SocketAddr, key: &str) -> Result<std::net::TcpListener, BrokerError> {
    let socket = std::net::TcpListener::bind(listen).map_err(|error| BrokerError::Bind {
        listen,
        advice: super::bind_advice(key, listen, &error),
        error,
    })?;
    socket.set_nonblocking(true).map_err(BrokerError::Thread)?;
    Ok(socket)
}

/// How many connections each source address opened in the current second.
#[derive(Debug, Default)]
pub(super) struct Sources {
    second: Option<Instant>,
    counts: HashMap<IpAddr, u32>,
}

impl Sources {
    /// Whether a connection from `ip` at `now` is within its allowance.
    /// The table holds one second's addresses: it starts empty each second.
    pub(super) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if is_this_machine(ip) {
            return true;
        }
        if self
            .second
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            self.second = Some(now);
            self.counts.clear();
        }
        let count = self.counts.entry(ip).or_insert(0);
        *count = count.saturating_add(1);
        *count <= ACCEPTS_PER_SOURCE_PER_SECOND
    }
}

/// 127.0.0.1 and ::1 (and 127.0.0.1 mapped into IPv6): the hub's own link
/// and the CLI. Other 127.x addresses count as sources like any other.
fn is_this_machine(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => {
            v6 == std::net::Ipv6Addr::LOCALHOST
                || v6.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

fn tls_error(key: &'static str, path: &Path, message: impl std::fmt::Display) -> BrokerError {
    BrokerError::Tls {
        key,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Whether `mqtt.tls_listen`'s certificate and key load and go together, as
/// the broker will read them at start (`hark doctor`).
pub fn check_tls_files(tls: &TlsListen) -> Result<(), BrokerError> {
    acceptor(&tls.cert, &tls.key).map(drop)
}

/// A rustls server config on the ring provider (never the process default,
/// which another crate could have set to something else).
fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, BrokerError> {
    let pem = std::fs::read(cert).map_err(|e| tls_error("mqtt.tls_cert", cert, e))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("mqtt.tls_cert", cert, format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(tls_error(
            "mqtt.tls_cert",
            cert,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    let pem = std::fs::read(key).map_err(|e| tls_error("mqtt.tls_key", key, e))?;
    let private = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        tls_error(
            "mqtt.tls_key",
            key,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("mqtt.tls_cert", cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            tls_error(
                "mqtt.tls_key",
                key,
                format!("does not go with the certificate in mqtt.tls_cert: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a client handler needs of the running broker, and the accept
/// allowance both listeners share.
pub(super) struct Parts {
    pub(super) sources: Mutex<Sources>,
    pub(super) config: Arc<BrokerConfig>,
    pub(super) auth: Arc<dyn mqtt5::broker::auth::AuthProvider>,
    pub(super) router: Arc<mqtt5::broker::router::MessageRouter>,
    pub(super) storage: Option<Arc<mqtt5::broker::DynamicStorage>>,
    pub(super) stats: Arc<mqtt5::broker::sys_topics::BrokerStats>,
    pub(super) monitor: Arc<mqtt5::broker::ResourceMonitor>,
}

impl Parts {
    pub(super) fn of(
        broker: &MqttBroker,
        config: Arc<BrokerConfig>,
        auth: Arc<dyn mqtt5::broker::auth::AuthProvider>,
    ) -> Parts {
        Parts {
            sources: Mutex::new(Sources::default()),
            config,
            auth,
            router: broker.router(),
            storage: broker.storage(),
            stats: broker.stats(),
            monitor: broker.resource_monitor(),
        }
    }
}

/// Accepts connections until the broker stops (its runtime ends).
pub(super) async fn serve(listener: Listener, parts: Arc<Parts>) {
    let socket = match tokio::net::TcpListener::from_std(listener.socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("the embedded broker cannot listen: {e}");
            return;
        }
    };
    // The handlers stop when this is dropped or sent to; it lives as long as
    // the accept loop, which is as long as the broker.
    let (shutdown, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut last_warned: HashMap<IpAddr, Instant> = HashMap::new();
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: let some close.
                tracing::warn!("the embedded broker's listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let now = Instant::now();
        let admitted = parts
            .sources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(peer.ip(), now);
        if !admitted {
            // Once a minute per address at most.
            if last_warned.len() > 1024 {
                last_warned.clear();
            }
            let due = last_warned
                .get(&peer.ip())
                .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
            if due {
                last_warned.insert(peer.ip(), now);
                tracing::warn!(
                    source = %peer.ip(),
                    "the embedded broker closes connections from this address: more than \
                     {ACCEPTS_PER_SOURCE_PER_SECOND} a second"
                );
            }
            continue;
        }
        if !parts.monitor.can_accept_connection(peer.ip()).await {
            continue;
        }
        // See the module comment of `broker`: replies must not wait ~40 ms.
        let _ = stream.set_nodelay(true);
        let tls = listener.tls.clone();
        let parts = Arc::clone(&parts);
        let shutdown = shutdown.subscribe();
        tokio::spawn(async move {
            let transport = match tls {
                None => BrokerTransport::tcp(stream),
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => BrokerTransport::tls(TlsStreamWrapper::new(stream)),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let handler = ClientHandler::new(
                transport,
                peer,
                Arc::clone(&parts.config),
                Arc::clone(&parts.router),
                Arc::clone(&parts.auth),
                parts.storage.clone(),
                Arc::clone(&parts.stats),
                Arc::clone(&parts.monitor),
                shutdown,
            );
            if let Err(e) = handler.run().await {
                tracing::debug!(%peer, "client: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_allowance_a_second_and_others_theirs() {
        let mut sources = Sources::default();
        let lan: IpAddr = "192.168.1.20".parse().unwrap();
        let other: IpAddr = "192.168.1.21".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..ACCEPTS_PER_SOURCE_PER_SECOND {
            assert!(sources.admit(lan, t0));
        }
        assert!(!sources.admit(lan, t0 + Duration::from_millis(500)));
        assert!(sources.admit(other, t0 + Duration::from_millis(500)));
        // The next second starts afresh.
        assert!(sources.admit(lan, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn this_machine_is_not_limited_but_other_loopback_addresses_are() {
        let mut sources = Sources::default();
        let t0 = Instant::now();
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            for _ in 0..10 * ACCEPTS_PER_SOURCE_PER_SECOND {
                assert!(sources.admit(ip, t0), "{ip}");
            }
        }
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let admitted = (0..2 * ACCEPTS_PER_SOURCE_PER_SECOND)
            .filter(|_| sources.admit(other, t0))
            .count();
        assert_eq!(admitted, ACCEPTS_PER_SOURCE_PER_SECOND as usize);
    }
}
