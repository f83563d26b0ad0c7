//! `[wyoming]` in `hark.toml`: where to listen for Wyoming clients (Home
//! Assistant), which satellite a listener speaks for, and the Wyoming intent
//! names to map to skills.

use std::collections::BTreeMap;
use std::net::SocketAddr;

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
        Ok(WyomingConfig {
            listen,
            satellite,
            intents: self.intents,
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
