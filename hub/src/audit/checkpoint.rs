//! Signed checkpoints: the hub's key (`<state_dir>/hub.key`), and the tree's size and root in the
//! C2SP `tlog-checkpoint` signed-note text format, appended to `<log>.checkpoints` by a
//! [`CheckpointJob`] that runs off the hub's loop.
//!
//! A checkpoint reads:
//!
//! ```text
//! hark-audit/<16 hex digits of the key's SHA-256>
//! 1042
//! <base64 of the root hash>
//!
//! — hark-audit/<…> <base64 of key id (4 bytes) || ed25519 signature (64 bytes)>
//! ```
//!
//! The signature covers the three lines above the blank one; the key id is the first 4 bytes of
//! SHA-256(name || '\n' || 0x01 || public key), as C2SP signed-note fixes it for ed25519. The
//! checkpoints file is the notes one after another, each followed by a blank line.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ct_codecs::{Base64, Decoder, Encoder};
use ed25519_compact::{KeyPair, PublicKey, SecretKey, Seed, Signature};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use super::sync::with_suffix;
use super::{AuditError, FILE_MODE};
use crate::audit::line::hex;

const SECRET_PREFIX: &str = "ed25519-secret:";

/// `<state_dir>/hub.key`.
pub fn hub_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("hub.key")
}

/// `<state_dir>/hub.pub`: the public half, readable by the `hark` group,
/// so `hark audit key` and `verify` work for its members without the secret.
pub fn hub_public_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("hub.pub")
}

/// Writes `hub.pub` (mode 0644) for `key` unless it already says so.
pub fn publish_public_key(path: &Path, key: &SecretKey) -> Result<(), AuditError> {
    let text = format!("{}\n", crate::signing::format_key(&key.public_key()));
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let temp = with_suffix(path, ".tmp");
    let write = || -> io::Result<()> {
        let _ = std::fs::remove_file(&temp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write().map_err(AuditError::io(path, "write the hub's public key"))
}

/// `<log>.checkpoints`.
pub fn checkpoints_path(log: &Path) -> PathBuf {
    with_suffix(log, ".checkpoints")
}

/// Reads the hub's key, or makes one (mode 0600) when there is none yet.
pub fn load_or_create_key(path: &Path) -> Result<SecretKey, AuditError> {
    match read_key(path) {
        Err(KeyError::Missing) => {}
        Err(KeyError::Other(reason)) => {
            return Err(AuditError::Key {
                path: path.to_owned(),
                reason,
            });
        }
        Ok(key) => return Ok(key),
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| AuditError::Key {
        path: path.to_owned(),
        reason: format!("no randomness from the OS: {e}"),
    })?;
    let pair = KeyPair::from_seed(Seed::new(seed));
    let text = format!(
        "{SECRET_PREFIX}{}\n",
        Base64::encode_to_string(pair.sk.as_ref()).expect("64 bytes encode")
    );
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    };
    write().map_err(AuditError::io(path, "create the hub's signing key"))?;
    tracing::info!(key = %crate::signing::format_key(&pair.pk), "made the hub's audit signing key {}", path.display());
    Ok(pair.sk)
}

#[derive(Debug)]
pub enum KeyError {
    Missing,
    Other(String),
}

/// Reads `hub.key`.
pub fn read_key(path: &Path) -> Result<SecretKey, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeyError::Missing),
        Err(e) => return Err(KeyError::Other(format!("cannot read it: {e}"))),
    };
    let bad = || {
        KeyError::Other(
            "it is not an ed25519 secret key (ed25519-secret:<base64>); move it aside and the \
             hub makes a new one at its next start"
                .to_owned(),
        )
    };
    let b64 = text.trim().strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
    let bytes = Base64::decode_to_vec(b64, None).map_err(|_| bad())?;
    SecretKey::from_slice(&bytes).map_err(|_| bad())
}

/// The origin line of every checkpoint of the log signed by `key`, also the signature's name.
pub fn origin(key: &PublicKey) -> String {
    format!("hark-audit/{}", &hex(&Sha256::digest(key.as_ref()))[..16])
}

