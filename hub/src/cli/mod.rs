//! The commands besides `hark run`: what they do, separate from how `main`
//! parses them, so tests can call them directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

pub mod doctor;
pub mod inventory;
pub mod satellite;
pub mod send;
pub mod skill;
pub mod status;

/// Where the config comes from: `--config`, else `HARK_CONFIG`, else
/// `/etc/hark/hark.toml` when it exists, else the built-in defaults.
pub fn load_config(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let chosen = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("HARK_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = chosen {
        return Ok((Config::load(&path)?, Some(path)));
    }
    let system = PathBuf::from("/etc/hark/hark.toml");
    if system.exists() {
        return Ok((Config::load(&system)?, Some(system)));
    }
    Ok((Config::defaults(), None))
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where `hark init` looks for a broker unless told: the embedded broker's
/// default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1883";

/// The config `hark init` writes for `listen` (see [`init`]), and what it
/// found there, in words.
pub fn init_text(listen: SocketAddr) -> (String, String) {
    use crate::mqtt::probe::{Found, probe};
    let mut ask = listen;
    if ask.ip().is_unspecified() {
        ask.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let default_listen = format!("listen = \"{DEFAULT_LISTEN}\"");
    match probe(ask, std::time::Duration::from_millis(500)) {
        Found::Broker { open } => (
            crate::config::DEFAULT_CONFIG.replacen(
                "url = \"\"",
                &format!("url = \"mqtt://{ask}\""),
                1,
            ),
            format!(
                "an MQTT broker already listens on {ask}: the config uses it (mqtt.url) instead \
                 of starting the embedded broker{}",
                if open {
                    ""
                } else {
                    "; it asks for credentials: set mqtt.username and mqtt.password"
                }
            ),
        ),
        Found::Nothing => (
            crate::config::DEFAULT_CONFIG.replacen(
                &default_listen,
                &format!("listen = \"{listen}\""),
                1,
            ),
            format!("no broker on {ask}: the hub will start its embedded broker there"),
        ),
        Found::Other => (
            crate::config::DEFAULT_CONFIG.replacen(
                &default_listen,
                &format!("listen = \"{listen}\""),
                1,
            ),
            format!(
                "warning: a program that is not an MQTT broker holds {ask}; set mqtt.listen to \
                 a free port (or mqtt.url to your broker) before `hark run`"
            ),
        ),
    }
}

/// `hark init`: writes the commented default config, made to fit the
/// machine: when an MQTT broker already answers on `listen` (Home
/// Assistant and Zigbee2MQTT households usually run mosquitto on 1883),
/// the config uses it as `mqtt.url` instead of starting a second broker
/// on the same port. Returns what it found, for the person to read.
pub fn init(path: &Path, force: bool, listen: SocketAddr) -> Result<String, InitError> {
    if path.exists() && !force {
        return Err(InitError::Exists(path.to_path_buf()));
    }
    let (text, found) = init_text(listen);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| InitError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| InitError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(found)
}

/// `hark audit key`: `ed25519:<base64>` of the public half of the hub's
/// signing key: from `hub.pub`, which the `hark` group may read, else from
/// `hub.key` itself (its owner only).
pub fn audit_key(config: &Config) -> Result<String, String> {
    use crate::audit::checkpoint::{KeyError, hub_key_path, hub_public_key_path, read_key};
    if let Ok(text) = std::fs::read_to_string(hub_public_key_path(&config.state_dir))
        && let Ok(key) = crate::signing::parse_key(text.trim())
    {
        return Ok(crate::signing::format_key(&key));
    }
    let path = hub_key_path(&config.state_dir);
    match read_key(&path) {
        Ok(key) => Ok(crate::signing::format_key(&key.public_key())),
        Err(KeyError::Missing) => Err(format!(
            "there is no hub key at {} yet: the hub makes it at its first start (hark run)",
            path.display()
        )),
        Err(KeyError::Other(reason)) => Err(format!("{}: {reason}", path.display())),
    }
}

/// How `hark audit verify` ended: intact (exit 0), broken (1), or not checked because something
/// could not be read (2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Intact,
    Broken,
    Unreadable,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Intact => 0,
            Verdict::Broken => 1,
            Verdict::Unreadable => 2,
        }
    }
}

/// `hark audit verify`: a line for the person, and the verdict. The log's own
/// `<path>.checkpoints` is checked when there is a key to check it with.
pub fn audit_verify(path: &Path, checkpoints: &[PathBuf], key: Option<&str>) -> (String, Verdict) {
    use crate::audit::checkpoint::checkpoints_path;
    let key = match key.map(parse_public_key).transpose() {
        Ok(key) => key,
        Err(e) => {
            return (
                format!("{}: cannot verify: {e}", path.display()),
                Verdict::Unreadable,
            );
        }
    };
    let own = checkpoints_path(path);
    let mut checks = crate::audit::Checks {
        key,
        checkpoints: Vec::new(),
    };
    let mut note = String::new();
    if own.exists() {
        if checks.key.is_some() {
            checks.checkpoints.push(own);
        } else {
            note = format!(
                "; {} NOT checked: no key (pass --key ed25519:<base64> from `hark audit key`)",
                own.display()
            );
        }
    }
    checks.checkpoints.extend(checkpoints.iter().cloned());
    match crate::audit::verify_with(path, &checks) {
        Ok(report) => (
            format!(
                "{}: intact, {} records, last seq {}, head {}{}{note}",
                path.display(),
                report.records,
                report.last_seq,
                &report.last_hash[..report.last_hash.len().min(16)],
                match report.newest_checkpoint {
                    Some(size) => format!(
                        ", consistent with {} checkpoints (newest: {size} records)",
                        report.checkpoints
                    ),
                    None => String::new(),
                }
            ),
            Verdict::Intact,
        ),
        Err(e) if e.unreadable => (
            format!("{}: cannot verify: {e}", path.display()),
            Verdict::Unreadable,
        ),
        Err(e) => (
            format!("{}: BROKEN at {e}", path.display()),
            Verdict::Broken,
        ),
    }
}

