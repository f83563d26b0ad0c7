//! The embedded broker's gate (SPEC §7): who a connecting client is, what
//! it may publish and subscribe, and a record of what it was refused.
//!
//! Logins are checked against the registry the hub holds now; the hub swaps
//! in a new one when `satellites.toml` changes ([`Access::replace`]) and
//! closes the connections of satellites removed or rotated in it.
//!
//! An Argon2id check costs tens of milliseconds (hundreds on a Pi) and 7 MiB,
//! so a login that succeeded once is remembered (as a SHA-256 of the
//! password, in memory only, dropped when the satellite's hash changes),
//! checks are limited to [`CHECKS_PER_S`] a second and [`CHECKS_AT_ONCE`] at
//! a time, and the broker asks the gate from a blocking thread, never its own
//! (`broker::provider`): a flood of wrong passwords cannot take the broker's
//! time from everyone else.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::access::{Principal, Table};
use super::{Registry, admin, password};
use crate::audit::{Audit, Kind, Record};
use crate::config::Credentials;

/// Argon2id checks of logins not seen before, per second.
pub const CHECKS_PER_S: u32 = 20;
/// Argon2id checks running at once; a login that would be one more is
/// refused (its client retries), so a flood holds at most this many threads
/// and this many times 7 MiB.
pub const CHECKS_AT_ONCE: usize = 1;
/// Refusals recorded one by one per minute; the rest are counted.
pub const REFUSALS_PER_MIN: u32 = 20;

/// `mqtt.auth`: when the embedded broker asks for a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// As soon as a satellite is registered or the broker listens beyond
    /// this machine; until then it is open (a first run needs no setup).
    #[default]
    Auto,
    Required,
    Off,
}

impl AuthMode {
    pub fn parse(text: &str) -> Option<AuthMode> {
        match text {
            "auto" => Some(AuthMode::Auto),
            "required" => Some(AuthMode::Required),
            "off" => Some(AuthMode::Off),
            _ => None,
        }
    }
}

/// What a client said in its CONNECT.
#[derive(Debug)]
pub struct Hello<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub peer: SocketAddr,
}

/// The gate's state; one per embedded broker.
pub struct Access {
    table: Table,
    hub_user: String,
    /// The hub's client id: only the hub's login may take it.
    hub_client: String,
    cli_user: String,
    admin_secret: String,
    /// `mqtt.username`/`mqtt.password`, when set: another name for the hub's login.
    configured: Option<Credentials>,
    mode: AuthMode,
    /// Whether any listener is reachable from beyond this machine.
    exposed: bool,
    registry: RwLock<Arc<Registry>>,
    /// Satellite → SHA-256 of the password that last passed, and the stored hash it passed.
    passed: Mutex<HashMap<String, ([u8; 32], String)>>,
    checks: Mutex<Window>,
    /// Argon2id checks running now.
    checking: std::sync::atomic::AtomicUsize,
    refusals: Mutex<Window>,
    seen: Mutex<BTreeSet<String>>,
    /// Set once the hub's audit log is open (the broker starts before it).
    audit: std::sync::OnceLock<Arc<Audit>>,
    warned_open: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("mode", &self.mode)
            .field("exposed", &self.exposed)
            .finish_non_exhaustive()
    }
}

/// A fixed window that counts events.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    length: Duration,
    count: u32,
    /// Events over the limit in the window that ended last, not yet reported.
    over: u32,
}

impl Window {
    pub fn new(length: Duration) -> Window {
        Window {
            started: Instant::now(),
            length,
            count: 0,
            over: 0,
        }
    }

    /// Counts one event; whether it is within `limit` for this window, and how
    /// many went over in earlier windows (reported once).
    pub fn admit(&mut self, limit: u32) -> (bool, u32) {
        let mut earlier = 0;
        if self.started.elapsed() >= self.length {
            self.started = Instant::now();
            earlier = std::mem::take(&mut self.over);
            self.count = 0;
        }
        self.count += 1;
        let within = self.count <= limit;
        if !within {
            self.over += 1;
        }
        (within, earlier)
    }
}

