//! The hub's configuration: one TOML file (SPEC §6), read in two phases.
//!
//! [`RawConfig`] is what serde reads (unknown keys are an error that names the
//! key); [`Config`] is what the hub runs on, built by [`RawConfig::validate`]
//! and unable to hold a bad value. Every key has a default, so no file at all
//! is a valid configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ct_codecs::{Base64, Decoder};
use hark_skill_sdk::manifest::check_name;
use hark_skill_sdk::{Permission, Risk};
use serde::Deserialize;

use crate::audio::AudioBackend;
use crate::policy::Tier;
use crate::protocols::hermes::config::{HermesConfig, RawHermes};
use crate::protocols::wyoming::config::{RawWyoming, WyomingConfig};

/// The hard ceiling of a skill call (SPEC: a strict 1.5 s budget).
pub const MAX_TIMEOUT_MS: u64 = 1500;
/// Largest `mqtt.max_payload` the hub accepts.
pub const MAX_PAYLOAD_CEILING: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {key}: {message}")]
    Invalid { key: String, message: String },
}

/// A bad value at `key`, and why.
pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The file as written, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub tier: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub mqtt: RawMqtt,
    pub skills: RawSkills,
    pub trust: RawTrust,
    pub grants: BTreeMap<String, Vec<String>>,
    pub audit: RawAudit,
    pub audio: RawAudio,
    pub hermes: RawHermes,
    pub wyoming: RawWyoming,
    pub timers: RawTimers,
    pub confirm: RawConfirm,
    pub net: RawNet,
    pub metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMqtt {
    pub url: String,
    pub listen: Option<String>,
    pub prefix: Option<String>,
    pub max_payload: Option<usize>,
    pub username: String,
    pub password: String,
    pub auth: Option<String>,
    pub ca_file: String,
    pub client_cert: String,
    pub client_key: String,
    pub tls_listen: String,
    pub tls_cert: String,
    pub tls_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSkills {
    pub dir: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
    pub memory_mib: Option<u32>,
    pub workers: Option<usize>,
    /// Interpreter speed of this board; 0 or absent = measure at start.
    pub fuel_per_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTrust {
    pub keys: Vec<String>,
    pub hermetic: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    pub path: String,
    pub checkpoint_every: Option<u64>,
    pub checkpoint_s: Option<u64>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudio {
    pub backend: Option<String>,
    pub alarm_max_s: Option<u64>,
    pub media_dir: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimers {
    pub max_per_satellite: Option<usize>,
    pub max_satellites: Option<usize>,
    pub max_total: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNet {
    pub ca_file: String,
    pub http_response_kib: Option<u32>,
}

/// `[net]`: brokered HTTP for `net.http` skills (SPEC §11).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// `net.ca_file`: trust roots added to the system's, read with the config.
    pub ca_file: Option<PathBuf>,
    pub ca_certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Largest response body a skill is handed, in KiB; a manifest's
    /// `limits.http_response_kib` may only lower it.
    pub http_response_kib: u32,
}

impl RawNet {
    fn validate(self) -> Result<NetConfig, ConfigError> {
        let http_response_kib = match self.http_response_kib {
            None => crate::http::DEFAULT_RESPONSE_KIB,
            Some(n @ 1..=16_384) => n,
            Some(n) => {
                return Err(invalid(
                    "net.http_response_kib",
                    format!("{n} is outside 1..=16384 (KiB of one response body)"),
                ));
            }
        };
        let ca_file = (!self.ca_file.is_empty()).then(|| PathBuf::from(self.ca_file));
        let ca_certs = match &ca_file {
            None => Vec::new(),
            Some(path) => {
                crate::http::Client::read_ca_file(path).map_err(|m| invalid("net.ca_file", m))?
            }
        };
        Ok(NetConfig {
            ca_file,
            ca_certs,
            http_response_kib,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfirm {
    pub skills: Vec<String>,
    pub timeout_s: Option<u64>,
}

/// `[confirm]`: which skills ask before they run, besides those whose
/// manifest says `"confirm": true`, and how long a question waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmConfig {
    pub skills: std::collections::BTreeSet<String>,
    pub timeout: std::time::Duration,
}

impl Default for ConfirmConfig {
    fn default() -> ConfirmConfig {
        ConfirmConfig {
            skills: Default::default(),
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl RawConfirm {
    fn validate(self) -> Result<ConfirmConfig, ConfigError> {
        let mut skills = std::collections::BTreeSet::new();
        for (i, skill) in self.skills.into_iter().enumerate() {
            let key = format!("confirm.skills[{i}]");
            check_name(&skill).map_err(|m| invalid(&key, format!("not a skill name: {m}")))?;
            if crate::confirm::NEVER_ASKS.contains(&skill.as_str()) {
                return Err(invalid(
                    &key,
                    format!("{skill} answers or stops questions; it cannot ask one itself"),
                ));
            }
            skills.insert(skill);
        }
        let timeout_s = self.timeout_s.unwrap_or(10);
        if !(1..=300).contains(&timeout_s) {
            return Err(invalid(
                "confirm.timeout_s",
                format!("{timeout_s} is outside 1..=300 seconds"),
            ));
        }
        Ok(ConfirmConfig {
            skills,
            timeout: std::time::Duration::from_secs(timeout_s),
        })
    }
}

/// Where the hub's broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broker {
    /// Start the embedded broker in-process, listening here.
    Embedded { listen: SocketAddr },
    /// Connect to this broker; `tls` for `mqtts://`.
    External { host: String, port: u16, tls: bool },
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never let a password reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub broker: Broker,
    pub prefix: String,
    pub max_payload: usize,
    pub credentials: Option<Credentials>,
    /// When the embedded broker asks for a login (SPEC §7).
    pub auth: crate::satellites::gate::AuthMode,
    /// For `mqtts://`: whom to trust, and the client certificate if any.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The embedded broker's TLS listener, beside the plain one.
    pub tls_listen: Option<TlsListen>,
}

/// Where the embedded broker listens with TLS, and with what: PEM files,
/// read when the broker starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    pub listen: SocketAddr,
    /// The certificate chain, the server's own first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl MqttConfig {
    /// Host and port a client on this machine uses to reach the broker.
    pub fn client_target(&self) -> (String, u16) {
        match &self.broker {
            Broker::External { host, port, .. } => (host.clone(), *port),
            Broker::Embedded { listen } => {
                let ip = if listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    listen.ip().to_string()
                };
                (ip, listen.port())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct SkillsConfig {
    pub dir: PathBuf,
    pub timeout: Duration,
    pub memory_mib: u32,
    pub workers: usize,
    pub fuel_per_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct AudioConfig {
    pub backend: AudioBackend,
    pub media_dir: Option<PathBuf>,
    /// How long a finished timer's alarm rings unless stopped.
    pub alarm_max: std::time::Duration,
}

/// Gives a config read again (first) the running config's (second) value
/// of one key that needs a restart.
type KeepRunning = fn(&mut Config, &Config);

/// The validated configuration the hub runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub tier: Tier,
    pub state_dir: PathBuf,
    pub mqtt: MqttConfig,
    pub skills: SkillsConfig,
    /// `ed25519:<base64>` public keys of signers trusted in the trusted tier.
    pub trust_keys: Vec<String>,
    /// `trust.hermetic`: only WebAssembly skills that reach nothing outside
    /// the hub load (SPEC §10).
    pub trust_hermetic: bool,
    /// High-risk permissions granted per skill.
    pub grants: BTreeMap<String, Vec<Permission>>,
    pub audit_path: PathBuf,
    /// A signed checkpoint after this many records...
    pub audit_checkpoint_every: u64,
    /// ...or after this long, if anything was written since the last one.
    pub audit_checkpoint_s: Duration,
    /// The live log is closed as a segment at this size.
    pub audit_max_bytes: u64,
    pub audio: AudioConfig,
    pub hermes: HermesConfig,
    pub wyoming: WyomingConfig,
    pub timers: crate::timers::TimerLimits,
    pub confirm: ConfirmConfig,
    pub net: NetConfig,
    /// `metrics.listen`: where Prometheus text is served; `None`: nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The file it was read from (`None`: the defaults), for a reload.
    pub source: Option<PathBuf>,
    /// The file's tables as written, to tell which keys a reload changed.
    pub table: toml::Table,
}

impl Config {
    /// Reads `path`; a missing file is an error (the caller decides whether
    /// "no file" means defaults).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut config = raw.validate()?;
        config.source = Some(path.to_path_buf());
        // A second parse, for the raw table a reload compares: deserializing
        // the settings from a parsed table instead would lose the line and
        // column that the errors above point at. Start and reload only.
        config.table = toml::from_str(text).unwrap_or_default();
        Ok(config)
    }

    /// Keys whose change needs a restart: what listens, where state lives,
    /// what was started once (the broker link, the audit log, the speaker,
    /// the worker threads, the timer table, the HTTP client). Each comes with
    /// how a reload keeps the running value, so the two cannot drift apart.
    const RESTART: [(&'static str, KeepRunning); 12] = [
        ("state_dir", |new, old| {
            // A `skills.dir` left to its default is under the state_dir in
            // force, not under the one that waits for a restart.
            let skills = new.table.get("skills").and_then(|t| t.as_table());
            if skills.is_none_or(|t| !t.contains_key("dir")) {
                new.skills.dir = old.state_dir.join("skills");
            }
            new.state_dir = old.state_dir.clone();
        }),
        ("mqtt", |new, old| new.mqtt = old.mqtt.clone()),
        ("audit", |new, old| {
            new.audit_path = old.audit_path.clone();
            new.audit_checkpoint_every = old.audit_checkpoint_every;
            new.audit_checkpoint_s = old.audit_checkpoint_s;
            new.audit_max_bytes = old.audit_max_bytes;
        }),
        ("audio", |new, old| new.audio = old.audio.clone()),
        ("timers", |new, old| new.timers = old.timers),
        ("net", |new, old| new.net = old.net.clone()),
        ("metrics", |new, old| {
            new.metrics_listen = old.metrics_listen
        }),
        ("wyoming.listen", |new, old| {
            new.wyoming.listen = old.wyoming.listen
        }),
        ("hermes.enabled", |new, old| {
            new.hermes.enabled = old.hermes.enabled;
        }),
        ("skills.workers", |new, old| {
            new.skills.workers = old.skills.workers;
        }),
        ("skills.fuel_per_ms", |new, old| {
            new.skills.fuel_per_ms = old.skills.fuel_per_ms;
        }),
        ("confirm.timeout_s", |new, old| {
            new.confirm.timeout = old.confirm.timeout;
        }),
    ];

    /// The keys of [`Config::RESTART`] whose value in `self`'s file differs
    /// from `running`'s.
    pub fn needs_restart(&self, running: &Config) -> Vec<&'static str> {
        fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
            let mut parts = key.split('.');
            let mut value = table.get(parts.next()?)?;
            for part in parts {
                value = value.as_table()?.get(part)?;
            }
            Some(value)
        }
        Config::RESTART
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| lookup(&self.table, key) != lookup(&running.table, key))
            .collect()
    }

    /// `self` (a file read again) with what needs a restart taken from
    /// `running`: what a reload applies.
    pub fn reloadable_over(mut self, running: &Config) -> Config {
        for (_, keep) in Config::RESTART {
            keep(&mut self, running);
        }
        self
    }

    /// The configuration of an absent file.
    pub fn defaults() -> Config {
        RawConfig::default()
            .validate()
            .expect("the defaults are valid")
    }
}

fn default_state_dir() -> PathBuf {
    // Only root can write /var/lib; anyone else gets a folder beside them.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/hark")
    } else {
        PathBuf::from("./hark-state")
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let tier = match self.tier.as_deref() {
            None => Tier::Paranoid,
            Some(t) => t.parse().map_err(|e: String| invalid("tier", e))?,
        };
        let state_dir = match self.state_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(invalid("state_dir", "must not be empty"));
            }
            Some(dir) => dir,
            None => default_state_dir(),
        };

        let mqtt = self.mqtt.validate()?;
        let skills = self.skills.validate(&state_dir)?;

        for (i, key) in self.trust.keys.iter().enumerate() {
            check_public_key(key).map_err(|m| invalid(&format!("trust.keys[{i}]"), m))?;
        }

        let mut grants = BTreeMap::new();
        for (skill, perms) in self.grants {
            let key = format!("grants.{skill}");
            check_name(&skill).map_err(|m| invalid(&key, format!("not a skill name: {m}")))?;
            let mut parsed = Vec::new();
            for text in perms {
                let p = Permission::parse(&text).map_err(|m| invalid(&key, m))?;
                if p.risk() != Risk::High {
                    return Err(invalid(
                        &key,
                        format!(
                            "\"{text}\" is a low-risk permission; grants are only for the \
                             high-risk ones (mqtt.publish, secrets.read, net.http)"
                        ),
                    ));
                }
                if let Permission::MqttPublish(filter) = &p
                    && let Some(reserved) =
                        crate::satellites::access::reserved_overlap(filter, &mqtt.prefix, &skill)
                {
                    return Err(invalid(
                        &key,
                        format!(
                            "\"{text}\" can reach {reserved}, a topic the hub listens or speaks \
                             on with authority; no skill may publish there (SPEC §7)"
                        ),
                    ));
                }
                parsed.push(p);
            }
            grants.insert(skill, parsed);
        }

        let audit_path = if self.audit.path.is_empty() {
            state_dir.join("audit.jsonl")
        } else {
            PathBuf::from(self.audit.path)
        };
        let audit_checkpoint_every = match self.audit.checkpoint_every {
            None => 100,
            Some(n) if (1..=1_000_000).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    "audit.checkpoint_every",
                    format!("{n} is outside 1..=1000000 (records between signed checkpoints)"),
                ));
            }
        };
        let audit_max_bytes = match self.audit.max_bytes {
            None => 64 * 1024 * 1024,
            Some(n) if (65_536..=1 << 40).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    "audit.max_bytes",
                    format!(
                        "{n} is outside 65536..=1099511627776 (bytes at which the log is closed \
                         as a segment and a new one begins)"
                    ),
                ));
            }
        };
        let audit_checkpoint_s = match self.audit.checkpoint_s {
            None => 60,
            Some(n) if (1..=86_400).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    "audit.checkpoint_s",
                    format!("{n} is outside 1..=86400 (seconds between signed checkpoints)"),
                ));
            }
        };

        let backend = match self.audio.backend.as_deref().unwrap_or("auto") {
            "auto" => AudioBackend::Auto,
            "cpal" => AudioBackend::Cpal,
            "null" => AudioBackend::Null,
            other => {
                return Err(invalid(
                    "audio.backend",
                    format!("\"{other}\" is not one of auto, cpal, null"),
                ));
            }
        };
        let media_dir =
            (!self.audio.media_dir.is_empty()).then(|| PathBuf::from(self.audio.media_dir));
        let alarm_max = match self.audio.alarm_max_s.unwrap_or(300) {
            s @ 1..=3600 => std::time::Duration::from_secs(s),
            s => {
                return Err(invalid(
                    "audio.alarm_max_s",
                    format!("{s} is outside 1..=3600 seconds"),
                ));
            }
        };

        let hermes = self.hermes.validate(&mqtt.prefix)?;
        let wyoming = self.wyoming.validate()?;

        Ok(Config {
            tier,
            state_dir,
            mqtt,
            skills,
            trust_keys: self.trust.keys,
            trust_hermetic: self.trust.hermetic,
            grants,
            audit_path,
            audit_checkpoint_every,
            audit_checkpoint_s: Duration::from_secs(audit_checkpoint_s),
            audit_max_bytes,
            audio: AudioConfig {
                backend,
                media_dir,
                alarm_max,
            },
            hermes,
            wyoming,
            timers: self.timers.validate()?,
            confirm: self.confirm.validate()?,
            net: self.net.validate()?,
            metrics_listen: match self.metrics.listen.as_str() {
                "" => None,
                text => Some(text.parse().map_err(|_| {
                    invalid(
                        "metrics.listen",
                        format!("\"{text}\" is not IP:port (e.g. \"127.0.0.1:9464\"; empty = off)"),
                    )
                })?),
            },
            source: None,
            table: toml::Table::new(),
        })
    }
}

