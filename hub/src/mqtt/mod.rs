//! The link to the broker: client options shared by the hub and the CLI,
//! and the reconnect backoff. Topic names belong to the protocols that use
//! them (`crate::protocols`).

use std::time::Duration;

pub mod probe;
pub mod tls;

use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions};

use crate::config::MqttConfig;

/// Largest MQTT packet (protocol maximum): what the hub may send.
pub const MAX_PACKET: usize = 268_435_455;

/// Largest packet the hub reads from its broker, and the embedded broker
/// from a client: `mqtt.max_payload` with headroom (32 times, at least
/// 2 MiB), so an intent somewhat over the limit still reaches the hub and is
/// answered `payload_too_large` instead of silently costing the satellite its
/// connection, while a 200 MiB packet is refused from its header, before a
/// byte of it is buffered. A packet over this from an external broker drops
/// the hub's connection; the hub then reconnects once with a clean session,
/// so the broker forgets the packet instead of delivering it again forever.
pub fn packet_limit(max_payload: usize) -> usize {
    max_payload
        .saturating_mul(32)
        .clamp(2 * 1024 * 1024, MAX_PACKET)
}

/// The size of the packet a connection error refused as too large, if that
/// is what it was.
pub fn oversized_packet(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// Builds a client for `config` with `TCP_NODELAY` on (see the crate docs on
/// delayed ACKs) and room for a burst of requests.
pub fn connect(
    config: &MqttConfig,
    client_id: &str,
    persistent: bool,
    last_will: Option<LastWill>,
) -> (AsyncClient, EventLoop) {
    let (host, port) = config.client_target();
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(!persistent)
        .set_max_packet_size(packet_limit(config.max_payload), MAX_PACKET)
        .set_inflight(100);
    if let Some(creds) = &config.credentials {
        options.set_credentials(creds.username.clone(), creds.password.clone());
    }
    if let Some(tls) = &config.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls.clone()),
        ));
    }
    if let Some(will) = last_will {
        options.set_last_will(will);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(5);
    eventloop.set_network_options(network);
    (client, eventloop)
}

/// Exponential backoff between reconnect attempts: 0.25 s doubling to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }

    /// Whether no failure happened since the last success (the first one is
    /// worth a warning; repeats are logged quietly).
    pub fn is_first(&self) -> bool {
        self.next == Backoff::FIRST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packet_limit_leaves_headroom_over_max_payload() {
        assert_eq!(packet_limit(65_536), 2 * 1024 * 1024);
        assert_eq!(packet_limit(1 << 20), 32 << 20);
        assert_eq!(packet_limit(16 << 20), MAX_PACKET);
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..10).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }
}
