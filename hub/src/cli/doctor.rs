//! `hark doctor`: what stands between this machine and a hub that works,
//! one line per check, each `ok`, `warn` (works, but worth a look) or
//! `FAIL` (will not work as configured), and what to do about it.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use crate::audio::AudioBackend;
use crate::config::{Broker, Config};
use crate::mqtt::probe::{Found, probe_as};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{tag}  {:<9} {}", self.name, self.detail)
    }
}

fn check(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict,
        detail: detail.into(),
    }
}

/// Every check, in the order a person would fix them. `config_file` is the
/// file the config came from (`None`: the built-in defaults).
pub fn run(config: &Config, config_file: Option<&Path>) -> Vec<Check> {
    let mut checks = vec![check(
        "config",
        Verdict::Ok,
        match config_file {
            Some(path) => format!("{} loads; tier {}", path.display(), config.tier),
            None => format!("no file: the built-in defaults; tier {}", config.tier),
        },
    )];
    checks.push(state_dir(&config.state_dir));
    checks.push(broker(config));
    checks.push(speaker(config.audio.backend));
    checks.extend(skills(config));
    checks.push(clock());
    checks.push(disk(&config.state_dir));
    checks
}

/// The state dir: there, a folder, owned by the user the hub runs as (the
/// `hark` user when there is one, as the package makes it; else whoever runs
/// this), and not open to everyone (the audit log holds what people said).
fn state_dir(dir: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return check(
                "state dir",
                Verdict::Warn,
                format!(
                    "{} does not exist yet; the hub makes it at its first start",
                    dir.display()
                ),
            );
        }
        Err(e) => {
            return check(
                "state dir",
                Verdict::Fail,
                format!("{}: {e}", dir.display()),
            );
        }
    };
    if !meta.is_dir() {
        return check(
            "state dir",
            Verdict::Fail,
            format!("{} is not a folder", dir.display()),
        );
    }
    let (runner, uid) = match user_id("hark") {
        Some(uid) => ("hark", uid),
        // SAFETY: geteuid cannot fail.
        None => ("you", unsafe { libc::geteuid() }),
    };
    if meta.uid() != uid {
        return check(
            "state dir",
            Verdict::Fail,
            format!(
                "{} belongs to uid {}, but the hub runs as {runner} (uid {uid}) and must write \
                 there: sudo chown -R {uid}:{} {}",
                dir.display(),
                meta.uid(),
                meta.gid(),
                dir.display()
            ),
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o007 != 0 {
        return check(
            "state dir",
            Verdict::Warn,
            format!(
                "{} is mode {mode:o}: everyone may look in; the audit log holds what people \
                 said at home: chmod o-rwx {}",
                dir.display(),
                dir.display()
            ),
        );
    }
    check(
        "state dir",
        Verdict::Ok,
        format!("{} owned by {runner}, mode {mode:o}", dir.display()),
    )
}

/// The uid of user `name`, from /etc/passwd.
fn user_id(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then(|| fields.nth(1)?.parse().ok())?
        })
}

/// A TLS broker (`mqtts://`): a real connect through the hub's own client,
/// certificate check and login included.
fn broker_tls(config: &Config) -> Check {
    use rumqttc::{ConnectReturnCode, Event, Packet};
    let mut link = config.mqtt.clone();
    link.credentials = crate::satellites::admin::login(
        link.credentials.as_ref(),
        &config.state_dir,
        &link.prefix,
        true,
    );
    let (host, port) = link.client_target();
    let attempt = async {
        let (_client, mut eventloop) = crate::mqtt::connect(
            &link,
            &format!("hark-doctor-{}", std::process::id()),
            false,
            None,
        );
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), attempt)
                    .await
                    .unwrap_or_else(|_| Err("no answer within 5 s".into()))
            })
        });
    match outcome {
        Ok(ConnectReturnCode::Success) => check(
            "broker",
            Verdict::Ok,
            format!(
                "{host}:{port} answers MQTT over TLS with a trusted certificate and takes the hub's login"
            ),
        ),
        Ok(code) => check(
            "broker",
            Verdict::Fail,
            format!(
                "{host}:{port} refuses the hub's login over TLS ({code:?}): set mqtt.username and mqtt.password, or give mosquitto the hub's login (hark satellite acl --mosquitto)"
            ),
        ),
        Err(e) => check(
            "broker",
            Verdict::Fail,
            format!("cannot reach {host}:{port} over TLS: {e}"),
        ),
    }
}

