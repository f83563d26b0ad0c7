//! Making the log durable: fdatasync, then the head file (`<log>.head`, which lets the verifier
//! catch records cut off the end), as a job that runs off the hub's loop and without holding the
//! log, so appends never wait for the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{AuditError, FILE_MODE};

/// `<path>.head`: the seq and hash of the last record that
/// [`AuditLog::sync`](super::AuditLog::sync) made durable.
pub fn head_path(path: &Path) -> PathBuf {
    with_suffix(path, ".head")
}

pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: String,
}

/// One sync of the log and its head file, taken from
/// [`AuditLog::prepare_sync`](super::AuditLog::prepare_sync).
#[derive(Debug)]
pub struct SyncJob {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) head: Head,
}

impl SyncJob {
    pub fn run(self) -> Result<(), AuditError> {
        // The log first: a head must never name a record that a power cut can take back.
        self.file
            .sync_data()
            .map_err(AuditError::io(&self.path, "sync"))?;
        let mut text = serde_json::to_vec(&self.head).map_err(AuditError::Encode)?;
        text.push(b'\n');
        let tmp = with_suffix(&self.path, ".head.tmp");
        let write_tmp = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(FILE_MODE)
                .open(&tmp)?;
            f.write_all(&text)?;
            // Otherwise the rename can outlive the data and leave an empty head after a power cut.
            f.sync_data()
        };
        write_tmp().map_err(AuditError::io(&tmp, "write"))?;
        fs::rename(&tmp, head_path(&self.path)).map_err(AuditError::io(&tmp, "rename"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::with_suffix;
    use crate::audit::test_util::{TestDir, request, write_log};
    use crate::audit::{AuditLog, head_path, verify};

    #[test]
    fn the_head_file_may_lag_the_log() {
        let dir = TestDir::new("lag");
        let path = write_log(&dir, 3);
        let mut log = AuditLog::open(&path).unwrap();
        log.sync().unwrap();
        log.append(&request(4)).unwrap();
        log.append(&request(5)).unwrap();
        drop(log);

        let head = fs::read_to_string(head_path(&path)).unwrap();
        assert!(head.starts_with("{\"seq\":3,\"hash\":\""), "{head}");
        assert_eq!(verify(&path).unwrap().last_seq, 5);
    }

    #[test]
    fn sync_without_new_records_leaves_the_head_alone() {
        let dir = TestDir::new("sync-idle");
        let path = write_log(&dir, 2);
        fs::remove_file(head_path(&path)).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        log.sync().unwrap();
        assert!(
            head_path(&path).exists(),
            "the first sync after open repairs the head"
        );
        fs::remove_file(head_path(&path)).unwrap();
        log.sync().unwrap();
        assert!(!head_path(&path).exists());
        assert!(!with_suffix(&path, ".head.tmp").exists());
    }
}
