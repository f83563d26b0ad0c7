//! The satellite registry (SPEC §7): who may speak to the hub, each with a
//! login of its own, kept in `<state_dir>/satellites.toml` (0600).
//!
//! A satellite's id is its MQTT username, and the broker binds that login to
//! the satellite's own topics ([`access`]), so a client can speak only for
//! itself. Passwords are generated here, shown once, and stored as Argon2id
//! hashes; beside each the registry keeps the PBKDF2-SHA512 form a mosquitto
//! `password_file` needs ([`mosquitto`]), since neither can be made from the
//! other and the password itself is never stored.
//!
//! The CLI edits the file while the hub may be running: every edit holds an
//! exclusive lock on `satellites.lock` and replaces the file atomically, and
//! the hub notices the change ([`Registry::stamp`]) and cuts off removed or
//! rotated satellites at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod access;
pub mod admin;
pub mod gate;
pub mod mosquitto;
mod password;

pub use access::Principal;

/// The registry's file name under the state dir.
pub const FILE: &str = "satellites.toml";
const LOCK: &str = "satellites.lock";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid satellite registry: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("no satellite \"{0}\" is registered (`hark satellite list` shows them)")]
    Unknown(String),
    #[error(
        "satellite \"{0}\" is already registered; `hark satellite rotate {0}` gives it a new password"
    )]
    Exists(String),
    #[error("no randomness from the OS: {0}")]
    Random(String),
}

/// One registered satellite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Satellite {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// Argon2id, as a PHC string.
    pub password: String,
    /// The same password as mosquitto's `$7$` PBKDF2-SHA512 hash.
    pub mosquitto: String,
    /// When it was added or last rotated (RFC 3339, UTC).
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// A Rhasspy (Hermes) login: may also use every `hermes/…` topic, as
    /// Rhasspy's services need. The site inside each payload is checked by
    /// `hermes.sites`, not by the broker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hermes: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default, rename = "satellite")]
    satellites: Vec<Satellite>,
}

/// What identifies one version of the file: a change to any of these means
/// the registry must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

/// The satellites of one state dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    satellites: BTreeMap<String, Satellite>,
}