/// The broker answers MQTT, and takes the configured credentials.
fn broker(config: &Config) -> Check {
    if config.mqtt.tls.is_some() {
        return broker_tls(config);
    }
    let (host, port) = config.mqtt.client_target();
    let addr = match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => addr,
        Ok(None) | Err(_) => {
            return check(
                "broker",
                Verdict::Fail,
                format!("cannot resolve {host}; check mqtt.url"),
            );
        }
    };
    // The hub's own login: the configured one, else the admin secret's.
    let login = crate::satellites::admin::login(
        config.mqtt.credentials.as_ref(),
        &config.state_dir,
        &config.mqtt.prefix,
        true,
    );
    let credentials = login
        .as_ref()
        .map(|c| (c.username.as_str(), c.password.as_str()));
    let embedded = matches!(config.mqtt.broker, Broker::Embedded { .. });
    match probe_as(addr, Duration::from_secs(2), credentials) {
        Found::Broker { open: true } => check(
            "broker",
            Verdict::Ok,
            format!(
                "{addr} answers MQTT{}{}",
                if credentials.is_some() {
                    " and takes the hub's login"
                } else {
                    ""
                },
                if embedded {
                    " (the hub's embedded broker)"
                } else {
                    ""
                }
            ),
        ),
        Found::Broker { open: false } => check(
            "broker",
            Verdict::Fail,
            format!(
                "{addr} refuses {}: set mqtt.username and mqtt.password to an account it \
                 accepts, or give mosquitto the hub's login (hark satellite acl --mosquitto)",
                if credentials.is_some() {
                    "the hub's login"
                } else {
                    "clients without credentials"
                }
            ),
        ),
        Found::Nothing if embedded => check(
            "broker",
            Verdict::Warn,
            format!(
                "nothing listens on {addr}: the embedded broker runs with the hub; is it \
                 running? (systemctl status hark, or hark run)"
            ),
        ),
        Found::Nothing => check(
            "broker",
            Verdict::Fail,
            format!("nothing listens on {addr}: is the broker at mqtt.url running and reachable?"),
        ),
        Found::Other => check(
            "broker",
            Verdict::Fail,
            format!("{addr} accepts connections but does not answer MQTT: check the port"),
        ),
    }
}

/// The speaker the config asks for.
fn speaker(backend: AudioBackend) -> Check {
    if backend == AudioBackend::Null {
        return check(
            "speaker",
            Verdict::Ok,
            "audio.backend = null: no sound on the hub, as configured",
        );
    }
    match crate::audio::AudioOut::open(AudioBackend::Cpal) {
        Ok(out) => check(
            "speaker",
            Verdict::Ok,
            format!("{} plays", out.backend_name()),
        ),
        Err(e) => check(
            "speaker",
            if backend == AudioBackend::Cpal {
                Verdict::Fail
            } else {
                Verdict::Warn
            },
            format!("{e}; alarms will not be heard on the hub (satellites still get events)"),
        ),
    }
}