/// The C2SP signed-note key id of an ed25519 key.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', 0x01]);
    h.update(key.as_ref());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// What a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            Base64::encode_to_string(self.root).expect("32 bytes encode")
        )
    }

    /// The signed note, ending in '\n'.
    pub fn sign(&self, key: &SecretKey) -> String {
        let body = self.body();
        let signature = key.sign(body.as_bytes(), None);
        let mut blob = key_id(&self.origin, &key.public_key()).to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!(
            "{body}\n\u{2014} {} {}\n",
            self.origin,
            Base64::encode_to_string(&blob).expect("68 bytes encode")
        )
    }
}

/// Reads a signed note and checks its signature by `key`; says what is wrong otherwise.
pub fn open_note(note: &str, key: &PublicKey) -> Result<Checkpoint, String> {
    let Some((body, sigs)) = note.split_once("\n\n") else {
        return Err("it is not a signed note: no blank line before the signatures".to_owned());
    };
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let origin = lines.next().unwrap_or_default().to_owned();
    let size = lines
        .next()
        .and_then(|s| s.parse::<u64>().ok().filter(|_| !s.starts_with('+')))
        .ok_or("its second line is not a tree size")?;
    let root: Hash = lines
        .next()
        .and_then(|s| Base64::decode_to_vec(s, None).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or("its third line is not the base64 of a 32-byte root hash")?;
    if origin.is_empty() {
        return Err("its first line (the origin) is empty".to_owned());
    }
    if origin != self::origin(key) {
        return Err(format!(
            "it is the checkpoint of another log ({origin}), not of the one signed by {} ({})",
            crate::signing::format_key(key),
            self::origin(key)
        ));
    }
    let want_id = key_id(&origin, key);
    let mut others = Vec::new();
    for line in sigs.lines().filter(|l| !l.is_empty()) {
        let parsed = line
            .strip_prefix("\u{2014} ")
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(name, b64)| Some((name, Base64::decode_to_vec(b64, None).ok()?)));
        let Some((name, blob)) = parsed.filter(|(_, b)| b.len() >= 4) else {
            return Err(format!("its signature line \"{line}\" is malformed"));
        };
        if name != origin || blob[..4] != want_id {
            others.push(format!("{name} (key id {})", hex(&blob[..4])));
            continue;
        }
        let signature = Signature::from_slice(&blob[4..])
            .map_err(|_| "its signature is not 64 bytes".to_owned())?;
        return match key.verify(body.as_bytes(), &signature) {
            Ok(()) => Ok(Checkpoint { origin, size, root }),
            Err(_) => Err(
                "its signature does not verify: the checkpoint was changed after it was signed"
                    .to_owned(),
            ),
        };
    }
    if others.is_empty() {
        Err("it has no signature".to_owned())
    } else {
        Err(format!(
            "it is signed by another key: {}, not by {} (key id {})",
            others.join(", "),
            crate::signing::format_key(key),
            hex(&want_id)
        ))
    }
}

/// The notes in a checkpoints file, each with the line it starts on (1-based).
pub fn split_notes(text: &str) -> Vec<(usize, String)> {
    let mut notes = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    loop {
        while lines.peek().is_some_and(|(_, l)| l.is_empty()) {
            lines.next();
        }
        let Some(&(start, _)) = lines.peek() else {
            break;
        };
        let mut note = String::new();
        for (_, l) in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            note.push_str(l);
            note.push('\n');
        }
        note.push('\n');
        for (_, l) in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            note.push_str(l);
            note.push('\n');
        }
        notes.push((start + 1, note));
    }
    notes
}

/// The hub's last checkpoint of its own log, checked; `Ok(None)` when it has made none yet.
pub fn last_checkpoint(log: &Path, key: &PublicKey) -> Result<Option<Checkpoint>, String> {
    let path = checkpoints_path(log);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    match split_notes(&text).pop() {
        None => Ok(None),
        Some((line, note)) => open_note(&note, key)
            .map(Some)
            .map_err(|e| format!("{} line {line}: the last checkpoint: {e}", path.display())),
    }
}

