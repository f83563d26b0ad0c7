//! The hub's secret store: `<state_dir>/secrets.toml`, a flat table of
//! `id = "value"`, readable by the hub's user only. A skill reads one id it
//! declared (`secrets.read:<id>`) and was granted. Secrets never come from
//! the process environment.
//!
//! The file is read and parsed once and kept, shared by every call, until its
//! metadata (size, times, inode) changes: a skill reading a secret costs a
//! `stat`, not a read and a parse of the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The secret file and what was last read from it.
#[derive(Debug)]
pub struct SecretStore {
    path: PathBuf,
    cache: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    table: Result<toml::Table, String>,
}

/// What tells that the file changed: a rewrite in place changes its times
/// (and usually its size), a replacement by rename its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One secret looked up.
#[derive(Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The value, `None` when the store lacks it (or does not exist).
    pub value: Result<Option<String>, String>,
    /// `Some(bytes)` when the file had to be read (first use, or changed).
    pub file_read: Option<u64>,
}

impl SecretStore {
    pub fn new(path: PathBuf) -> SecretStore {
        SecretStore {
            path,
            cache: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Secret `id`, from the cached table while the file is unchanged.
    pub fn read(&self, id: &str) -> Lookup {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Lookup {
                    value: Ok(None),
                    file_read: None,
                };
            }
            Err(e) => {
                return Lookup {
                    value: Err(format!("cannot read the secret store: {e}")),
                    file_read: None,
                };
            }
        };
        let stamp = Stamp::of(&meta);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut file_read = None;
        if cache.as_ref().is_none_or(|c| c.stamp != stamp) {
            let table = load(&self.path, &meta);
            file_read = Some(meta.len());
            *cache = Some(Cached { stamp, table });
        }
        let cached = cache.as_ref().expect("filled above");
        let value = match &cached.table {
            Err(e) => Err(e.clone()),
            Ok(table) => match table.get(id) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!(
                    "the secret \"{id}\" in the secret store is not a string"
                )),
            },
        };
        Lookup { value, file_read }
    }
}

/// Reads and parses the file (once per change), warning once if others may
/// read it.
fn load(path: &Path, meta: &std::fs::Metadata) -> Result<toml::Table, String> {
    use std::os::unix::fs::PermissionsExt;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the secret store: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "the secret store {} can be read by other users; chmod 600 it",
            path.display()
        );
    }
    toml::from_str(&text)
        .map_err(|e| format!("the secret store {} is not valid TOML: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(store: &SecretStore, id: &str) -> Result<Option<String>, String> {
        store.read(id).value
    }

    #[test]
    fn secrets_are_read_by_id() {
        let path = std::env::temp_dir().join(format!("hark-secrets-{}.toml", std::process::id()));
        std::fs::write(&path, "weather_api = \"abc123\"\nnumber = 5\n").unwrap();
        let store = SecretStore::new(path.clone());
        assert_eq!(
            value(&store, "weather_api").unwrap().as_deref(),
            Some("abc123")
        );
        assert_eq!(value(&store, "missing").unwrap(), None);
        assert!(value(&store, "number").is_err());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(value(&store, "weather_api").unwrap(), None);
    }

    #[test]
    fn the_file_is_read_once_and_again_only_when_it_changes() {
        let path =
            std::env::temp_dir().join(format!("hark-secrets-cache-{}.toml", std::process::id()));
        std::fs::write(&path, "a = \"1\"\n").unwrap();
        let store = SecretStore::new(path.clone());
        let first = store.read("a");
        assert_eq!(first.value, Ok(Some("1".into())));
        assert_eq!(first.file_read, Some(8));
        for _ in 0..100 {
            assert_eq!(
                store.read("a"),
                Lookup {
                    value: Ok(Some("1".into())),
                    file_read: None
                }
            );
        }
        // Same size, new contents, replaced by rename as editors and `install` do.
        let next = path.with_extension("new");
        std::fs::write(&next, "a = \"2\"\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let changed = store.read("a");
        assert_eq!(changed.value, Ok(Some("2".into())));
        assert_eq!(changed.file_read, Some(8));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_broken_file_is_an_error_each_time_until_it_is_fixed() {
        let path =
            std::env::temp_dir().join(format!("hark-secrets-broken-{}.toml", std::process::id()));
        std::fs::write(&path, "a = [unclosed\n").unwrap();
        let store = SecretStore::new(path.clone());
        assert!(
            store
                .read("a")
                .value
                .unwrap_err()
                .contains("not valid TOML")
        );
        assert!(
            store.read("a").value.is_err(),
            "still broken, from the cache"
        );
        std::fs::write(&path, "a = \"fixed\"\n").unwrap();
        assert_eq!(store.read("a").value, Ok(Some("fixed".into())));
        std::fs::remove_file(&path).unwrap();
    }
}
