//! The embedded broker's TLS listener (`mqtt.tls_listen`): the certificate
//! and key read and checked at start, each connection's handshake on its own
//! task with a deadline, and the connection then handed to mqtt5's client
//! handler like one from the plain listener. mqtt5's own TLS listener does
//! the handshake inline in its accept loop with no deadline, so one silent
//! socket would hold off every TLS client after it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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

/// The TLS listener, bound, with its certificate loaded.
pub(super) struct Listener {
    socket: std::net::TcpListener,
    acceptor: TlsAcceptor,
}

impl Listener {
    /// Reads and checks the certificate and key, then binds: a bad file is
    /// reported before anything listens.
    pub(super) fn open(tls: &TlsListen) -> Result<Listener, BrokerError> {
        let acceptor = acceptor(&tls.cert, &tls.key)?;
        let socket =
            std::net::TcpListener::bind(tls.listen).map_err(|error| BrokerError::Bind {
                listen: tls.listen,
                advice: super::bind_advice("mqtt.tls_listen", tls.listen, &error),
                error,
            })?;
        socket.set_nonblocking(true).map_err(BrokerError::Thread)?;
        Ok(Listener { socket, acceptor })
    }
}

fn tls_error(key: &'static str, path: &Path, message: impl std::fmt::Display) -> BrokerError {
    BrokerError::Tls {
        key,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
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

/// What a client handler needs of the running broker.
pub(super) struct Parts {
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
            config,
            auth,
            router: broker.router(),
            storage: broker.storage(),
            stats: broker.stats(),
            monitor: broker.resource_monitor(),
        }
    }
}

/// Accepts TLS connections until the process ends.
pub(super) async fn serve(listener: Listener, parts: Parts) {
    let socket = match tokio::net::TcpListener::from_std(listener.socket) {
        Ok(socket) => socket,
        Err(e) => {
            tracing::error!("the embedded broker's TLS listener failed: {e}");
            return;
        }
    };
    // The handlers stop when this is dropped or sent to; it lives as long as
    // the accept loop, which is as long as the broker.
    let (shutdown, _) = tokio::sync::broadcast::channel::<()>(1);
    let parts = Arc::new(parts);
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: let some close.
                tracing::warn!("the embedded broker's TLS listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !parts.monitor.can_accept_connection(peer.ip()).await {
            continue;
        }
        // See the module comment of `broker`: replies must not wait ~40 ms.
        let _ = stream.set_nodelay(true);
        let acceptor = listener.acceptor.clone();
        let parts = Arc::clone(&parts);
        let shutdown = shutdown.subscribe();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let handler = ClientHandler::new(
                BrokerTransport::tls(TlsStreamWrapper::new(stream)),
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
                tracing::debug!(%peer, "TLS client: {e}");
            }
        });
    }
}
