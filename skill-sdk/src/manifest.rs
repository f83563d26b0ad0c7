//! Skill manifests (SPEC §3) and the permission catalog.
//!
//! Parsing is two-phase: serde reads the JSON (unknown fields are an error),
//! then [`Manifest::problems`] lists everything a person has to fix, so one
//! load attempt reports every mistake, not just the first.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest skill name the hub accepts.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The intent this skill serves, e.g. `timer.set`.
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Declares that the skill needs the trusted tier.
    #[serde(default)]
    pub trusted: bool,
    /// JSON Schema (draft 7) for the intent's `args`.
    #[serde(default = "empty_args_schema")]
    pub args_schema: Value,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Sandbox ABI version (WebAssembly skills only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<u32>,
    /// Module file inside the skill folder (WebAssembly skills only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Lower-case hex SHA-256 of the entrypoint (WebAssembly skills only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Sensitive: the hub asks the satellite for a yes before each call (SPEC §8.1).
    #[serde(default, skip_serializing_if = "is_false")]
    pub confirm: bool,
    /// The question asked before a sensitive call, with `{arg}` placeholders
    /// filled from the call's args ("Unlock the {door}?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_prompt: Option<String>,
    /// Declares that the skill reaches nothing outside the hub: no
    /// `net.http`, no `secrets.read`, and `mqtt.publish` only under its own
    /// `hark/skill/<name>/#` (SPEC §10). A hub with `trust.hermetic` admits
    /// only such skills.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hermetic: bool,
    /// The oldest hub version this skill runs on (semver); an older hub
    /// refuses it at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_hub_version: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Longest `confirm_prompt`, in characters.
pub const MAX_CONFIRM_PROMPT: usize = 200;

/// Per-skill limits; they may only tighten the hub's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Largest response body `net.http` hands the skill, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_response_kib: Option<u32>,
}

fn empty_args_schema() -> Value {
    serde_json::json!({"type": "object", "additionalProperties": false})
}

/// One thing wrong with a manifest: which field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Manifest {
    /// Parse a manifest from JSON text; the error names the field and position.
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Every problem that makes this manifest unusable, in field order.
    /// Checks that need the hub (schema compilation, module hash, limits
    /// against the hub's config) are the hub's to add.
    pub fn problems(&self) -> Vec<ManifestProblem> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(ManifestProblem {
                field: field.to_string(),
                message,
            })
        };
        if let Err(message) = check_name(&self.name) {
            problem("name", message);
        }
        if !is_version(&self.version) {
            problem(
                "version",
                format!("\"{}\" is not a version like 1.0.0", self.version),
            );
        }
        if !self.args_schema.is_object() && !self.args_schema.is_boolean() {
            problem("args_schema", "must be a JSON Schema object".to_string());
        }
        let mut high_risk = Vec::new();
        for (i, text) in self.permissions.iter().enumerate() {
            match Permission::parse(text) {
                Ok(permission) => {
                    if permission.risk() == Risk::High {
                        high_risk.push(text.as_str());
                    }
                }
                Err(message) => problem(&format!("permissions[{i}]"), message),
            }
        }
        if !self.trusted && !high_risk.is_empty() {
            problem(
                "trusted",
                format!(
                    "the high-risk permission(s) {} need \"trusted\": true; a manifest that asks \
                     for them while saying it is untrusted is refused",
                    high_risk.join(", ")
                ),
            );
        }
        if let Some(sha) = &self.sha256 {
            if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                problem("sha256", "must be 64 lower-case hex digits".to_string());
            }
        }
        if let Some(entry) = &self.entrypoint {
            if entry.is_empty()
                || entry.contains('/')
                || entry.contains('\\')
                || entry.starts_with('.')
            {
                problem(
                    "entrypoint",
                    format!("\"{entry}\" must be a plain file name inside the skill folder"),
                );
            }
        }
        if self.hermetic {
            let reaching: Vec<&str> = self
                .permissions
                .iter()
                .filter(|p| p.starts_with("net.http:") || p.starts_with("secrets.read:"))
                .map(String::as_str)
                .collect();
            if !reaching.is_empty() {
                problem(
                    "hermetic",
                    format!(
                        "a hermetic skill reaches nothing outside the hub, but this one \
                         declares {}",
                        reaching.join(", ")
                    ),
                );
            }
        }
        if let Some(min) = &self.min_hub_version {
            if !is_version(min) {
                problem(
                    "min_hub_version",
                    format!("\"{min}\" is not a version like 0.2.0"),
                );
            }
        }
        if let Some(prompt) = &self.confirm_prompt {
            if let Err(message) = check_confirm_prompt(prompt) {
                problem("confirm_prompt", message);
            }
        }
        if let Some(limits) = &self.limits {
            if limits.timeout_ms == Some(0) {
                problem("limits.timeout_ms", "must be at least 1".to_string());
            }
            if limits.memory_mib == Some(0) {
                problem("limits.memory_mib", "must be at least 1".to_string());
            }
            if limits.http_response_kib == Some(0) {
                problem("limits.http_response_kib", "must be at least 1".to_string());
            }
        }
        problems
    }

    /// The parsed permissions; call after [`Manifest::problems`] came back empty.
    pub fn parsed_permissions(&self) -> Vec<Permission> {
        self.permissions
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect()
    }
}