impl RawTimers {
    fn validate(self) -> Result<crate::timers::TimerLimits, ConfigError> {
        let defaults = crate::timers::TimerLimits::default();
        let check = |key: &str, value: Option<usize>, default: usize| match value {
            None => Ok(default),
            Some(n) if (1..=1_000_000).contains(&n) => Ok(n),
            Some(n) => Err(invalid(key, format!("{n} is outside 1..=1000000"))),
        };
        let limits = crate::timers::TimerLimits {
            per_satellite: check(
                "timers.max_per_satellite",
                self.max_per_satellite,
                defaults.per_satellite,
            )?,
            satellites: check(
                "timers.max_satellites",
                self.max_satellites,
                defaults.satellites,
            )?,
            total: check("timers.max_total", self.max_total, defaults.total)?,
        };
        if limits.per_satellite > limits.total {
            return Err(invalid(
                "timers.max_per_satellite",
                format!(
                    "{} is above timers.max_total ({})",
                    limits.per_satellite, limits.total
                ),
            ));
        }
        Ok(limits)
    }
}

impl RawMqtt {
    fn validate(self) -> Result<MqttConfig, ConfigError> {
        let broker = if self.url.is_empty() {
            let listen = self.listen.as_deref().unwrap_or("127.0.0.1:1883");
            let listen = listen.parse().map_err(|_| {
                invalid(
                    "mqtt.listen",
                    format!("\"{listen}\" is not an address like 127.0.0.1:1883"),
                )
            })?;
            Broker::Embedded { listen }
        } else {
            let (host, port, tls) =
                parse_broker_url(&self.url).map_err(|m| invalid("mqtt.url", m))?;
            Broker::External { host, port, tls }
        };
        let tls = self.tls(&broker)?;
        let prefix = self.prefix.unwrap_or_else(|| "hark".to_string());
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix.contains(['+', '#', '\0'])
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.starts_with('$')
        {
            return Err(invalid(
                "mqtt.prefix",
                format!(
                    "\"{prefix}\" must be 1 to 64 characters without wildcards, \
                     leading '$' or leading/trailing '/'"
                ),
            ));
        }
        let max_payload = self.max_payload.unwrap_or(64 * 1024);
        if !(256..=MAX_PAYLOAD_CEILING).contains(&max_payload) {
            return Err(invalid(
                "mqtt.max_payload",
                format!("{max_payload} is outside 256..={MAX_PAYLOAD_CEILING} bytes"),
            ));
        }
        let credentials = match (self.username.is_empty(), self.password.is_empty()) {
            (true, true) => None,
            (true, false) => {
                return Err(invalid(
                    "mqtt.password",
                    "is set but mqtt.username is empty",
                ));
            }
            (false, _) => Some(Credentials {
                username: self.username,
                password: self.password,
            }),
        };
        let auth = match self.auth.as_deref() {
            None => Default::default(),
            Some(text) => crate::satellites::gate::AuthMode::parse(text).ok_or_else(|| {
                invalid(
                    "mqtt.auth",
                    format!("\"{text}\" is not one of auto, required, off"),
                )
            })?,
        };
        let tls_listen = tls_listen(&broker, self.tls_listen, self.tls_cert, self.tls_key)?;
        Ok(MqttConfig {
            broker,
            prefix,
            max_payload,
            credentials,
            auth,
            tls,
            tls_listen,
        })
    }