/// One of the [`CHECKS_AT_ONCE`] Argon2id checks, released when dropped.
struct Checking<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Checking<'a> {
    fn hold(running: &'a std::sync::atomic::AtomicUsize) -> Option<Checking<'a>> {
        use std::sync::atomic::Ordering;
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < CHECKS_AT_ONCE).then_some(n + 1)
            })
            .ok()
            .map(|_| Checking(running))
    }
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What [`Access::new`] needs to know.
#[derive(Debug)]
pub struct Settings<'a> {
    pub prefix: &'a str,
    pub admin_secret: String,
    pub configured: Option<Credentials>,
    pub mode: AuthMode,
    pub exposed: bool,
    pub registry: Registry,
}

impl Access {
    pub fn new(settings: Settings<'_>) -> Access {
        let hub_user = admin::hub_user(settings.prefix);
        Access {
            table: Table::new(settings.prefix),
            hub_client: hub_user.clone(),
            hub_user,
            cli_user: admin::cli_user(settings.prefix),
            admin_secret: settings.admin_secret,
            configured: settings.configured,
            mode: settings.mode,
            exposed: settings.exposed,
            registry: RwLock::new(Arc::new(settings.registry)),
            passed: Mutex::new(HashMap::new()),
            checks: Mutex::new(Window::new(Duration::from_secs(1))),
            checking: 0.into(),
            refusals: Mutex::new(Window::new(Duration::from_secs(60))),
            seen: Mutex::new(BTreeSet::new()),
            audit: std::sync::OnceLock::new(),
            warned_open: false.into(),
        }
    }

    fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Where refusals are recorded from now on.
    pub fn set_audit(&self, audit: Arc<Audit>) {
        let _ = self.audit.set(audit);
    }

    /// Whether a client may connect without a login.
    pub fn is_open(&self) -> bool {
        match self.mode {
            AuthMode::Off => true,
            AuthMode::Required => false,
            AuthMode::Auto => !self.exposed && self.registry().is_empty(),
        }
    }

    /// Takes `newer` as the registry and says who must be cut off: the
    /// satellites removed or rotated in it, and the login-less clients once
    /// the broker stops being open.
    pub fn replace(&self, newer: Registry) -> impl Fn(&Principal) -> bool + use<> {
        let was_open = self.is_open();
        let newer = Arc::new(newer);
        let older = std::mem::replace(
            &mut *self
                .registry
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            newer.clone(),
        );
        let revoked: BTreeSet<String> = older
            .revoked_in(&newer)
            .into_iter()
            .map(str::to_string)
            .collect();
        {
            let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
            passed.retain(|id, _| !revoked.contains(id));
        }
        let close_open = was_open && !self.is_open();
        if !revoked.is_empty() {
            tracing::info!(satellites = ?revoked, "satellites removed or rotated: disconnecting them");
        }
        move |who: &Principal| match who {
            Principal::Satellite(id) => revoked.contains(id),
            Principal::Open => close_open,
            Principal::Hub | Principal::Admin => false,
        }
    }

