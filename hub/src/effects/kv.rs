//! A skill's private key/value store: one JSON file per skill under
//! `<state_dir>/kv/`, capped in size, written atomically on every change.
//! The file name comes from the skill's name, never from the skill, so a
//! skill can reach only its own store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hark_skill_sdk::abi::{self, Code};

use crate::fsutil::{create_private_dir, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("kv: the store would hold {would} bytes; the limit is {limit}")]
    Full { would: usize, limit: usize },
    /// Saving would write more than the caller may still write (a per-call
    /// cap of the sandbox); nothing was changed.
    #[error("kv: saving the store takes {bytes} bytes; this call may write {left} more")]
    WriteBudget { bytes: usize, left: usize },
    #[error("kv: cannot save the store: {0}")]
    Io(#[from] std::io::Error),
    /// The skill has no store: built-ins keep no state of their own.
    #[error("kv: this skill has no key/value store")]
    NoStore,
}

impl KvError {
    pub fn code(&self) -> Code {
        match self {
            KvError::Full { .. } => Code::TooLarge,
            KvError::WriteBudget { .. } => Code::Limit,
            KvError::Io(_) | KvError::NoStore => Code::Internal,
        }
    }
}

#[derive(Debug)]
pub struct KvStore {
    path: PathBuf,
    map: Mutex<BTreeMap<String, Vec<u8>>>,
}

/// Values are stored as hex: JSON has no bytes, and stores are small.
#[derive(serde::Serialize, serde::Deserialize)]
struct OnDisk(BTreeMap<String, String>);

impl KvStore {
    /// Opens the store of `skill` in `dir` (`<state_dir>/kv`). A damaged
    /// file is an error: the skill's data is not silently thrown away.
    pub fn open(dir: &Path, skill: &str) -> Result<KvStore, String> {
        let path = dir.join(format!("{skill}.json"));
        let map = match std::fs::read(&path) {
            Ok(bytes) => {
                let on_disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the kv store {} is damaged ({e}); move it aside to start empty",
                        path.display()
                    )
                })?;
                let mut map = BTreeMap::new();
                for (k, v) in on_disk.0 {
                    let bytes = from_hex(&v).ok_or_else(|| {
                        format!(
                            "the kv store {} is damaged (bad value for \"{k}\")",
                            path.display()
                        )
                    })?;
                    map.insert(k, bytes);
                }
                map
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read the kv store {}: {e}", path.display())),
        };
        Ok(KvStore {
            path,
            map: Mutex::new(map),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    /// Stores `value` under `key` and saves the whole store, unless saving
    /// would write more than `max_write` bytes. Returns the bytes written.
    pub fn set(&self, key: &str, value: Vec<u8>, max_write: usize) -> Result<usize, KvError> {
        let mut map = self.lock();
        let mut next = map.clone();
        next.insert(key.to_string(), value);
        let would: usize = next.iter().map(|(k, v)| k.len() + v.len()).sum();
        if would > abi::MAX_KV_TOTAL {
            return Err(KvError::Full {
                would,
                limit: abi::MAX_KV_TOTAL,
            });
        }
        let written = self.save(&next, max_write)?;
        *map = next;
        Ok(written)
    }

    /// Removes `key` and saves the whole store, unless saving would write
    /// more than `max_write` bytes. Returns the bytes written, `None` when
    /// there was no such key (nothing is written).
    pub fn delete(&self, key: &str, max_write: usize) -> Result<Option<usize>, KvError> {
        let mut map = self.lock();
        if !map.contains_key(key) {
            return Ok(None);
        }
        let mut next = map.clone();
        next.remove(key);
        let written = self.save(&next, max_write)?;
        *map = next;
        Ok(Some(written))
    }

    fn save(&self, map: &BTreeMap<String, Vec<u8>>, max_write: usize) -> Result<usize, KvError> {
        let on_disk = OnDisk(map.iter().map(|(k, v)| (k.clone(), to_hex(v))).collect());
        let bytes = serde_json::to_vec(&on_disk).expect("kv serializes");
        if bytes.len() > max_write {
            return Err(KvError::WriteBudget {
                bytes: bytes.len(),
                left: max_write,
            });
        }
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        write_atomic(&self.path, &bytes)?;
        Ok(bytes.len())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hark-kv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn values_persist_across_reopening() {
        let d = dir("persist");
        let kv = KvStore::open(&d, "shopping_list").unwrap();
        kv.set("items", b"milk\neggs".to_vec(), usize::MAX).unwrap();
        kv.set("empty", Vec::new(), usize::MAX).unwrap();
        drop(kv);
        let kv = KvStore::open(&d, "shopping_list").unwrap();
        assert_eq!(kv.get("items").unwrap(), b"milk\neggs");
        assert_eq!(kv.get("empty").unwrap(), b"");
        assert!(kv.delete("items", usize::MAX).unwrap().is_some());
        assert_eq!(kv.delete("items", usize::MAX).unwrap(), None);
        assert!(
            KvStore::open(&d, "other").unwrap().get("empty").is_none(),
            "stores are per skill"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_store_has_a_total_size_cap() {
        let d = dir("cap");
        let kv = KvStore::open(&d, "hog").unwrap();
        let big = vec![7u8; abi::MAX_KV_VALUE];
        let mut stored = 0;
        let err = loop {
            match kv.set(&format!("k{stored}"), big.clone(), usize::MAX) {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, KvError::Full { .. }), "{err}");
        assert_eq!(err.code(), Code::TooLarge);
        assert!(stored >= 10);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_save_over_the_callers_write_allowance_changes_nothing() {
        let d = dir("allowance");
        let kv = KvStore::open(&d, "thrifty").unwrap();
        let written = kv.set("a", vec![1; 100], usize::MAX).unwrap();
        assert_eq!(written as u64, std::fs::metadata(&kv.path).unwrap().len());
        let err = kv.set("b", vec![2; 100], written).unwrap_err();
        assert!(matches!(err, KvError::WriteBudget { .. }), "{err}");
        assert_eq!(err.code(), Code::Limit);
        assert!(kv.get("b").is_none(), "not set in memory either");
        assert!(matches!(
            kv.delete("a", 1),
            Err(KvError::WriteBudget { .. })
        ));
        assert!(kv.get("a").is_some());
        drop(kv);
        let kv = KvStore::open(&d, "thrifty").unwrap();
        assert!(kv.get("b").is_none() && kv.get("a").is_some());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_store_is_an_error_not_an_empty_store() {
        let d = dir("damaged");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("s.json"), b"{not json").unwrap();
        let err = KvStore::open(&d, "s").unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