    /// The TLS settings of an `mqtts://` url; the keys that need one are
    /// an error without it.
    fn tls(
        &self,
        broker: &Broker,
    ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, ConfigError> {
        let path = |text: &str| (!text.is_empty()).then(|| PathBuf::from(text));
        let (ca_file, cert, key) = (
            path(&self.ca_file),
            path(&self.client_cert),
            path(&self.client_key),
        );
        if !matches!(broker, Broker::External { tls: true, .. }) {
            for (name, set) in [
                ("mqtt.ca_file", &ca_file),
                ("mqtt.client_cert", &cert),
                ("mqtt.client_key", &key),
            ] {
                if set.is_some() {
                    return Err(invalid(name, "is set but mqtt.url is not mqtts://"));
                }
            }
            return Ok(None);
        }
        let client = match (&cert, &key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (Some(_), None) => {
                return Err(invalid(
                    "mqtt.client_key",
                    "is needed with mqtt.client_cert",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "mqtt.client_cert",
                    "is needed with mqtt.client_key",
                ));
            }
        };
        crate::mqtt::tls::client_config(ca_file.as_deref(), client)
            .map(Some)
            .map_err(|(key, message)| invalid(key, message))
    }
}

/// `mqtt.tls_listen` with its certificate and key, all three or none.
fn tls_listen(
    broker: &Broker,
    listen: String,
    cert: String,
    key: String,
) -> Result<Option<TlsListen>, ConfigError> {
    if listen.is_empty() {
        for (name, value) in [("mqtt.tls_cert", &cert), ("mqtt.tls_key", &key)] {
            if !value.is_empty() {
                return Err(invalid(name, "is set but mqtt.tls_listen is empty"));
            }
        }
        return Ok(None);
    }
    let Broker::Embedded { listen: plain } = broker else {
        return Err(invalid(
            "mqtt.tls_listen",
            "is for the embedded broker, which does not start when mqtt.url is set",
        ));
    };
    let addr: SocketAddr = listen.parse().map_err(|_| {
        invalid(
            "mqtt.tls_listen",
            format!("\"{listen}\" is not an address like 0.0.0.0:8883"),
        )
    })?;
    if addr.port() == plain.port()
        && (addr.ip() == plain.ip() || addr.ip().is_unspecified() || plain.ip().is_unspecified())
    {
        return Err(invalid(
            "mqtt.tls_listen",
            format!("{addr} overlaps mqtt.listen ({plain}); give TLS its own port"),
        ));
    }
    for (name, value) in [("mqtt.tls_cert", &cert), ("mqtt.tls_key", &key)] {
        if value.is_empty() {
            return Err(invalid(
                name,
                "is empty; the TLS listener (mqtt.tls_listen) needs a PEM certificate and key",
            ));
        }
    }
    Ok(Some(TlsListen {
        listen: addr,
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
    }))
}

impl RawSkills {
    fn validate(self, state_dir: &Path) -> Result<SkillsConfig, ConfigError> {
        let dir = self.dir.unwrap_or_else(|| state_dir.join("skills"));
        let timeout_ms = self.timeout_ms.unwrap_or(MAX_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(invalid(
                "skills.timeout_ms",
                format!(
                    "{timeout_ms} is outside 1..={MAX_TIMEOUT_MS}: the budget can only be lowered"
                ),
            ));
        }
        let memory_mib = self.memory_mib.unwrap_or(16);
        if !(1..=1024).contains(&memory_mib) {
            return Err(invalid(
                "skills.memory_mib",
                format!("{memory_mib} is outside 1..=1024"),
            ));
        }
        let workers = self.workers.unwrap_or(2);
        if !(1..=64).contains(&workers) {
            return Err(invalid(
                "skills.workers",
                format!("{workers} is outside 1..=64"),
            ));
        }
        let fuel_per_ms = self.fuel_per_ms.filter(|&f| f > 0);
        Ok(SkillsConfig {
            dir,
            timeout: Duration::from_millis(timeout_ms),
            memory_mib,
            workers,
            fuel_per_ms,
        })
    }
}

/// `mqtt://host:port`, `tcp://host:port` or `host:port` (port defaults to 1883).
pub fn parse_broker_url(url: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls) = if let Some(rest) = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
    {
        (rest, false)
    } else if let Some(rest) = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("ssl://"))
    {
        (rest, true)
    } else if url.contains("://") {
        return Err(format!("\"{url}\": the scheme must be mqtt:// or mqtts://"));
    } else {
        (url, false)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("\"{url}\": \"{port}\" is not a port number"))?;
            (host, port)
        }
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!(
            "\"{url}\" is not a broker address like mqtt://broker.lan:1883"
        ));
    }
    if port == 0 {
        return Err(format!("\"{url}\": port 0 is not a broker port"));
    }
    Ok((host.to_string(), port, tls))
}

