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
    pub confirm_yes: Option<String>,
    pub confirm_no: Option<String>,
    pub sites: Vec<String>,
}

/// The section as the hub runs on it.
#[derive(Debug, Clone, Default)]
pub struct HermesConfig {
    pub enabled: bool,
    /// Rhasspy intent name -> skill name.
    pub intents: BTreeMap<String, String>,
    /// The Rhasspy intents that answer a question of a sensitive skill:
    /// `system.confirm` with `answer` yes or no (SPEC §8.1).
    pub confirm_yes: String,
    pub confirm_no: String,
    /// The siteIds whose intents the hub serves; empty: any. A broker cannot
    /// bind a payload's siteId to a login, so this is the only check (SPEC §7).
    pub sites: Vec<String>,
}

impl HermesConfig {
    /// What Rhasspy may hear while a question waits (`intentFilter`): the
    /// yes and no intents, and any other mapped to `system.confirm`.
    pub fn confirm_intents(&self) -> Vec<String> {
        let mut names = vec![self.confirm_yes.clone(), self.confirm_no.clone()];
        for (name, skill) in &self.intents {
            if skill == crate::confirm::CONFIRM && !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
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
        let confirm_yes = self.confirm_yes.unwrap_or_else(|| "Yes".to_string());
        let confirm_no = self.confirm_no.unwrap_or_else(|| "No".to_string());
        for (key, name) in [
            ("hermes.confirm_yes", &confirm_yes),
            ("hermes.confirm_no", &confirm_no),
        ] {
            if name.is_empty() || name.chars().count() > 64 {
                return Err(invalid(
                    key,
                    "must be a Rhasspy intent name of 1 to 64 characters",
                ));
            }
            if let Some(skill) = self.intents.get(name) {
                return Err(invalid(
                    key,
                    format!(
                        "\"{name}\" is also mapped to {skill} in [hermes.intents]; an intent \
                         that answers a question cannot also run a skill"
                    ),
                ));
            }
        }
        if confirm_yes == confirm_no {
            return Err(invalid(
                "hermes.confirm_no",
                format!("\"{confirm_no}\" is also hermes.confirm_yes; yes and no need two intents"),
            ));
        }
        for (i, site) in self.sites.iter().enumerate() {
            crate::protocols::native::topics::check_satellite_id(site).map_err(|m| {
                invalid(
                    &format!("hermes.sites[{i}]"),
                    m.replace("the satellite id in the topic", "the siteId")
                        .replace("the satellite id", "the siteId"),
                )
            })?;
        }
        Ok(HermesConfig {
            enabled: self.enabled,
            intents: self.intents,
            confirm_yes,
            confirm_no,
            sites: self.sites,
        })
    }
}