impl Registry {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// The registry in `state_dir`; no file is an empty registry.
    pub fn load(state_dir: &Path) -> Result<Registry, RegistryError> {
        let path = Registry::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(source) => return Err(RegistryError::Read { path, source }),
        };
        let file: RegistryFile = toml::from_str(&text).map_err(|e| RegistryError::Parse {
            path: path.clone(),
            message: e.message().to_string(),
        })?;
        let mut satellites = BTreeMap::new();
        for satellite in file.satellites {
            let parse = |message: String| RegistryError::Parse {
                path: path.clone(),
                message,
            };
            check_id(&satellite.id).map_err(parse)?;
            password::check_stored(&satellite.password)
                .map_err(|m| parse(format!("satellite \"{}\": {m}", satellite.id)))?;
            let id = satellite.id.clone();
            if satellites.insert(id.clone(), satellite).is_some() {
                return Err(parse(format!("satellite \"{id}\" is listed twice")));
            }
        }
        Ok(Registry { satellites })
    }

    /// The file's identity now (`None`: there is no file).
    pub fn stamp(state_dir: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(Registry::path(state_dir)).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }

    /// Loads the registry under its lock, lets `change` edit it, and writes it
    /// back (0600, owned like the state dir) if `change` succeeded.
    pub fn edit<T>(
        state_dir: &Path,
        change: impl FnOnce(&mut Registry) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        crate::fsutil::create_private_dir(state_dir).map_err(|source| RegistryError::Write {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let _lock = Lock::take(&state_dir.join(LOCK))?;
        let mut registry = Registry::load(state_dir)?;
        let out = change(&mut registry)?;
        registry.save(state_dir)?;
        Ok(out)
    }

    fn save(&self, state_dir: &Path) -> Result<(), RegistryError> {
        let path = Registry::path(state_dir);
        let file = RegistryFile {
            satellites: self.satellites.values().cloned().collect(),
        };
        let text = toml::to_string(&file).map_err(|e| RegistryError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let text = format!(
            "# Hark's satellites: edit with `hark satellite add|remove|rotate`.\n\
             # Passwords are stored only as hashes.\n\n{text}"
        );
        crate::fsutil::write_private(&path, text.as_bytes())
            .map_err(|source| RegistryError::Write { path, source })
    }

    pub fn is_empty(&self) -> bool {
        self.satellites.is_empty()
    }

    pub fn len(&self) -> usize {
        self.satellites.len()
    }

    pub fn get(&self, id: &str) -> Option<&Satellite> {
        self.satellites.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Satellite> {
        self.satellites.values()
    }

    /// Registers `id` and returns its new password (shown once, never stored).
    pub fn add(&mut self, id: &str, area: Option<&str>) -> Result<String, RegistryError> {
        self.add_with(id, area, false)
    }

    /// [`Registry::add`], as a Rhasspy (Hermes) login when `hermes`.
    pub fn add_with(
        &mut self,
        id: &str,
        area: Option<&str>,
        hermes: bool,
    ) -> Result<String, RegistryError> {
        check_id(id).map_err(RegistryError::Usage)?;
        if let Some(area) = area {
            check_area(area).map_err(RegistryError::Usage)?;
        }
        if self.satellites.contains_key(id) {
            return Err(RegistryError::Exists(id.to_string()));
        }
        let secret = password::generate()?;
        let satellite = Satellite {
            id: id.to_string(),
            area: area.map(str::to_string),
            password: password::hash(&secret)?,
            mosquitto: mosquitto::hash(&secret)?,
            created: now(),
            last_seen: None,
            hermes,
        };
        self.satellites.insert(id.to_string(), satellite);
        Ok(secret)
    }

    /// Forgets `id`.
    pub fn remove(&mut self, id: &str) -> Result<Satellite, RegistryError> {
        self.satellites
            .remove(id)
            .ok_or_else(|| RegistryError::Unknown(id.to_string()))
    }

    /// Gives `id` a new password and returns it; the old one stops working.
    pub fn rotate(&mut self, id: &str) -> Result<String, RegistryError> {
        let secret = password::generate()?;
        let hash = password::hash(&secret)?;
        let mosquitto = mosquitto::hash(&secret)?;
        let satellite = self
            .satellites
            .get_mut(id)
            .ok_or_else(|| RegistryError::Unknown(id.to_string()))?;
        satellite.password = hash;
        satellite.mosquitto = mosquitto;
        satellite.created = now();
        Ok(secret)
    }

    /// Records that these satellites logged in at `when`.
    pub fn mark_seen<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>, when: &str) {
        for id in ids {
            if let Some(satellite) = self.satellites.get_mut(id) {
                satellite.last_seen = Some(when.to_string());
            }
        }
    }

    /// The satellites that are in `self` but gone from `newer` or hold another
    /// password there: their open connections must be closed.
    pub fn revoked_in<'a>(&'a self, newer: &'a Registry) -> Vec<&'a str> {
        self.satellites
            .values()
            .filter(|old| {
                newer
                    .get(&old.id)
                    .is_none_or(|new| new.password != old.password)
            })
            .map(|s| s.id.as_str())
            .collect()
    }
}

/// A satellite id (SPEC §2) that can also be an MQTT username and a mosquitto
/// `%u` substitution: 1–64 of `[A-Za-z0-9_-]`, and not the hub's own logins.
pub fn check_id(id: &str) -> Result<(), String> {
    crate::protocols::native::topics::check_satellite_id(id)
}

fn check_area(area: &str) -> Result<(), String> {
    if area.is_empty() || area.len() > 64 || area.chars().any(char::is_control) {
        return Err(format!(
            "--area \"{}\" must be 1-64 printable characters",
            area.escape_debug()
        ));
    }
    Ok(())
}

/// Now, as the registry writes times.
pub fn now() -> String {
    crate::audit::format_timestamp(std::time::SystemTime::now())
}

/// An exclusive `flock` held until dropped.
struct Lock {
    _file: std::fs::File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock, RegistryError> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|source| RegistryError::Write {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(RegistryError::Write {
                path: path.to_path_buf(),
                source: std::io::Error::last_os_error(),
            });
        }
        crate::fsutil::own_like_parent(path);
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hark-sat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn add_stores_hashes_only_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("add");
        let secret = Registry::edit(&dir, |r| r.add("kitchen", Some("Kitchen"))).unwrap();
        let text = std::fs::read_to_string(Registry::path(&dir)).unwrap();
        assert!(!text.contains(&secret), "the password is never stored");
        assert!(
            text.contains("$argon2id$") && text.contains("$7$"),
            "{text}"
        );
        let mode = std::fs::metadata(Registry::path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let registry = Registry::load(&dir).unwrap();
        let kitchen = registry.get("kitchen").unwrap();
        assert_eq!(kitchen.area.as_deref(), Some("Kitchen"));
        assert!(password::verify(&secret, &kitchen.password));
        assert!(!password::verify("guess", &kitchen.password));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_ids_twice_added_and_unknown_ones_are_refused_by_name() {
        let dir = scratch("bad");
        for bad in ["", "a/b", "+", "#", "sp ace", &"x".repeat(65)] {
            let err = Registry::edit(&dir, |r| r.add(bad, None)).unwrap_err();
            assert!(matches!(err, RegistryError::Usage(_)), "{bad:?}: {err}");
        }
        Registry::edit(&dir, |r| r.add("hall", None)).unwrap();
        let err = Registry::edit(&dir, |r| r.add("hall", None)).unwrap_err();
        assert!(err.to_string().contains("rotate hall"), "{err}");
        let err = Registry::edit(&dir, |r| r.remove("attic")).unwrap_err();
        assert!(err.to_string().contains("\"attic\""), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_and_removal_revoke_and_nothing_else_does() {
        let dir = scratch("revoke");
        Registry::edit(&dir, |r| {
            r.add("a", None)?;
            r.add("b", None)?;
            r.add("c", None)
        })
        .unwrap();
        let before = Registry::load(&dir).unwrap();
        Registry::edit(&dir, |r| {
            r.rotate("a")?;
            r.remove("b")?;
            r.add("d", None)?;
            r.mark_seen(["c"], "2026-12-02T00:00:00Z");
            Ok(())
        })
        .unwrap();
        let after = Registry::load(&dir).unwrap();
        assert_eq!(before.revoked_in(&after), ["a", "b"]);
        assert_eq!(
            after.get("c").unwrap().last_seen.as_deref(),
            Some("2026-12-02T00:00:00Z")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_registry_is_a_clear_error() {
        let dir = scratch("damaged");
        std::fs::create_dir_all(&dir).unwrap();
        for (text, expect) in [
            ("[[satellite]]\nid = \"a\"\n", "missing field"),
            (
                "[[satellite]]\nid = \"a/b\"\npassword = \"x\"\nmosquitto = \"x\"\ncreated = \"t\"\n",
                "a/b",
            ),
            (
                "[[satellite]]\nid = \"a\"\npassword = \"plain\"\nmosquitto = \"x\"\ncreated = \"t\"\n",
                "Argon2id",
            ),
        ] {
            std::fs::write(Registry::path(&dir), text).unwrap();
            let err = Registry::load(&dir).unwrap_err().to_string();
            assert!(
                err.contains(expect) && err.contains(FILE),
                "{expect}: {err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
