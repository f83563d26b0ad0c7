//! `[wyoming]` in `hark.toml`: where to listen for Wyoming clients (Home
//! Assistant), which satellite a listener speaks for, and the Wyoming intent
//! names to map to skills.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use hark_skill_sdk::manifest::check_name;
use serde::Deserialize;

use crate::config::{ConfigError, invalid};
use crate::protocols::native::topics::check_satellite_id;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWyoming {
    pub listen: String,
    pub satellite: String,
    pub intents: BTreeMap<String, String>,
    pub allow: Option<Vec<String>>,
}

/// The section as the hub runs on it.
#[derive(Debug, Clone, Default)]
pub struct WyomingConfig {
    /// `None`: Wyoming is off.
    pub listen: Option<SocketAddr>,
    /// Every request on the listener is this satellite's, whatever its
    /// `context` says; `None`: the context's `satellite_id`, else the peer.
    pub satellite: Option<String>,
    /// Wyoming intent name -> skill name.
    pub intents: BTreeMap<String, String>,
    /// Who may connect (`wyoming.allow`); default: this machine only.
    pub allow: Vec<Allowed>,
}

impl WyomingConfig {
    /// Whether `wyoming.allow` lets `ip` connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|a| a.contains(ip))
    }
}

/// One `wyoming.allow` entry: an address, or a network as `addr/bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    net: IpAddr,
    bits: u8,
}

impl Allowed {
    pub fn parse(text: &str) -> Result<Allowed, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (text, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| {
            format!(
                "\"{text}\" is not an address like 192.168.1.20 or a network like 192.168.1.0/24"
            )
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("\"{text}\": the prefix length must be 0 to {max}"))?,
        };
        Ok(Allowed { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (net, ip, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

/// `wyoming.allow` when unset: this machine.
fn loopback() -> Vec<Allowed> {
    vec![
        Allowed::parse("127.0.0.0/8").expect("constant"),
        Allowed::parse("::1").expect("constant"),
    ]
}

impl RawWyoming {
    pub fn validate(self) -> Result<WyomingConfig, ConfigError> {
        let listen = match self.listen.trim() {
            "" => None,
            addr => Some(addr.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "wyoming.listen",
                    format!("\"{addr}\" is not an address and port like \"0.0.0.0:10600\": {e}"),
                )
            })?),
        };
        let satellite = match self.satellite.as_str() {
            "" => None,
            id => {
                check_satellite_id(id).map_err(|m| {
                    invalid(
                        "wyoming.satellite",
                        m.replace("the satellite id in the topic", "the satellite id"),
                    )
                })?;
                Some(id.to_string())
            }
        };
        for (name, skill) in &self.intents {
            check_name(skill).map_err(|m| {
                invalid(
                    &format!("wyoming.intents.{name}"),
                    format!("not a skill name: {m}"),
                )
            })?;
        }
        let allow = match self.allow {
            None => loopback(),
            Some(entries) => entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    Allowed::parse(e).map_err(|m| invalid(&format!("wyoming.allow[{i}]"), m))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(WyomingConfig {
            listen,
            satellite,
            intents: self.intents,
            allow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(listen: &str, satellite: &str) -> RawWyoming {
        RawWyoming {
            listen: listen.into(),
            satellite: satellite.into(),
            intents: BTreeMap::new(),
            allow: None,
        }
    }

    #[test]
    fn allow_defaults_to_this_machine_and_takes_addresses_and_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let local = raw("", "").validate().unwrap().allow;
        assert!(local.iter().any(|a| a.contains(ip("127.0.0.1"))));
        assert!(local.iter().any(|a| a.contains(ip("::1"))));
        assert!(local.iter().any(|a| a.contains(ip("::ffff:127.0.0.1"))));
        assert!(!local.iter().any(|a| a.contains(ip("192.168.1.5"))));
        let lan = Allowed::parse("192.168.1.0/24").unwrap();
        assert!(lan.contains(ip("192.168.1.77")) && !lan.contains(ip("192.168.2.1")));
        assert!(Allowed::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Allowed::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        for bad in ["host.lan", "10.0.0.0/33", "10.0.0.0/x"] {
            let mut r = raw("", "");
            r.allow = Some(vec![bad.into()]);
            let e = r.validate().unwrap_err().to_string();
            assert!(e.contains("wyoming.allow[0]"), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_listen_is_off_and_a_bad_one_names_the_key() {
        assert_eq!(raw("", "").validate().unwrap().listen, None);
        let on = raw("0.0.0.0:10600", "den").validate().unwrap();
        assert_eq!(on.listen, Some("0.0.0.0:10600".parse().unwrap()));
        assert_eq!(on.satellite.as_deref(), Some("den"));
        let e = raw("localhost", "").validate().unwrap_err().to_string();
        assert!(e.contains("wyoming.listen"), "{e}");
        let e = raw("", "living room").validate().unwrap_err().to_string();
        assert!(e.contains("wyoming.satellite") && e.contains("' '"), "{e}");
    }
}