    /// The satellites that logged in since the last call.
    pub fn take_seen(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn connect(&self, hello: &Hello<'_>) -> Result<Principal, String> {
        let result = self.identify(hello).and_then(|who| {
            if hello.client_id == self.hub_client && who != Principal::Hub {
                Err(format!(
                    "the client id \"{}\" is the hub's own; only the hub's login may use it",
                    self.hub_client
                ))
            } else {
                Ok(who)
            }
        });
        match &result {
            Ok(Principal::Satellite(id)) => {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone());
            }
            Ok(Principal::Open) if self.mode == AuthMode::Auto => {
                if !self
                    .warned_open
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        "the embedded broker admits clients without a login until the first \
                         satellite is registered (`hark satellite add <id>`)"
                    );
                }
            }
            Ok(_) => {}
            Err(reason) => self.refused(Refusal::Connect { hello, reason }),
        }
        result
    }

    fn identify(&self, hello: &Hello<'_>) -> Result<Principal, String> {
        let password = hello.password.unwrap_or_default();
        let Some(username) = hello.username.filter(|u| !u.is_empty()) else {
            return if self.is_open() {
                Ok(Principal::Open)
            } else {
                Err("this broker requires a login; register the satellite with \
                     `hark satellite add <id>` and use the password it prints"
                    .into())
            };
        };
        let secret_is = |secret: &str| constant_time_eq(password, secret.as_bytes());
        if let Some(creds) = &self.configured
            && username == creds.username
        {
            return if secret_is(&creds.password) {
                Ok(Principal::Hub)
            } else {
                Err(format!("wrong password for \"{username}\""))
            };
        }
        if username == self.hub_user || username == self.cli_user {
            if !secret_is(&self.admin_secret) {
                return Err(format!("wrong password for \"{username}\""));
            }
            return Ok(if username == self.hub_user {
                Principal::Hub
            } else {
                Principal::Admin
            });
        }
        if self.mode == AuthMode::Off {
            return Ok(Principal::Open);
        }
        let registry = self.registry();
        let Some(satellite) = registry.get(username) else {
            return Err(format!("no satellite \"{username}\" is registered"));
        };
        let digest: [u8; 32] = Sha256::digest(password).into();
        {
            let passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((known, hash)) = passed.get(username)
                && *hash == satellite.password
            {
                return if constant_time_eq(known, &digest) {
                    Ok(Principal::Satellite(username.to_string()))
                } else {
                    Err(format!("wrong password for satellite \"{username}\""))
                };
            }
        }
        let (within, _) = self
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(CHECKS_PER_S);
        let Some(_checking) = within.then(|| Checking::hold(&self.checking)).flatten() else {
            return Err("too many logins to check at once; try again in a second".into());
        };
        let Ok(text) = std::str::from_utf8(password) else {
            return Err(format!("wrong password for satellite \"{username}\""));
        };
        if !password::verify(text, &satellite.password) {
            return Err(format!("wrong password for satellite \"{username}\""));
        }
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(username.to_string(), (digest, satellite.password.clone()));
        Ok(Principal::Satellite(username.to_string()))
    }

    pub fn may_publish(&self, who: &Principal, topic: &str) -> bool {
        self.table.may_publish(who, topic) || self.is_hermes(who, topic)
    }

    pub fn may_subscribe(&self, who: &Principal, filter: &str) -> bool {
        self.table.may_subscribe(who, filter) || self.is_hermes(who, filter)
    }

    /// A Rhasspy login (`hark satellite add --hermes`) uses `hermes/…`.
    fn is_hermes(&self, who: &Principal, topic: &str) -> bool {
        let Principal::Satellite(id) = who else {
            return false;
        };
        (topic == "hermes" || topic.starts_with("hermes/"))
            && self.registry().get(id).is_some_and(|s| s.hermes)
    }

    /// Logs a refusal and audits it, up to [`REFUSALS_PER_MIN`] a minute; the
    /// rest are counted into the next record.
    pub fn refused(&self, what: Refusal<'_>) {
        let (rule, who, message) = match &what {
            Refusal::Connect { hello, reason } => (
                "broker.connect",
                hello.username.map(str::to_string),
                format!(
                    "refused a connection from {} (client id {:?}): {reason}",
                    hello.peer,
                    truncate(hello.client_id)
                ),
            ),
            Refusal::Publish {
                who,
                client_id,
                topic,
            } => (
                "broker.publish",
                name(who),
                format!(
                    "refused a publish on {:?} by client {:?}: not its topic",
                    truncate(topic),
                    truncate(client_id)
                ),
            ),
            Refusal::Subscribe {
                who,
                client_id,
                filter,
            } => (
                "broker.subscribe",
                name(who),
                format!(
                    "refused a subscription to {:?} by client {:?}: not its topic",
                    truncate(filter),
                    truncate(client_id)
                ),
            ),
        };
        tracing::warn!(rule, "{message}");
        let Some(audit) = self.audit.get() else {
            return;
        };
        let (within, earlier) = self
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(REFUSALS_PER_MIN);
        if !within {
            return;
        }
        let message = if earlier > 0 {
            format!(
                "{message} ({earlier} more refusals in the minute before were not recorded one by one)"
            )
        } else {
            message
        };
        let mut record = Record::new(Kind::Refusal);
        record.satellite = who.filter(|w| super::check_id(w).is_ok());
        record.rule = Some(rule.to_string());
        record.decision = Some(crate::audit::Decision::Deny);
        record.message = Some(message);
        audit.record(&record);
    }
}

