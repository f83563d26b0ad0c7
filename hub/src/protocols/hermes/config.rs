//! `[hermes]` in `hark.toml`: whether to serve Rhasspy satellites, and the
//! Rhasspy intent names to map to skills.

use std::collections::BTreeMap;

use hark_skill_sdk::manifest::check_name;
use serde::Deserialize;

use crate::config::{ConfigError, invalid};

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHermes {
    pub enabled: bool,
    pub intents: BTreeMap<String, String>,
}

/// The section as the hub runs on it.
#[derive(Debug, Clone, Default)]
pub struct HermesConfig {
    pub enabled: bool,
    /// Rhasspy intent name -> skill name.
    pub intents: BTreeMap<String, String>,
}

impl RawHermes {
    /// `prefix` is `mqtt.prefix`, which must not overlap the Hermes topics.
    pub fn validate(self, prefix: &str) -> Result<HermesConfig, ConfigError> {
        if self.enabled && (prefix == "hermes" || prefix.starts_with("hermes/")) {
            return Err(invalid(
                "mqtt.prefix",
                format!(
                    "\"{prefix}\" overlaps the Hermes topics (hermes/...) that hermes.enabled \
                     serves; keep the default \"hark\" or choose another prefix"
                ),
            ));
        }
        for (name, skill) in &self.intents {
            check_name(skill).map_err(|m| {
                invalid(
                    &format!("hermes.intents.{name}"),
                    format!("not a skill name: {m}"),
                )
            })?;
        }
        Ok(HermesConfig {
            enabled: self.enabled,
            intents: self.intents,
        })
    }
}
