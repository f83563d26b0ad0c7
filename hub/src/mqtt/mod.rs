//! The link to the broker: client options shared by the hub and the CLI,
//! and the reconnect backoff. Topic names live in [`topics`].

use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions};

use crate::config::MqttConfig;

pub mod topics;

/// Largest MQTT packet (protocol maximum). The hub reads whatever its broker
/// delivers and answers oversized payloads itself; a lower client limit would
/// drop the connection, and with a persistent session the broker would
/// redeliver the same message forever.
pub const MAX_PACKET: usize = 268_435_455;

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
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(100);
    if let Some(creds) = &config.credentials {
        options.set_credentials(creds.username.clone(), creds.password.clone());
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