/// A confirmation question: 1 to [`MAX_CONFIRM_PROMPT`] characters, each
/// `{` opening a placeholder of an arg name (`[A-Za-z0-9_]+`) closed by `}`.
pub fn check_confirm_prompt(prompt: &str) -> Result<(), String> {
    let chars = prompt.chars().count();
    if prompt.trim().is_empty() || chars > MAX_CONFIRM_PROMPT {
        return Err(format!(
            "must be 1 to {MAX_CONFIRM_PROMPT} characters, got {chars}"
        ));
    }
    let mut rest = prompt;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("a '{' is never closed; write placeholders as {arg}".to_string());
        };
        let name = &after[..close];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "\"{{{name}}}\" is not a placeholder; use {{arg}} with the name of an arg \
                 (letters, digits, '_')"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// `[a-z0-9_]+(\.[a-z0-9_]+)*`, at most [`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    for part in name.split('.') {
        if part.is_empty() {
            return Err(format!("\"{name}\" has an empty part between dots"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_'))
        {
            return Err(format!(
                "\"{name}\" contains '{c}'; use lower-case letters, digits, '_' and '.'"
            ));
        }
    }
    Ok(())
}

/// `major.minor.patch` of a version like `1.2.3-rc.1+build`, and whether it
/// has a pre-release part (which sorts before the release).
pub fn version_core(v: &str) -> Option<(u64, u64, u64, bool)> {
    if !is_version(v) {
        return None;
    }
    let without_build = v.split('+').next().unwrap_or("");
    let (core, pre) = match without_build.split_once('-') {
        Some((core, _)) => (core, true),
        None => (without_build, false),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??, pre))
}

/// Whether version `have` is at least `need` (both as [`version_core`]
/// reads them; pre-releases of the same core sort before it).
pub fn version_at_least(have: &str, need: &str) -> bool {
    match (version_core(have), version_core(need)) {
        (Some((a, b, c, have_pre)), Some((x, y, z, need_pre))) => match (a, b, c).cmp(&(x, y, z)) {
            core::cmp::Ordering::Greater => true,
            core::cmp::Ordering::Less => false,
            core::cmp::Ordering::Equal => !have_pre || need_pre,
        },
        _ => false,
    }
}

fn is_version(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    v.len() <= 64
        && parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// How much harm a permission can do in the wrong hands (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Risk {
    Low,
    High,
}

/// One entry of the permission catalog. Everything not granted is denied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Permission {
    Log,
    Kv,
    Timer,
    AudioPlay,
    MqttPublish(String),
    SecretsRead(String),
    NetHttp(String),
}

