//! Timers on disk: a snapshot (`timers.json`, the whole table, replaced
//! atomically) and a journal (`timers.journal`, one JSON line per change,
//! appended and fsynced). One change costs one short line, whatever the size
//! of the table; the journal is folded into a new snapshot once it outgrows
//! it. Replaying a journal line is idempotent (set or remove one timer), so a
//! crash between writing a snapshot and emptying the journal loses nothing.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{Saved, Timer, TimerTable};
use crate::fsutil::write_atomic;

pub const SNAPSHOT: &str = "timers.json";
pub const JOURNAL: &str = "timers.journal";

/// The journal is folded into the snapshot when it is larger than this and
/// than twice the snapshot.
const MIN_COMPACT_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TimerStoreError {
    #[error("cannot read timers from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("timers file {path} is damaged ({message}); move it aside to start without its timers")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot save timers to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One change, as a journal line: `{"set": {timer}}` or `{"remove": "t-3"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Set(Timer),
    Remove(String),
}

impl Change {
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("timer changes serialize");
        line.push(b'\n');
        line
    }

    pub fn apply(self, table: &mut TimerTable) {
        match self {
            Change::Set(timer) => table.insert(timer),
            Change::Remove(id) => {
                table.remove(&id);
            }
        }
    }
}

/// Reads the snapshot and replays the journal of `state_dir`. A last
/// journal line cut short (a crash mid-append) is dropped with a warning;
/// damage anywhere else is an error that names the file.
pub fn load(state_dir: &Path) -> Result<TimerTable, TimerStoreError> {
    load_noting_removals(state_dir).map(|(table, _)| table)
}