/// Signing one checkpoint and appending it to the checkpoints file, taken from
/// [`AuditLog::prepare_checkpoint`](super::AuditLog::prepare_checkpoint). Runs after the
/// [`SyncJob`](super::SyncJob) of the same records: a checkpoint never names a record a power cut
/// can take back.
#[derive(Debug)]
pub struct CheckpointJob {
    pub(super) checkpoint: Checkpoint,
    pub(super) key: SecretKey,
    pub(super) path: PathBuf,
}

impl CheckpointJob {
    /// Signs and appends; the note, for publishing.
    pub fn run(self) -> Result<String, AuditError> {
        let note = self.checkpoint.sign(&self.key);
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(FILE_MODE)
                .open(&self.path)?;
            f.write_all(format!("{note}\n").as_bytes())?;
            f.sync_data()
        };
        write().map_err(AuditError::io(&self.path, "append a checkpoint"))?;
        Ok(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        KeyPair::from_seed(Seed::new([n; 32])).sk
    }

    fn checkpoint(k: &SecretKey, size: u64) -> Checkpoint {
        Checkpoint {
            origin: origin(&k.public_key()),
            size,
            root: [7; 32],
        }
    }

    #[test]
    fn a_signed_checkpoint_reads_back() {
        let k = key(1);
        let cp = checkpoint(&k, 1042);
        let note = cp.sign(&k);
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines.len(), 5, "{note}");
        assert_eq!(lines[0], cp.origin);
        assert!(lines[0].starts_with("hark-audit/"));
        assert_eq!(lines[1], "1042");
        assert_eq!(lines[2], "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with(&format!("\u{2014} {} ", cp.origin)));
        assert_eq!(open_note(&note, &k.public_key()), Ok(cp));
    }

    #[test]
    fn the_key_id_is_the_c2sp_one() {
        // c2sp.org/signed-note: SHA-256(name || 0x0A || 0x01 || key)[:4], here recomputed by hand.
        let k = key(2).public_key();
        let mut data = b"example.com/log\n\x01".to_vec();
        data.extend_from_slice(k.as_ref());
        assert_eq!(key_id("example.com/log", &k), Sha256::digest(&data)[..4]);
    }

    #[test]
    fn a_changed_checkpoint_or_another_key_is_named() {
        let k = key(1);
        let note = checkpoint(&k, 10).sign(&k);
        let changed = note.replacen("\n10\n", "\n11\n", 1);
        let e = open_note(&changed, &k.public_key()).unwrap_err();
        assert!(e.contains("signature does not verify"), "{e}");

        // Signed by another key under this log's name.
        let other = key(3);
        let by_other = checkpoint(&k, 10).sign(&other);
        let e = open_note(&by_other, &k.public_key()).unwrap_err();
        assert!(e.contains("signed by another key"), "{e}");
        assert!(open_note(&note, &k.public_key()).is_ok());

        let e = open_note(&checkpoint(&other, 1).sign(&other), &k.public_key()).unwrap_err();
        assert!(e.contains("checkpoint of another log"), "{e}");
    }

    #[test]
    fn a_checkpoints_file_splits_into_its_notes() {
        let k = key(1);
        let a = checkpoint(&k, 1).sign(&k);
        let b = checkpoint(&k, 2).sign(&k);
        let text = format!("{a}\n{b}\n");
        let notes = split_notes(&text);
        assert_eq!(notes, vec![(1, a.clone()), (7, b.clone())]);
        // One note saved from MQTT, with no blank line after it.
        assert_eq!(split_notes(&b), vec![(1, b)]);
    }

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::audit::test_util::TestDir::new("key");
        let path = hub_key_path(&dir.0);
        let made = load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_key(&path).unwrap(), made);
        std::fs::write(&path, "nonsense").unwrap();
        let e = load_or_create_key(&path).unwrap_err().to_string();
        assert!(e.contains("not an ed25519 secret key"), "{e}");
    }
}