/// `ed25519:<base64>`, or a file holding it.
fn parse_public_key(arg: &str) -> Result<ed25519_compact::PublicKey, String> {
    let text = if arg.starts_with("ed25519:") {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg).map_err(|e| format!("--key {arg}: {e}"))?
    };
    crate::signing::parse_key(text.trim()).map_err(|e| format!("--key: {e}"))
}

/// The hub's public key from `--key`, else from the config's `hub.key` when it can be read.
pub fn audit_public_key(explicit: Option<&str>, config: Option<&Config>) -> Option<String> {
    explicit
        .map(str::to_owned)
        .or_else(|| config.and_then(|c| audit_key(c).ok()))
}

/// `hark audit prove <seq>`: the proof as pretty JSON.
pub fn audit_prove(path: &Path, seq: u64, key: &str) -> Result<String, String> {
    let key = parse_public_key(key)?;
    let proof = crate::audit::proof::prove(path, seq, &key)?;
    Ok(serde_json::to_string_pretty(&proof).expect("a proof serializes"))
}

/// `hark audit verify --proof FILE`.
pub fn audit_verify_proof(proof: &Path, key: Option<&str>) -> (String, Verdict) {
    let Some(key) = key else {
        return (
            "cannot check a proof without the hub's public key: pass --key ed25519:<base64>"
                .to_owned(),
            Verdict::Unreadable,
        );
    };
    let key = match parse_public_key(key) {
        Ok(key) => key,
        Err(e) => return (e, Verdict::Unreadable),
    };
    let text = match std::fs::read(proof) {
        Ok(text) => text,
        Err(e) => {
            return (
                format!("cannot read proof {}: {e}", proof.display()),
                Verdict::Unreadable,
            );
        }
    };
    match crate::audit::proof::verify_proof(&text, &key) {
        Ok(line) => (
            format!("{}: proof holds: {line}", proof.display()),
            Verdict::Intact,
        ),
        Err(e) => (
            format!("{}: proof does NOT hold: {e}", proof.display()),
            Verdict::Broken,
        ),
    }
}

/// `hark skills list`: every skill (and every folder that failed to load),
/// as the hub would see them under `config`, without starting it.
pub fn skills_list(config: &Config) -> Result<Vec<serde_json::Value>, String> {
    let engine = crate::sandbox::engine();
    let fuel = config.skills.fuel_per_ms.unwrap_or(1);
    let registry =
        crate::loader::load_registry(config, &engine, fuel).map_err(|e| e.to_string())?;
    Ok(registry.describe())
}

/// Renders `skills_list` for a terminal: one line per skill, then the
/// reason a disabled one is off.
pub fn format_skills(skills: &[serde_json::Value], tier: crate::policy::Tier) -> String {
    let mut out = format!("tier {tier}\n");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    for s in skills {
        let permissions: Vec<String> = s["permissions"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        let state = if s["enabled"] == true {
            "enabled"
        } else {
            "DISABLED"
        };
        let signer = match (&s["signer"], s["kind"].as_str()) {
            (serde_json::Value::String(k), _) if s["signer_trusted"] == false => {
                format!("{k} (not trusted)")
            }
            (serde_json::Value::String(k), _) => k.clone(),
            (serde_json::Value::Null, Some("wasm")) if s.get("signer").is_some() => {
                "unsigned".into()
            }
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<20} {:<8} {:<9} {:<9} signer {:<14} permissions {}\n",
            text(&s["name"]),
            text(&s["kind"]),
            text(&s["version"]),
            state,
            signer,
            if permissions.is_empty() {
                "-".to_string()
            } else {
                permissions.join(",")
            }
        ));
        if let Some(reason) = s["reason"].as_str() {
            out.push_str(&format!("    why: {reason}\n"));
        }
    }
    out
}

/// `hark calibrate`: this board's interpreter speed.
pub fn calibrate(seconds: f64) -> String {
    let engine = crate::sandbox::engine();
    let c =
        crate::sandbox::calibrate::measure(&engine, std::time::Duration::from_secs_f64(seconds));
    let budget_fuel = c.fuel_per_ms.saturating_mul(crate::config::MAX_TIMEOUT_MS);
    format!(
        "fuel_per_ms = {}\n\nMeasured in {:.2} s. A 1.5 s skill budget is {} fuel on this machine.\n\
         The hub measures this at start (in ~20 ms); to pin it, e.g. on a fleet of identical\n\
         boards, put `fuel_per_ms = {}` under [skills] in hark.toml.",
        c.fuel_per_ms,
        c.took.as_secs_f64(),
        budget_fuel,
        c.fuel_per_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_overwrite_without_force() {
        let dir = std::env::temp_dir().join(format!("hark-init-{}", std::process::id()));
        let path = dir.join("hark.toml");
        // A port nothing listens on: the embedded broker will.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = free.local_addr().unwrap();
        drop(free);
        init(&path, false, listen).unwrap();
        let config = Config::load(&path).expect("the written file is a valid config");
        assert_eq!(
            config.mqtt.broker,
            crate::config::Broker::Embedded { listen }
        );
        assert!(matches!(
            init(&path, false, listen),
            Err(InitError::Exists(_))
        ));
        init(&path, true, listen).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