/// Every skill folder loads, and every WebAssembly skill the tier allows
/// at all is enabled (a signature refused or missing is named); and the
/// pinned interpreter speed matches this board.
fn skills(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let entries = match super::skills_list(config) {
        Ok(entries) => entries,
        Err(e) => return vec![check("skills", Verdict::Fail, e)],
    };
    let paranoid = config.tier == crate::policy::Tier::Paranoid;
    let mut off_by_tier = 0;
    let mut wasm = 0;
    for entry in &entries {
        if entry["kind"] != "wasm" {
            continue;
        }
        wasm += 1;
        let name = entry["name"].as_str().unwrap_or("?");
        if entry["enabled"] == true {
            continue;
        }
        let reason = entry["reason"].as_str().unwrap_or("disabled");
        if paranoid && entry.get("signature_error").is_none() && entry.get("version").is_some() {
            off_by_tier += 1;
            continue;
        }
        checks.push(check("skill", Verdict::Fail, format!("{name}: {reason}")));
    }
    if checks.is_empty() {
        let detail = if off_by_tier > 0 {
            format!("{wasm} WebAssembly skill(s) installed, off: tier paranoid runs built-ins only")
        } else {
            format!("{wasm} WebAssembly skill(s), all enabled")
        };
        checks.push(check("skills", Verdict::Ok, detail));
    }
    if let (Some(pinned), false) = (config.skills.fuel_per_ms, paranoid) {
        let engine = crate::sandbox::engine();
        let measured =
            crate::sandbox::calibrate::measure(&engine, Duration::from_millis(200)).fuel_per_ms;
        let ratio = pinned as f64 / measured.max(1) as f64;
        checks.push(if (0.5..=2.0).contains(&ratio) {
            check(
                "fuel",
                Verdict::Ok,
                format!("skills.fuel_per_ms = {pinned}; measured {measured}"),
            )
        } else {
            check(
                "fuel",
                Verdict::Warn,
                format!(
                    "skills.fuel_per_ms = {pinned}, but this board measures {measured}: the 1.5 s \
                     budget would be {:.1} s here; set it to {measured} or remove it",
                    1.5 * ratio
                ),
            )
        });
    }
    checks
}

/// Timers ring by the wall clock: it should be synchronised (NTP).
fn clock() -> Check {
    // SAFETY: a zeroed timex with modes 0 only reads the kernel's clock state.
    let state = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        libc::adjtimex(&mut tx)
    };
    match state {
        libc::TIME_ERROR => check(
            "clock",
            Verdict::Warn,
            "the kernel says the clock is not synchronised: timers ring by it (enable NTP: \
             timedatectl set-ntp true)",
        ),
        s if s < 0 => check(
            "clock",
            Verdict::Warn,
            "cannot ask the kernel about the clock",
        ),
        _ => check("clock", Verdict::Ok, "synchronised"),
    }
}

/// Room for the audit log and timers.
fn disk(dir: &Path) -> Check {
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent()
            .filter(|p| p.exists())
            .unwrap_or(Path::new("/"))
    };
    let Ok(path) = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes()) else {
        return check("disk", Verdict::Warn, "the state dir's path has a NUL byte");
    };
    // SAFETY: statvfs writes into the zeroed struct we own.
    let (ok, stat) = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut stat) == 0, stat)
    };
    if !ok {
        return check(
            "disk",
            Verdict::Warn,
            format!("cannot ask how full {} is", probe.display()),
        );
    }
    // 32 bits on armv7, 64 on aarch64 and x86_64.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.f_bavail) * u64::from(stat.f_frsize);
    let mib = free / (1 << 20);
    let detail = format!("{mib} MiB free under {}", probe.display());
    match mib {
        0..10 => check(
            "disk",
            Verdict::Fail,
            detail + ": the audit log and timers need room",
        ),
        10..100 => check("disk", Verdict::Warn, detail),
        _ => check("disk", Verdict::Ok, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_names_its_check_and_says_how_it_went() {
        let line = check("broker", Verdict::Fail, "nothing listens").to_string();
        assert_eq!(line, "FAIL  broker    nothing listens");
        assert!(
            check("disk", Verdict::Ok, "x")
                .to_string()
                .starts_with("ok    disk")
        );
    }

    #[test]
    fn users_are_found_in_etc_passwd() {
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(user_id("no-such-user-here"), None);
    }
}
