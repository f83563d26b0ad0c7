//! The embedded MQTT broker (rumqttd), for households without one: `hark run`
//! with no `mqtt.url` starts it on `mqtt.listen` and connects to it like any
//! other broker.
//!
//! rumqttd binds its own listener and offers no hook to set `TCP_NODELAY` on
//! the sockets it accepts; with Nagle on, a satellite's request and the
//! hub's reply stall ~40 ms on delayed ACKs. Linux copies `TCP_NODELAY` from a
//! listening socket to the sockets it accepts, so once rumqttd is listening we
//! find its listener among our own file descriptors and set it there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the embedded broker cannot listen on {listen}: {error}. {advice}")]
    Bind {
        listen: SocketAddr,
        error: std::io::Error,
        /// What to do, knowing who holds the port.
        advice: String,
    },
    #[error("the embedded broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(std::io::Error),
}

/// What to tell someone whose embedded broker cannot have `listen`: most
/// often a broker (mosquitto, Home Assistant's) already holds the port, and
/// the hub should use it rather than start a second one.
fn bind_advice(listen: SocketAddr, error: &std::io::Error) -> String {
    use crate::mqtt::probe::{Found, probe};
    if error.kind() != std::io::ErrorKind::AddrInUse {
        return "Move mqtt.listen to an address of this machine and a free port".to_string();
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

/// Most clients connected at once (fewer when the open-files limit is low):
/// a home has a few satellites, and each connection is a file descriptor
/// the hub's own files share.
pub const MAX_CONNECTIONS: usize = 1024;
/// A socket that has not sent CONNECT within this is closed.
pub const CONNECT_TIMEOUT_MS: u16 = 5_000;

/// Connected clients allowed for a process that may have `open_files`
/// descriptors: at most a quarter of them, so sockets still waiting for
/// their CONNECT, the hub's own files and its broker link keep room.
pub fn max_connections(open_files: u64) -> usize {
    (open_files / 4).clamp(16, MAX_CONNECTIONS as u64) as usize
}

/// Starts rumqttd on its own thread and returns once it is listening.
///
/// Connections are bounded three ways: at most [`max_connections`] clients,
/// a socket that sends no CONNECT within [`CONNECT_TIMEOUT_MS`] is closed,
/// and one new socket is accepted per millisecond, so sockets that never
/// speak hold at most about five thousand descriptors. rumqttd owns its
/// accept loop, so a limit per source address needs a broker that lets the
/// hub accept (issue 12 replaces the broker).
pub fn start(
    listen: SocketAddr,
    max_payload: usize,
    credentials: Option<&Credentials>,
    open_files: u64,
) -> Result<(), BrokerError> {
    // rumqttd only logs a failed bind from its thread; find out here, where
    // the user can be told.
    std::net::TcpListener::bind(listen).map_err(|error| BrokerError::Bind {
        listen,
        advice: bind_advice(listen, &error),
        error,
    })?;

    let (router, server) = broker_config(listen, max_payload, credentials, open_files);
    std::thread::Builder::new()
        .name("hark-broker".into())
        .spawn(move || {
            // The router and one MQTT 3.1.1 listener, not `rumqttd::Broker`:
            // its `start` also links the console (axum, hyper), the
            // Prometheus exporter and the bridge, ~0.5 MiB of binary the hub
            // never runs.
            let router_tx = rumqttd::Router::new(0, router).spawn();
            let mut server = rumqttd::Server::new(server, router_tx, rumqttd::protocol::v4::V4);
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!("the embedded broker has no runtime: {e}");
                    return;
                }
            };
            if let Err(e) = runtime.block_on(server.start(rumqttd::LinkType::Remote)) {
                tracing::error!("embedded broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(fd) = find_listener(listen) {
            set_nodelay(fd);
            tracing::info!(%listen, "embedded broker listening");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening(listen));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn broker_config(
    listen: SocketAddr,
    max_payload: usize,
    credentials: Option<&Credentials>,
    open_files: u64,
) -> (rumqttd::RouterConfig, rumqttd::ServerSettings) {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: CONNECT_TIMEOUT_MS,
        max_payload_size: crate::mqtt::packet_limit(max_payload),
        max_inflight_count: 256,
        auth: credentials.map(|c| HashMap::from([(c.username.clone(), c.password.clone())])),
        external_auth: None,
        // Without this, a publish to a topic nobody subscribes to is an error.
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "hark".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: max_connections(open_files),
        max_outgoing_packet_count: 256,
        // rumqttd keeps a commit log per topic filter in memory; a Pi has
        // little, so keep segments small (but above the packet limit).
        max_segment_size: crate::mqtt::packet_limit(max_payload) * 2,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    (router, server)
}

/// Our own file descriptor that listens on exactly `addr`.
fn find_listener(addr: SocketAddr) -> Option<i32> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in entries.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if is_listening_on(fd, addr) {
            return Some(fd);
        }
    }
    None
}

fn is_listening_on(fd: i32, addr: SocketAddr) -> bool {
    // SAFETY: getsockopt/getsockname only write into the buffers we pass,
    // with their sizes; on a descriptor that is not a socket they fail.
    unsafe {
        let mut listening: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut listening).cast(),
            &mut len,
        ) != 0
            || listening == 0
        {
            return false;
        }
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut storage).cast(), &mut len) != 0 {
            return false;
        }
        sockaddr_to_std(&storage) == Some(addr)
    }
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

fn set_nodelay(fd: i32) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` for its size; fd is a TCP listener.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(
            "could not set TCP_NODELAY on the embedded broker: {}; replies may lag ~40 ms",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_found_among_our_descriptors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = find_listener(addr).expect("our own listener is found");
        set_nodelay(fd);
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "accepted sockets inherit TCP_NODELAY"
        );
        drop(client);
    }

    #[test]
    fn connections_leave_room_for_the_hubs_own_files() {
        assert_eq!(max_connections(1024), 256);
        assert_eq!(max_connections(524_288), MAX_CONNECTIONS);
        assert_eq!(max_connections(20), 16);
    }

    #[test]
    fn a_busy_port_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = start(addr, 65536, None, 1024).unwrap_err().to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("mqtt.listen"),
            "{err}"
        );
    }
}