/// [`load`], and the satellites that lost a timer in the journal: changes
/// since the last snapshot, whose lists the hub may not have published
/// before it stopped (a crash right after the write). Those without timers
/// now are still owed an empty list.
pub fn load_noting_removals(
    state_dir: &Path,
) -> Result<(TimerTable, BTreeSet<String>), TimerStoreError> {
    let mut removed = BTreeSet::new();
    let snapshot = state_dir.join(SNAPSHOT);
    let mut table = match std::fs::read(&snapshot) {
        Ok(bytes) => TimerTable::from(serde_json::from_slice::<Saved>(&bytes).map_err(|e| {
            TimerStoreError::Corrupt {
                path: snapshot.clone(),
                message: e.to_string(),
            }
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => TimerTable::default(),
        Err(source) => {
            return Err(TimerStoreError::Read {
                path: snapshot,
                source,
            });
        }
    };
    let journal = state_dir.join(JOURNAL);
    let bytes = match std::fs::read(&journal) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((table, removed)),
        Err(source) => {
            return Err(TimerStoreError::Read {
                path: journal,
                source,
            });
        }
    };
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Change>(line) {
            Ok(Change::Remove(id)) => {
                if let Some(timer) = table.remove(&id) {
                    removed.insert(timer.satellite);
                }
            }
            Ok(change) => change.apply(&mut table),
            // The last line without its newline: an append cut short.
            Err(_) if lines.peek().is_none() => {
                tracing::warn!(
                    path = %journal.display(),
                    line = n + 1,
                    "dropping a timer change cut short by a crash"
                );
            }
            Err(e) => {
                return Err(TimerStoreError::Corrupt {
                    path: journal,
                    message: format!("line {}: {e}", n + 1),
                });
            }
        }
    }
    Ok((table, removed))
}

/// The open journal and the snapshot beside it.
#[derive(Debug)]
pub struct Files {
    snapshot: PathBuf,
    journal_path: PathBuf,
    journal: File,
    /// Bytes in the journal that are known good.
    journal_len: u64,
    snapshot_len: u64,
}

impl Files {
    /// Writes `table` as the snapshot and starts an empty journal.
    pub fn create(state_dir: &Path, table: &TimerTable) -> Result<Files, TimerStoreError> {
        let snapshot = state_dir.join(SNAPSHOT);
        let journal_path = state_dir.join(JOURNAL);
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(|source| TimerStoreError::Write {
                path: journal_path.clone(),
                source,
            })?;
        let mut files = Files {
            snapshot,
            journal_path,
            journal,
            journal_len: 0,
            snapshot_len: 0,
        };
        files.compact(&table.saved())?;
        Ok(files)
    }

    /// Appends `lines` and makes them durable. On failure the journal is
    /// cut back to its last good length, so no half line stays behind.
    pub fn append(&mut self, lines: &[u8]) -> Result<(), TimerStoreError> {
        let result = self
            .journal
            .write_all(lines)
            .and_then(|()| self.journal.sync_data());
        match result {
            Ok(()) => {
                self.journal_len += lines.len() as u64;
                Ok(())
            }
            Err(source) => {
                if let Err(e) = self.journal.set_len(self.journal_len) {
                    tracing::error!("cannot cut the timer journal back after a failed write: {e}");
                }
                Err(TimerStoreError::Write {
                    path: self.journal_path.clone(),
                    source,
                })
            }
        }
    }

    /// Whether the journal has outgrown the snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.journal_len > MIN_COMPACT_BYTES.max(2 * self.snapshot_len)
    }

    /// After a failed compaction: wait until the journal has grown as much
    /// again before the next try, instead of trying after every change.
    pub fn postpone_compaction(&mut self) {
        self.snapshot_len = self.journal_len;
    }

    /// Replaces the snapshot with `saved` and empties the journal. Changes
    /// queued but not yet appended are in `saved` and will be appended
    /// after: replaying them again is harmless.
    pub fn compact(&mut self, saved: &Saved) -> Result<(), TimerStoreError> {
        let bytes = serde_json::to_vec(saved).expect("timers serialize");
        write_atomic(&self.snapshot, &bytes).map_err(|source| TimerStoreError::Write {
            path: self.snapshot.clone(),
            source,
        })?;
        self.snapshot_len = bytes.len() as u64;
        self.journal
            .set_len(0)
            .and_then(|()| self.journal.sync_data())
            .map_err(|source| TimerStoreError::Write {
                path: self.journal_path.clone(),
                source,
            })?;
        self.journal_len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Protocol;
    use crate::timers::table::TimerLimits;
    use std::time::Duration;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hark-timer-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn start(table: &mut TimerTable, label: &str) -> Timer {
        table
            .start(
                "kitchen",
                Protocol::NATIVE,
                Some(label),
                Duration::from_secs(60),
                0,
                &TimerLimits::default(),
            )
            .unwrap()
    }

    #[test]
    fn changes_survive_as_journal_lines_and_fold_into_the_snapshot() {
        let dir = dir("fold");
        let mut table = TimerTable::default();
        let mut files = Files::create(&dir, &table).unwrap();
        let pasta = start(&mut table, "pasta");
        let tea = start(&mut table, "tea");
        table.remove(&pasta.id);
        let mut lines = Change::Set(pasta.clone()).line();
        lines.extend(Change::Set(tea.clone()).line());
        lines.extend(Change::Remove(pasta.id.clone()).line());
        files.append(&lines).unwrap();
        assert_eq!(load(&dir).unwrap(), table, "snapshot + journal = the table");

        files.compact(&table.saved()).unwrap();
        assert_eq!(std::fs::metadata(dir.join(JOURNAL)).unwrap().len(), 0);
        assert_eq!(load(&dir).unwrap(), table);
        // A crash after the snapshot but before the journal was emptied:
        // the same lines replayed on the new snapshot change nothing.
        std::fs::write(dir.join(JOURNAL), &lines).unwrap();
        assert_eq!(load(&dir).unwrap(), table);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_cut_short_at_the_end_is_dropped_but_damage_inside_is_an_error() {
        let dir = dir("torn");
        let mut table = TimerTable::default();
        Files::create(&dir, &table).unwrap();
        let pasta = start(&mut table, "pasta");
        let mut lines = Change::Set(pasta).line();
        lines.extend_from_slice(br#"{"set":{"id":"t-2","sat"#);
        std::fs::write(dir.join(JOURNAL), &lines).unwrap();
        assert_eq!(load(&dir).unwrap(), table);

        lines.extend_from_slice(b"\n{\"remove\":\"t-1\"}\n");
        std::fs::write(dir.join(JOURNAL), &lines).unwrap();
        let err = load(&dir).unwrap_err().to_string();
        assert!(
            err.contains(JOURNAL) && err.contains("line 2") && err.contains("move it aside"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