/// `ed25519:<base64 of 32 bytes>`.
pub fn check_public_key(key: &str) -> Result<(), String> {
    let Some(b64) = key.strip_prefix("ed25519:") else {
        return Err(format!(
            "\"{key}\" must look like ed25519:<base64 public key>"
        ));
    };
    match Base64::decode_to_vec(b64, None).ok() {
        Some(bytes) if bytes.len() == 32 => Ok(()),
        Some(bytes) => Err(format!(
            "an ed25519 public key is 32 bytes, this one is {}",
            bytes.len()
        )),
        None => Err(format!("\"{b64}\" is not base64")),
    }
}

/// The commented file `hark init` writes: the defaults, explained.
pub const DEFAULT_CONFIG: &str = include_str!("../../hark.example.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("hark.toml"))
    }

    #[test]
    fn a_reload_applies_the_tier_and_keeps_what_needs_a_restart() {
        let path = Path::new("hark.toml");
        let running = Config::from_toml("[mqtt]\nlisten = \"127.0.0.1:1883\"\n", path).unwrap();
        let edited = Config::from_toml(
            "tier = \"trusted\"\nstate_dir = \"/elsewhere\"\n[mqtt]\nlisten = \"127.0.0.1:1884\"\n\
             [confirm]\nskills = [\"dice\"]\n",
            path,
        )
        .unwrap();
        assert_eq!(edited.needs_restart(&running), vec!["state_dir", "mqtt"]);
        let applied = edited.reloadable_over(&running);
        assert_eq!(applied.tier, Tier::Trusted);
        assert!(applied.confirm.skills.contains("dice"));
        assert_eq!(applied.state_dir, running.state_dir);
        assert_eq!(
            format!("{:?}", applied.mqtt.broker),
            format!("{:?}", running.mqtt.broker)
        );
        assert_eq!(applied.source.as_deref(), Some(path));
    }

    #[test]
    fn every_key_a_reload_cannot_apply_is_reported_and_keeps_its_running_value() {
        let path = Path::new("hark.toml");
        let running = Config::from_toml("", path).unwrap();
        let edited = Config::from_toml(
            "state_dir = \"/elsewhere\"\n\
             [mqtt]\nlisten = \"127.0.0.1:1884\"\n\
             [audit]\ncheckpoint_every = 7\ncheckpoint_s = 9\nmax_bytes = 1048576\n\
             [audio]\nbackend = \"null\"\nalarm_max_s = 5\n\
             [timers]\nmax_total = 100\n\
             [net]\nhttp_response_kib = 16\n\
             [metrics]\nlisten = \"127.0.0.1:9100\"\n\
             [wyoming]\nlisten = \"127.0.0.1:10700\"\n\
             [hermes]\nenabled = true\n\
             [skills]\nworkers = 3\nfuel_per_ms = 1000\n\
             [confirm]\ntimeout_s = 30\n",
            path,
        )
        .unwrap();
        let keys: Vec<&str> = Config::RESTART.iter().map(|(key, _)| *key).collect();
        assert_eq!(edited.needs_restart(&running), keys);
        // What a reload applies is the running config, to the last field.
        let mut applied = edited.reloadable_over(&running);
        applied.table = running.table.clone();
        assert_eq!(format!("{applied:?}"), format!("{running:?}"));

        // `skills.dir` reloads; when the file names it, it is applied.
        let edited = Config::from_toml(
            "state_dir = \"/elsewhere\"\n[skills]\ndir = \"/elsewhere/skills\"\n",
            path,
        )
        .unwrap();
        let applied = edited.reloadable_over(&running);
        assert_eq!(applied.skills.dir, Path::new("/elsewhere/skills"));
        assert_eq!(applied.state_dir, running.state_dir);
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.tier, Tier::Paranoid);
        assert_eq!(
            c.mqtt.broker,
            Broker::Embedded {
                listen: "127.0.0.1:1883".parse().unwrap()
            }
        );
        assert_eq!(c.mqtt.prefix, "hark");
        assert_eq!(c.mqtt.max_payload, 65536);
        assert_eq!(c.skills.timeout, Duration::from_millis(1500));
        assert_eq!(c.skills.memory_mib, 16);
        assert_eq!(c.skills.workers, 2);
        assert_eq!(c.audit_path, c.state_dir.join("audit.jsonl"));
        assert_eq!(c.skills.dir, c.state_dir.join("skills"));
        assert_eq!(c.audio.backend, AudioBackend::Auto);
        assert!(!c.hermes.enabled);
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let c = parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.tier, Tier::Paranoid);
        assert_eq!(c.mqtt.prefix, "hark");
        assert!(c.grants.is_empty());
        assert_eq!(c.audit_checkpoint_every, 100);
        assert_eq!(c.audit_checkpoint_s, Duration::from_secs(60));
        assert_eq!(c.audit_max_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[mqtt]\nurll = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("urll"), "{err}");
        let err = parse("colour = 1\n").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("tier = \"yolo\"", "tier"),
            ("[mqtt]\nlisten = \"nowhere\"", "mqtt.listen"),
            ("[mqtt]\nurl = \"http://x\"", "mqtt.url"),
            ("[mqtt]\nprefix = \"a/#\"", "mqtt.prefix"),
            ("[mqtt]\nmax_payload = 1", "mqtt.max_payload"),
            ("[mqtt]\npassword = \"p\"", "mqtt.password"),
            ("[mqtt]\nauth = \"maybe\"", "mqtt.auth"),
            ("[skills]\ntimeout_ms = 5000", "skills.timeout_ms"),
            ("[skills]\nworkers = 0", "skills.workers"),
            ("[trust]\nkeys = [\"rsa:abc\"]", "trust.keys[0]"),
            ("[grants]\nlights = [\"kv\"]", "grants.lights"),
            (
                "[grants]\nsneaky = [\"mqtt.publish:hermes/#\"]",
                "hermes/intent/#",
            ),
            ("[grants]\nsneaky = [\"mqtt.publish:+/reply/+\"]", "hark/#"),
            (
                "[grants]\nlights = [\"mqtt.publish:a/#/b\"]",
                "grants.lights",
            ),
            ("[audio]\nbackend = \"pulse\"", "audio.backend"),
            ("[audio]\nalarm_max_s = 0", "audio.alarm_max_s"),
            ("[audio]\nalarm_max_s = 3601", "audio.alarm_max_s"),
            ("[confirm]\ntimeout_s = 0", "confirm.timeout_s"),
            ("[net]\nhttp_response_kib = 0", "net.http_response_kib"),
            ("[metrics]\nlisten = \"localhost:9464\"", "metrics.listen"),
            ("[net]\nhttp_response_kib = 16385", "net.http_response_kib"),
            ("[net]\nca_file = \"/nonexistent/ca.pem\"", "net.ca_file"),
            ("[confirm]\ntimeout_s = 301", "confirm.timeout_s"),
            ("[confirm]\nskills = [\"Lights!\"]", "confirm.skills[0]"),
            (
                "[confirm]\nskills = [\"system.confirm\"]",
                "confirm.skills[0]",
            ),
            ("[hermes]\nconfirm_yes = \"\"", "hermes.confirm_yes"),
            ("[hermes]\nconfirm_no = \"Yes\"", "hermes.confirm_no"),
            (
                "[hermes]\nconfirm_yes = \"Sure\"\n[hermes.intents]\nSure = \"timer.set\"",
                "hermes.confirm_yes",
            ),
            ("[audit]\ncheckpoint_every = 0", "audit.checkpoint_every"),
            ("[audit]\ncheckpoint_s = 0", "audit.checkpoint_s"),
            ("[audit]\nmax_bytes = 100", "audit.max_bytes"),
            ("[audit]\ncheckpoint_s = 100000", "audit.checkpoint_s"),
            (
                "[hermes.intents]\nSetTimer = \"Timer Set\"",
                "hermes.intents.SetTimer",
            ),
            (
                "[mqtt]\nprefix = \"hermes\"\n[hermes]\nenabled = true",
                "mqtt.prefix",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
        }
    }

    #[test]
    fn broker_urls_parse() {
        assert_eq!(
            parse_broker_url("mqtt://broker.lan:1884").unwrap(),
            ("broker.lan".into(), 1884, false)
        );
        assert_eq!(
            parse_broker_url("broker.lan").unwrap(),
            ("broker.lan".into(), 1883, false)
        );
        assert_eq!(
            parse_broker_url("tcp://10.0.0.2:1883/").unwrap(),
            ("10.0.0.2".into(), 1883, false)
        );
        assert_eq!(
            parse_broker_url("mqtt://[::1]:1883").unwrap(),
            ("::1".into(), 1883, false)
        );
        assert_eq!(
            parse_broker_url("mqtts://broker").unwrap(),
            ("broker".into(), 8883, true)
        );
        assert!(
            parse_broker_url("ws://broker")
                .unwrap_err()
                .contains("mqtts://")
        );
        assert!(parse_broker_url("mqtt://:1883").is_err());
        assert!(parse_broker_url("mqtt://host:99999").is_err());
    }

    #[test]
    fn grants_and_credentials_are_kept() {
        let c = parse(
            "[mqtt]\nurl = \"mqtt://b:1883\"\nusername = \"hub\"\npassword = \"s3cret\"\n\
             [grants]\nlights = [\"mqtt.publish:zigbee2mqtt/+/set\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.mqtt.broker,
            Broker::External {
                host: "b".into(),
                port: 1883,
                tls: false
            }
        );
        let creds = c.mqtt.credentials.unwrap();
        assert_eq!(creds.username, "hub");
        assert!(!format!("{creds:?}").contains("s3cret"));
        assert_eq!(
            c.grants["lights"],
            [Permission::MqttPublish("zigbee2mqtt/+/set".into())]
        );
    }
}