impl Permission {
    pub fn parse(text: &str) -> Result<Permission, String> {
        let (kind, arg) = match text.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (text, None),
        };
        let need_arg = |what: &str| -> Result<&str, String> {
            match arg {
                Some(a) if !a.is_empty() => Ok(a),
                _ => Err(format!("\"{kind}\" needs a {what}: \"{kind}:<{what}>\"")),
            }
        };
        let no_arg = |p: Permission| -> Result<Permission, String> {
            match arg {
                None => Ok(p),
                Some(_) => Err(format!("\"{kind}\" takes no argument")),
            }
        };
        match kind {
            "log" => no_arg(Permission::Log),
            "kv" => no_arg(Permission::Kv),
            "timer" => no_arg(Permission::Timer),
            "audio.play" => no_arg(Permission::AudioPlay),
            "mqtt.publish" => {
                let filter = need_arg("topic filter")?;
                check_topic_filter(filter)?;
                Ok(Permission::MqttPublish(filter.to_string()))
            }
            "secrets.read" => {
                let id = need_arg("secret id")?;
                if id.len() > 64
                    || !id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                {
                    return Err(format!(
                        "secret id \"{id}\" must be 1 to 64 characters of A-Z a-z 0-9 _ . -"
                    ));
                }
                Ok(Permission::SecretsRead(id.to_string()))
            }
            "net.http" => {
                let grant = need_arg("host")?;
                let origin = HttpOrigin::of_grant(grant)?;
                Ok(Permission::NetHttp(origin.grant()))
            }
            _ => Err(format!(
                "unknown permission \"{text}\"; the catalog is log, kv, timer, audio.play, \
                 mqtt.publish:<filter>, secrets.read:<id>, net.http:<host>"
            )),
        }
    }

    pub fn risk(&self) -> Risk {
        match self {
            Permission::Log | Permission::Kv | Permission::Timer | Permission::AudioPlay => {
                Risk::Low
            }
            Permission::MqttPublish(_) | Permission::SecretsRead(_) | Permission::NetHttp(_) => {
                Risk::High
            }
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Log => f.write_str("log"),
            Permission::Kv => f.write_str("kv"),
            Permission::Timer => f.write_str("timer"),
            Permission::AudioPlay => f.write_str("audio.play"),
            Permission::MqttPublish(filter) => write!(f, "mqtt.publish:{filter}"),
            Permission::SecretsRead(id) => write!(f, "secrets.read:{id}"),
            Permission::NetHttp(host) => write!(f, "net.http:{host}"),
        }
    }
}

/// Where a `net.http` grant lets a skill go: one scheme, host and port.
/// The grant is `host`, `host:port` or `http://host[:port]`; HTTPS (port 443)
/// unless it says `http://` (port 80).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpOrigin {
    /// `false` only when the grant says `http://`.
    pub tls: bool,
    /// A lower-case host name or an IPv4 address.
    pub host: String,
    pub port: u16,
}

impl HttpOrigin {
    /// Parses the argument of `net.http:<grant>`.
    pub fn of_grant(grant: &str) -> Result<HttpOrigin, String> {
        let (tls, rest) = match grant.split_once("://") {
            None => (true, grant),
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "\"{grant}\": the scheme \"{scheme}\" is not http:// or https://"
                ));
            }
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "\"{grant}\" must be a host with an optional port (\"api.example.org\", \
                 \"api.example.org:8443\", \"http://192.168.1.5:8123\"), not a URL"
            ));
        }
        let (host, port) = split_port(rest, tls).map_err(|e| format!("\"{grant}\": {e}"))?;
        Ok(HttpOrigin { tls, host, port })
    }

    /// The origin of an absolute `http://` or `https://` URL, and the rest
    /// of it (the path and query, `/` when empty; a fragment dropped).
    pub fn of_url(url: &str) -> Result<(HttpOrigin, String), String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("\"{url}\" is not an http:// or https:// URL"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "\"{url}\": user names and passwords in URLs are refused"
            ));
        }
        let (host, port) = split_port(authority, tls).map_err(|e| format!("\"{url}\": {e}"))?;
        let tail = tail.split('#').next().unwrap_or("");
        if tail.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "\"{url}\": spaces and control characters must be percent-encoded"
            ));
        }
        let path = match tail {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok((HttpOrigin { tls, host, port }, path))
    }

    /// The port a URL of this scheme has when it names none.
    pub fn default_port(tls: bool) -> u16 {
        if tls { 443 } else { 80 }
    }

    /// The canonical grant: `host`, `host:port`, `http://host[:port]`.
    pub fn grant(&self) -> String {
        let scheme = if self.tls { "" } else { "http://" };
        if self.port == HttpOrigin::default_port(self.tls) {
            format!("{scheme}{}", self.host)
        } else {
            format!("{scheme}{}:{}", self.host, self.port)
        }
    }

    /// `Host` header value: the host, and the port when it is not the default.
    pub fn authority(&self) -> String {
        if self.port == HttpOrigin::default_port(self.tls) {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host[:port]` into a checked lower-case host and a port.
fn split_port(authority: &str, tls: bool) -> Result<(String, u16), String> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("\"{port}\" is not a port (1 to 65535)"))?;
            (host, port)
        }
        None => (authority, HttpOrigin::default_port(tls)),
    };
    if host.is_empty()
        || host.len() > 253
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        || host.starts_with(['.', '-'])
    {
        return Err(format!("\"{host}\" is not a host name or an IPv4 address"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// An MQTT topic filter: non-empty, `+` fills a whole level, `#` only last.
pub fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() || filter.len() > 1024 || filter.contains('\0') {
        return Err("a topic filter must be 1 to 1024 characters".to_string());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "\"{filter}\": '#' may only be the whole last level"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!("\"{filter}\": '+' must fill a whole level"));
        }
    }
    Ok(())
}

