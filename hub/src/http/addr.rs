//! Where a request may connect: a granted address as it is, a granted name
//! through the system resolver within the call's deadline, and never a name
//! that resolves into loopback, private, link-local, multicast or other
//! non-public ranges (a "weather" grant must not become a scanner of the
//! home network, nor follow a DNS answer rebound into it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use hark_skill_sdk::manifest::HttpOrigin;

use super::Failure;

/// Lookups running at once. The system resolver cannot be interrupted, so
/// one that outlives its call's deadline runs on, abandoned, until the
/// resolver gives up: this bounds how many threads a slow DNS can hold.
pub const MAX_RESOLVING: usize = 8;

/// The range `ip` is in when it is not a public address, by name.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first == 0x0064 && v6.segments()[1] == 0xff9b {
                // NAT64 (64:ff9b::/96) carries an IPv4 address: judge that.
                let [.., a, b] = v6.segments();
                non_public_v4(Ipv4Addr::from(u32::from(a) << 16 | u32::from(b)))
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation")
            } else {
                None
            }
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if a == 0 {
        Some("\"this network\" (0.0.0.0/8)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

/// The addresses to connect to for `origin`.
pub fn resolve(
    origin: &HttpOrigin,
    deadline: Instant,
    resolving: &Arc<AtomicUsize>,
) -> Result<Vec<SocketAddr>, Failure> {
    // Named literally in the grant: allowed, whatever its range.
    if let Ok(ip) = origin.host.parse::<Ipv4Addr>() {
        return Ok(vec![SocketAddr::new(IpAddr::V4(ip), origin.port)]);
    }
    let found = lookup(&origin.host, origin.port, deadline, resolving)?;
    if let Some((ip, range)) = found
        .iter()
        .find_map(|a| non_public(a.ip()).map(|r| (a.ip(), r)))
    {
        return Err(Failure::Refused {
            rule: "net.http.private_address",
            reason: format!(
                "{} resolves to {ip}, a {range} address; a granted name may not lead into the \
                 hub's own networks. To reach a machine there, grant its address \
                 (net.http:{}:{})",
                origin.host,
                ip_text(ip),
                origin.port
            ),
        });
    }
    Ok(found)
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| format!("[{v6}]"), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `host` through the system resolver on a thread of its own, waited for
/// until `deadline`.
fn lookup(
    host: &str,
    port: u16,
    deadline: Instant,
    resolving: &Arc<AtomicUsize>,
) -> Result<Vec<SocketAddr>, Failure> {
    if resolving.fetch_add(1, Ordering::AcqRel) >= MAX_RESOLVING {
        resolving.fetch_sub(1, Ordering::AcqRel);
        return Err(Failure::Failed(format!(
            "{MAX_RESOLVING} name lookups are already waiting on a slow resolver; try again later"
        )));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let (name, count) = (host.to_string(), resolving.clone());
    let spawned = std::thread::Builder::new()
        .name("hark-resolve".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let found = (name.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect);
            count.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(found);
        });
    if let Err(e) = spawned {
        resolving.fetch_sub(1, Ordering::AcqRel);
        return Err(Failure::Failed(format!("cannot start a name lookup: {e}")));
    }
    let wait = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(wait) {
        Ok(Ok(found)) => {
            let found: Vec<SocketAddr> = found;
            if found.is_empty() {
                Err(Failure::Failed(format!("{host} has no address")))
            } else {
                Ok(found)
            }
        }
        Ok(Err(e)) => Err(Failure::Failed(format!("cannot resolve {host}: {e}"))),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Failure::Deadline),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(Failure::Failed(format!("the lookup of {host} failed")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_a_granted_name_may_not_lead_into() {
        for (ip, range) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.5", "private"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.251", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("0.0.0.0", "\"this network\" (0.0.0.0/8)"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:192.168.1.1", "private"),
            ("64:ff9b::a00:1", "private"),
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), Some(range), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn a_name_resolving_to_loopback_is_refused_and_the_address_itself_is_not() {
        let resolving = Arc::default();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let name = HttpOrigin::of_grant("localhost:8080").unwrap();
        match resolve(&name, deadline, &resolving) {
            Err(Failure::Refused { rule, reason }) => {
                assert_eq!(rule, "net.http.private_address");
                assert!(reason.contains("loopback"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let literal = HttpOrigin::of_grant("127.0.0.1:8080").unwrap();
        let found = resolve(&literal, deadline, &resolving).unwrap();
        assert_eq!(found, vec!["127.0.0.1:8080".parse().unwrap()]);
    }
}
