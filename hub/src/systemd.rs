//! systemd's service notifications (`sd_notify`), without libsystemd: one
//! datagram to `$NOTIFY_SOCKET` per message. With `Type=notify` the unit
//! counts as started once the hub says `READY=1` (connected to its broker
//! and subscribed: `systemctl start hark` returns when the hub answers);
//! with `WatchdogSec=` the hub's own loop says `WATCHDOG=1` every half of
//! it, so a loop that hangs stops the pings and systemd restarts the hub;
//! `STOPPING=1` as it drains. Outside systemd (no `NOTIFY_SOCKET`) every
//! call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the variables systemd sets: `NOTIFY_SOCKET` (a path, or `@name`
    /// in the abstract namespace), `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let socket = var("NOTIFY_SOCKET").and_then(|path| match connect(&path) {
            Ok(socket) => Some(socket),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={path}: {e}; systemd will not hear from the hub");
                None
            }
        });
        // A watchdog set for another process (a wrapper's) is not ours.
        let ours = var("WATCHDOG_PID").is_none_or(|pid| pid == std::process::id().to_string());
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && ours)
            .map(|usec| Duration::from_micros(usec) / 2);
        Notifier { socket, watchdog }
    }

    /// How often to say `WATCHDOG=1`: half of `WatchdogSec`, if it is set.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog)
    }

    /// Sends `state` (`READY=1`, `WATCHDOG=1`, `STATUS=...`, newline-separated).
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::debug!("sd_notify {state:?}: {e}");
        }
    }
}

fn connect(path: &str) -> std::io::Result<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(path)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}