/// Does `topic` (no wildcards) match `filter`?
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(value: Value) -> Manifest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_good_manifest_has_no_problems() {
        let m = manifest(json!({
            "name": "timer.set", "version": "1.0.0",
            "permissions": ["timer", "audio.play"]
        }));
        assert_eq!(m.problems(), Vec::new());
        assert_eq!(
            m.parsed_permissions(),
            [Permission::Timer, Permission::AudioPlay]
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err =
            Manifest::from_json(r#"{"name":"a","version":"1.0.0","colour":"red"}"#).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let m = manifest(json!({
            "name": "Bad Name", "version": "one",
            "permissions": ["kv", "teleport", "mqtt.publish:home/#/x"]
        }));
        let fields: Vec<String> = m.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["name", "version", "permissions[1]", "permissions[2]"]
        );
    }

    #[test]
    fn untrusted_manifest_asking_for_high_risk_permission_is_refused() {
        let m = manifest(json!({
            "name": "lights", "version": "1.0.0", "trusted": false,
            "permissions": ["mqtt.publish:home/lights/+/set"]
        }));
        let problems = m.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "trusted");
        assert!(
            problems[0]
                .message
                .contains("mqtt.publish:home/lights/+/set")
        );
    }

    #[test]
    fn permissions_parse_with_their_risk() {
        assert_eq!(Permission::parse("log").unwrap().risk(), Risk::Low);
        assert_eq!(
            Permission::parse("secrets.read:weather_api").unwrap(),
            Permission::SecretsRead("weather_api".into())
        );
        assert_eq!(
            Permission::parse("net.http:API.example.com")
                .unwrap()
                .risk(),
            Risk::High
        );
        for (grant, canonical) in [
            ("net.http:API.example.com", "net.http:api.example.com"),
            ("net.http:api.example.com:443", "net.http:api.example.com"),
            (
                "net.http:https://api.example.com:8443",
                "net.http:api.example.com:8443",
            ),
            (
                "net.http:http://192.168.1.5:80",
                "net.http:http://192.168.1.5",
            ),
            (
                "net.http:http://192.168.1.5:8123",
                "net.http:http://192.168.1.5:8123",
            ),
        ] {
            assert_eq!(Permission::parse(grant).unwrap().to_string(), canonical);
        }
        for bad in [
            "net.http:ftp://x",
            "net.http:x/path",
            "net.http:x:0",
            "net.http:x:70000",
            "net.http:user@x",
            "net.http:-x",
            "net.http:[::1]",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad}");
        }
        assert!(version_at_least("0.2.0", "0.1.9"));
        assert!(version_at_least("0.2.0", "0.2.0"));
        assert!(version_at_least("0.2.0", "0.2.0-rc.1"));
        assert!(!version_at_least("0.2.0-rc.1", "0.2.0"));
        assert!(!version_at_least("0.1.0", "0.10.0"));
        assert!(!version_at_least("0.1.0", "one"));
        assert!(Permission::parse("kv:extra").is_err());
        assert!(Permission::parse("mqtt.publish").is_err());
        assert!(Permission::parse("mqtt.publish:").is_err());
        assert!(Permission::parse("secrets.read:../../etc").is_err());
    }

    #[test]
    fn topic_filters_match_like_mqtt() {
        assert!(topic_matches(
            "home/lights/+/set",
            "home/lights/kitchen/set"
        ));
        assert!(!topic_matches(
            "home/lights/+/set",
            "home/lights/kitchen/get"
        ));
        assert!(!topic_matches("home/lights/+/set", "home/lights/set"));
        assert!(topic_matches("home/#", "home/a/b/c"));
        assert!(topic_matches("home/#", "home"));
        assert!(!topic_matches("home/a", "home/a/b"));
    }

    #[test]
    fn names_follow_the_pattern() {
        assert!(check_name("timer.set").is_ok());
        assert!(check_name("shopping_list").is_ok());
        assert!(check_name("Timer").is_err());
        assert!(check_name("timer..set").is_err());
        assert!(check_name(".timer").is_err());
        assert!(check_name("").is_err());
    }
}
