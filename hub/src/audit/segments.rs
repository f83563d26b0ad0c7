//! Rotation: when the log passes `audit.max_bytes`, the hub renames it to the next closed
//! segment, `<log>.1`, `<log>.2`, …, and carries on in a fresh `<log>`. The chain and the Merkle
//! tree run on across segments (the first record of a segment has the previous segment's last
//! hash as its `prev`), so the segments in order, then the live file, are one log: a segment
//! deleted, cut or truncated breaks it like any other damage.

use std::io;
use std::path::{Path, PathBuf};

/// `<log>.<n>`.
pub fn segment_path(log: &Path, n: u64) -> PathBuf {
    super::sync::with_suffix(log, &format!(".{n}"))
}

/// The closed segments of `log`, by number, lowest first.
pub fn segments(log: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match log.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = log.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|rest| rest.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((n, segment_path(log, n)));
    }
    found.sort();
    Ok(found)
}

/// Every file of the log in order: its closed segments, then the live file.
pub fn log_files(log: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = segments(log)?.into_iter().map(|(_, p)| p).collect();
    files.push(log.to_path_buf());
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::audit::checkpoint::checkpoints_path;
    use crate::audit::test_util::{TestDir, key, request};
    use crate::audit::{AuditLog, Checks, verify, verify_with};

    /// A log of `n` requests rotated at `max` bytes, synced and checkpointed after each record.
    fn rotated_log(dir: &TestDir, n: u32, max: u64) -> PathBuf {
        let path = dir.log();
        let mut log = AuditLog::open_signed(&path, Some(key()))
            .unwrap()
            .with_max_bytes(max);
        for i in 1..=n {
            log.append(&request(i)).unwrap();
            log.sync().unwrap();
            log.rotate_if_full().unwrap();
            if i % 4 == 0 {
                log.prepare_checkpoint().unwrap().run().unwrap();
            }
        }
        path
    }

    fn checks(path: &Path) -> Checks {
        Checks {
            key: Some(key().public_key()),
            checkpoints: vec![checkpoints_path(path)],
        }
    }

    #[test]
    fn three_segments_verify_end_to_end_and_reopen_without_a_gap() {
        let dir = TestDir::new("rotate");
        let path = rotated_log(&dir, 12, 1200);
        let found = segments(&path).unwrap();
        assert!(found.len() >= 3, "{found:?}");
        assert_eq!(found[0].0, 1);
        let report = verify_with(&path, &checks(&path)).unwrap();
        assert_eq!((report.last_seq, report.segments), (12, found.len()));
        assert_eq!(report.checkpoints, 3);

        let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
        assert_eq!(log.take_gap(), None);
        assert_eq!(log.last_seq(), 12);
        assert_eq!(
            crate::audit::proof::prove(&path, 2, &key().public_key())
                .unwrap()
                .seq,
            2
        );
    }

    #[test]
    fn deleting_the_middle_segment_is_detected() {
        let dir = TestDir::new("rotate-middle");
        let path = rotated_log(&dir, 12, 1200);
        fs::remove_file(segment_path(&path, 2)).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(!e.unreadable);
        assert!(e.reason.contains(".2 is missing"), "{e}");
        // Renumbering the rest to hide it breaks the chain instead.
        let last = segments(&path).unwrap().last().unwrap().0;
        for n in 3..=last {
            fs::rename(segment_path(&path, n), segment_path(&path, n - 1)).unwrap();
        }
        let e = verify(&path).unwrap_err();
        assert!(e.to_string().contains("deleted"), "{e}");
        assert!(e.segment.is_some(), "{e}");
    }

    #[test]
    fn a_cut_segment_is_named_with_its_own_line() {
        let dir = TestDir::new("rotate-cut");
        let path = rotated_log(&dir, 12, 1200);
        let second = segment_path(&path, 2);
        let text = fs::read_to_string(&second).unwrap();
        let first_line = text.lines().next().unwrap();
        fs::write(&second, format!("{first_line}\n")).unwrap();
        let e = verify_with(&path, &checks(&path)).unwrap_err();
        assert_eq!(
            e.segment.as_deref(),
            Some(segment_path(&path, 3).as_path()),
            "{e}"
        );
        assert_eq!(e.line, 1, "{e}");
        assert!(e.to_string().contains("deleted"), "{e}");
    }
}
