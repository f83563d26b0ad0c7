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
    if let Some(tls) = &config.mqtt.tls_listen {
        checks.push(tls_listener(tls));
    }
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
    user_ids(name).map(|(uid, _)| uid)
}

/// The uid and primary gid of user `name`, from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != name {
                return None;
            }
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
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

/// A certificate closer than this to its end is a warning.
const EXPIRY_WARN_DAYS: i64 = 30;

/// The embedded broker's TLS listener (`mqtt.tls_listen`): its certificate
/// and key load and go together (as the broker reads them at start), the
/// hub's user can read both, the key is not open to everyone, and the
/// certificate is not past or near its end (satellites would refuse it).
fn tls_listener(tls: &crate::config::TlsListen) -> Check {
    const NAME: &str = "tls";
    #[cfg(feature = "embedded-broker")]
    if let Err(e) = crate::broker::check_tls_files(tls) {
        return check(NAME, Verdict::Fail, e.to_string());
    }
    let mut verdict = Verdict::Ok;
    let mut said = Vec::new();
    for (key, path) in [("mqtt.tls_cert", &tls.cert), ("mqtt.tls_key", &tls.key)] {
        match readable_by_hub(path) {
            Ok(None) => {}
            Ok(Some(problem)) => {
                return check(NAME, Verdict::Fail, format!("{key}: {problem}"));
            }
            Err(e) => {
                return check(
                    NAME,
                    Verdict::Fail,
                    format!("{key}: {}: {e}", path.display()),
                );
            }
        }
    }
    if let Ok(meta) = std::fs::metadata(&tls.key) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o004 != 0 {
            verdict = Verdict::Warn;
            said.push(format!(
                "the private key {} is readable by everyone: chmod o-r {}",
                tls.key.display(),
                tls.key.display()
            ));
        }
    }
    let ends = std::fs::read(&tls.cert).ok().and_then(|pem| {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
        x509::not_after_days(&leaf)
    });
    let today = (crate::timers::now_ms() / 86_400_000) as i64;
    match ends {
        None => {
            verdict = Verdict::Warn;
            said.push("cannot read when the certificate ends".into());
        }
        Some(day) if day < today => {
            return check(
                NAME,
                Verdict::Fail,
                format!(
                    "the certificate {} ended on {}: satellites refuse it; renew it",
                    tls.cert.display(),
                    x509::date(day)
                ),
            );
        }
        Some(day) if day - today < EXPIRY_WARN_DAYS => {
            verdict = Verdict::Warn;
            let left = match day - today {
                0 => "today".to_string(),
                1 => "tomorrow".to_string(),
                n => format!("in {n} days"),
            };
            said.push(format!(
                "the certificate ends on {} ({left}): renew it before satellites refuse it",
                x509::date(day)
            ));
        }
        Some(day) => said.insert(
            0,
            format!(
                "{} serves {} until {}",
                tls.listen,
                tls.cert.display(),
                x509::date(day)
            ),
        ),
    }
    check(NAME, verdict, said.join("; "))
}

/// Why the hub's user (`hark` when there is one, else whoever runs this)
/// cannot read `path`, if it cannot; supplementary groups are not looked at.
fn readable_by_hub(path: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let Some((uid, gid)) = user_ids("hark") else {
        // Whoever runs this runs the hub: the broker's own read above decides.
        return Ok(None);
    };
    let mode = meta.mode();
    let readable = uid == 0
        || (meta.uid() == uid && mode & 0o400 != 0)
        || (meta.gid() == gid && mode & 0o040 != 0)
        || mode & 0o004 != 0;
    Ok((!readable).then(|| {
        format!(
            "{} (uid {}, gid {}, mode {:o}) cannot be read by the hark user the hub runs as: \
             sudo chown hark {}",
            path.display(),
            meta.uid(),
            meta.gid(),
            mode & 0o777,
            path.display()
        )
    }))
}

/// The dates of an X.509 certificate, read from its DER without a parser
/// crate: only the path to `tbsCertificate.validity.notAfter`.
mod x509 {
    use crate::audit::{civil_from_days, days_from_civil};

    /// One DER element of `input`: its tag, its contents, and what follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |l, b| (l << 8) | *b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;

    /// The day (since 1970-01-01) after which the certificate is no longer valid.
    pub fn not_after_days(der: &[u8]) -> Option<i64> {
        let (SEQUENCE, certificate, _) = element(der)? else {
            return None;
        };
        let (SEQUENCE, mut tbs, _) = element(certificate)? else {
            return None;
        };
        if tbs.first() == Some(&VERSION) {
            tbs = element(tbs)?.2;
        }
        // serialNumber, signature, issuer, then validity.
        for _ in 0..3 {
            tbs = element(tbs)?.2;
        }
        let (SEQUENCE, validity, _) = element(tbs)? else {
            return None;
        };
        let (_, _not_before, rest) = element(validity)?;
        let (tag, time, _) = element(rest)?;
        let text = std::str::from_utf8(time).ok()?;
        let (year, rest) = match tag {
            UTC_TIME => {
                let yy: i64 = text.get(..2)?.parse().ok()?;
                (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
            }
            GENERALIZED_TIME => (text.get(..4)?.parse().ok()?, text.get(4..)?),
            _ => return None,
        };
        let month: u32 = rest.get(..2)?.parse().ok()?;
        let day: u32 = rest.get(2..4)?.parse().ok()?;
        ((1..=12).contains(&month) && (1..=31).contains(&day))
            .then(|| days_from_civil(year, month, day))
    }

    /// `YYYY-MM-DD` of a day since 1970-01-01.
    pub fn date(days: i64) -> String {
        let (year, month, day) = civil_from_days(days);
        format!("{year:04}-{month:02}-{day:02}")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_round_trip_through_days() {
            assert_eq!(days_from_civil(1970, 1, 1), 0);
            assert_eq!(days_from_civil(2000, 3, 1), 11_017);
            for day in [0, 59, 60, 11_016, 11_017, 20_000, 24_000, 47_482] {
                let d = date(day);
                let (y, m, dd) = (&d[..4], &d[5..7], &d[8..]);
                assert_eq!(
                    days_from_civil(y.parse().unwrap(), m.parse().unwrap(), dd.parse().unwrap()),
                    day,
                    "{d}"
                );
            }
            assert_eq!(date(20_789), "2026-12-02");
            assert_eq!(date(47_482), "2100-01-01");
        }

        #[test]
        fn broken_der_gives_none_never_a_panic() {
            assert_eq!(not_after_days(b""), None);
            assert_eq!(not_after_days(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
            assert_eq!(not_after_days(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
            assert_eq!(not_after_days(&[0x04, 0x00]), None);
        }
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