/// Something the broker refused.
#[derive(Debug)]
pub enum Refusal<'a> {
    Connect {
        hello: &'a Hello<'a>,
        reason: &'a str,
    },
    Publish {
        who: &'a Principal,
        client_id: &'a str,
        topic: &'a str,
    },
    Subscribe {
        who: &'a Principal,
        client_id: &'a str,
        filter: &'a str,
    },
}

fn name(who: &Principal) -> Option<String> {
    match who {
        Principal::Satellite(id) => Some(id.clone()),
        _ => None,
    }
}

/// A name from a client, cut to a length a log line can hold.
fn truncate(text: &str) -> String {
    text.chars().take(128).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Keeps `access` on the registry in `state_dir` while the hub runs: reads it
/// again within a second of `hark satellite add|remove|rotate` changing it and
/// has `disconnect` close the connections that lost their login; writes the
/// satellites that logged in as `last_seen`, once a minute at most. A registry
/// that cannot be read (a hand edit gone wrong) is logged, and the one in use
/// stays. `stamp` is the file's as it was before `access` read it.
pub async fn keep_current(
    access: Arc<Access>,
    state_dir: std::path::PathBuf,
    mut stamp: Option<super::Stamp>,
    disconnect: impl Fn(&dyn Fn(&Principal) -> bool),
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_write = Instant::now();
    loop {
        tick.tick().await;
        if last_write.elapsed() >= Duration::from_secs(60) {
            let seen = access.take_seen();
            if !seen.is_empty() {
                last_write = Instant::now();
                let dir = state_dir.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let when = super::now();
                    Registry::edit(&dir, |r| {
                        r.mark_seen(seen.iter().map(String::as_str), &when);
                        Ok(())
                    })
                })
                .await;
                if let Ok(Err(e)) = written {
                    tracing::warn!("cannot record when satellites were last seen: {e}");
                }
            }
        }
        let now = Registry::stamp(&state_dir);
        if now == stamp {
            continue;
        }
        stamp = now;
        let dir = state_dir.clone();
        match tokio::task::spawn_blocking(move || Registry::load(&dir)).await {
            Ok(Ok(registry)) => {
                tracing::info!(satellites = registry.len(), "satellite registry read again");
                let cut = access.replace(registry);
                disconnect(&cut);
            }
            Ok(Err(e)) => tracing::error!("{e}; the satellites registered before stay in force"),
            Err(e) => tracing::error!("reading the satellite registry failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(registry: Registry, mode: AuthMode) -> Access {
        Access::new(Settings {
            prefix: "hark",
            admin_secret: "admin-secret-0123456789".into(),
            configured: None,
            mode,
            exposed: false,
            registry,
        })
    }

    fn hello<'a>(client_id: &'a str, username: Option<&'a str>, password: &'a str) -> Hello<'a> {
        Hello {
            client_id,
            username,
            password: Some(password.as_bytes()),
            peer: "127.0.0.1:5000".parse().unwrap(),
        }
    }

    #[test]
    fn logins_are_checked_and_the_hubs_client_id_is_the_hubs_alone() {
        let mut registry = Registry::default();
        let secret = registry.add("kitchen", None).unwrap();
        let gate = access(registry, AuthMode::Auto);
        assert!(!gate.is_open(), "a registered satellite closes the broker");
        let ok = gate.connect(&hello("k1", Some("kitchen"), &secret));
        assert_eq!(ok, Ok(Principal::Satellite("kitchen".into())));
        // Again, from the remembered login, and a wrong one after it.
        assert!(gate.connect(&hello("k1", Some("kitchen"), &secret)).is_ok());
        let err = gate
            .connect(&hello("k1", Some("kitchen"), "guess"))
            .unwrap_err();
        assert!(err.contains("wrong password"), "{err}");
        let err = gate
            .connect(&hello("x", Some("attic"), &secret))
            .unwrap_err();
        assert!(err.contains("\"attic\""), "{err}");
        let err = gate.connect(&hello("anon", None, "")).unwrap_err();
        assert!(err.contains("hark satellite add"), "{err}");
        let err = gate
            .connect(&hello("hark-hub", Some("kitchen"), &secret))
            .unwrap_err();
        assert!(err.contains("hub's own"), "{err}");
        let hub = gate.connect(&hello(
            "hark-hub",
            Some("hark-hub"),
            "admin-secret-0123456789",
        ));
        assert_eq!(hub, Ok(Principal::Hub));
        let cli = gate.connect(&hello(
            "send-1",
            Some("hark-admin"),
            "admin-secret-0123456789",
        ));
        assert_eq!(cli, Ok(Principal::Admin));
        assert!(gate.connect(&hello("x", Some("hark-hub"), "nope")).is_err());
        assert_eq!(
            gate.take_seen().into_iter().collect::<Vec<_>>(),
            ["kitchen"]
        );
    }

    #[test]
    fn an_empty_registry_on_loopback_is_open_until_a_satellite_is_added() {
        let gate = access(Registry::default(), AuthMode::Auto);
        assert_eq!(gate.connect(&hello("a", None, "")), Ok(Principal::Open));
        let mut registry = Registry::default();
        let secret = registry.add("hall", None).unwrap();
        let cut = gate.replace(registry.clone());
        assert!(
            cut(&Principal::Open),
            "open clients are cut once a login is needed"
        );
        assert!(!cut(&Principal::Hub));
        assert!(gate.connect(&hello("a", None, "")).is_err());
        assert!(gate.connect(&hello("h", Some("hall"), &secret)).is_ok());

        let mut rotated = registry.clone();
        let fresh = rotated.rotate("hall").unwrap();
        let cut = gate.replace(rotated);
        assert!(cut(&Principal::Satellite("hall".into())));
        assert!(
            gate.connect(&hello("h", Some("hall"), &secret)).is_err(),
            "the old password is dead"
        );
        assert!(gate.connect(&hello("h", Some("hall"), &fresh)).is_ok());

        let required = access(Registry::default(), AuthMode::Required);
        assert!(required.connect(&hello("a", None, "")).is_err());
        let off = access(registry, AuthMode::Off);
        assert_eq!(off.connect(&hello("a", None, "")), Ok(Principal::Open));
    }

    #[tokio::test]
    async fn a_removal_on_disk_disconnects_that_satellite_within_seconds() {
        let dir = std::env::temp_dir().join(format!("hark-gate-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Registry::edit(&dir, |r| {
            r.add("kitchen", None)?;
            r.add("hall", None)
        })
        .unwrap();
        let stamp = Registry::stamp(&dir);
        let gate = Arc::new(access(Registry::load(&dir).unwrap(), AuthMode::Auto));
        let (tx, mut cut) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(keep_current(
            gate.clone(),
            dir.clone(),
            stamp,
            move |which| {
                let hit: Vec<&str> = ["kitchen", "hall"]
                    .into_iter()
                    .filter(|id| which(&Principal::Satellite(id.to_string())))
                    .collect();
                let _ = tx.send(hit.join(","));
            },
        ));
        Registry::edit(&dir, |r| r.remove("hall").map(drop)).unwrap();
        let hit = tokio::time::timeout(Duration::from_secs(15), cut.recv())
            .await
            .expect("the change is noticed")
            .unwrap();
        assert_eq!(hit, "hall");
        watcher.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_window_admits_its_limit_then_reports_the_rest_once() {
        let mut window = Window::new(Duration::from_secs(3600));
        let admitted = (0..25).filter(|_| window.admit(20).0).count();
        assert_eq!(admitted, 20);
        window.started -= Duration::from_secs(3600);
        assert_eq!(
            window.admit(20),
            (true, 5),
            "the next window reports the 5 over"
        );
        assert_eq!(window.admit(20), (true, 0));
    }
}
