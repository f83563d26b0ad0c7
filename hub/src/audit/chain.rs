//! The writer: appends records to the chain, and resumes it on open, even after a torn write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ed25519_compact::SecretKey;

use super::checkpoint::{Checkpoint, CheckpointJob, checkpoints_path, last_checkpoint, origin};
use super::line::{encode_line, parse_line, sealed_is_gap};
use super::merkle::{Frontier, Hash, leaf_hash};
use super::segments::{segment_path, segments};
use super::sync::{Head, SyncJob};
use super::tail::{TAIL_CHUNK, read_tail};
use super::{AuditError, FILE_MODE, Kind, Record, format_timestamp};

/// The `prev` of record 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The writer. One per log file: `open` takes an exclusive `flock`, because two writers would
/// interleave two chains.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    last_seq: u64,
    last_hash: String,
    /// Appended since the last sync.
    dirty: bool,
    /// File length as this writer left it, so a failed write can be cut back off.
    len: u64,
    /// The file ends in a fragment that is not a line; the next append starts with '\n' to isolate it.
    pending_newline: bool,
    /// The Merkle tree's right edge over every record in the file.
    tree: Frontier,
    /// The tree size of the last checkpoint made (or of the log as opened).
    checkpointed: u64,
    /// Signs checkpoints; `None` makes none.
    key: Option<SecretKey>,
    /// The seq of the first `gap` record in the log.
    broken_since: Option<u64>,
    /// A gap found and recorded, not yet reported by the hub.
    new_gap: Option<Gap>,
    /// Rotate into a new segment once the live file is this long.
    max_bytes: Option<u64>,
}

/// Records missing from the log, found at open or while running; the `gap` record says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The seq of the `gap` record.
    pub seq: u64,
    pub message: String,
}

/// What one pass over the file found.
struct Scan {
    tree: Frontier,
    /// The root of the first `at` leaves, when the log has that many.
    root_at: Option<Hash>,
    first_gap: Option<u64>,
}

/// Reads every complete line of the closed segments, then of the live file, from the start:
/// each record is a leaf. Lines that are not records (a fragment isolated after a torn write)
/// are not leaves, here as in the verifier.
fn scan(file: &mut File, path: &Path, at: Option<u64>) -> Result<Scan, AuditError> {
    let mut scan = Scan {
        tree: Frontier::default(),
        root_at: None,
        first_gap: None,
    };
    if at == Some(0) {
        scan.root_at = Some(scan.tree.root());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for (_, segment) in segments(path).map_err(AuditError::io(dir, "list the segments in"))? {
        let mut f = File::open(&segment).map_err(AuditError::io(&segment, "read"))?;
        scan_one(&mut f, &segment, at, &mut scan)?;
    }
    file.seek(SeekFrom::Start(0))
        .map_err(AuditError::io(path, "read"))?;
    scan_one(file, path, at, &mut scan)?;
    Ok(scan)
}

fn scan_one(
    file: &mut File,
    path: &Path,
    at: Option<u64>,
    scan: &mut Scan,
) -> Result<(), AuditError> {
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .map_err(AuditError::io(path, "read"))?
            == 0
        {
            break;
        }
        if buf.pop() != Some(b'\n') {
            break;
        }
        let Some(is_gap) = sealed_is_gap(&buf) else {
            continue;
        };
        if is_gap && scan.first_gap.is_none() {
            scan.first_gap = parse_line(&buf).ok().map(|rec| rec.seq);
        }
        scan.tree.push(leaf_hash(&buf));
        if Some(scan.tree.size()) == at {
            scan.root_at = Some(scan.tree.root());
        }
    }
    Ok(())
}

impl AuditLog {
    /// Opens (creating parent dirs and the file, mode 0640) and resumes the chain from the last
    /// complete record.
    ///
    /// If the file ends in a partial line (a write torn by a crash), it is kept for the verifier
    /// to report, and an `error` record with code `torn_write` is appended in the same write as the
    /// newline that isolates it. Writing both at once means a second crash right after this one
    /// cannot leave the fragment as the last complete line, which would stop the next open.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_signed(path, None)
    }

    /// Like [`AuditLog::open`], and signs checkpoints with `key`. Reads the whole log once to
    /// rebuild the Merkle tree, and holds it against the last checkpoint in
    /// `<path>.checkpoints`: a log shorter than it, or whose first records do not give its
    /// root, is not continued silently. A `gap` record is appended naming what is missing, and
    /// [`AuditLog::take_gap`] hands it to the hub to raise the alarm.
    pub fn open_signed(path: &Path, key: Option<SecretKey>) -> Result<AuditLog, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(AuditError::io(dir, "create its directory"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)
            .map_err(AuditError::io(path, "open"))?;
        lock_exclusive(&file, path)?;
        let len = file
            .metadata()
            .map_err(AuditError::io(path, "read metadata"))?
            .len();
        let tail = match read_tail(&mut file, len, TAIL_CHUNK) {
            Ok(tail) => tail,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(AuditError::CorruptTail {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(AuditError::io(path, "read")(e)),
        };
        // A live file just rotated holds no record yet: the chain goes on from the last segment.
        let (last_line, tail_path) = match tail.last_line {
            Some(line) => (Some(line), path.to_owned()),
            None => last_segment_line(path)?,
        };
        let (last_seq, last_hash) = match &last_line {
            None => (0, GENESIS.to_owned()),
            Some(line) => match parse_line(line) {
                Ok(rec) => (rec.seq, rec.hash),
                Err((_, reason)) => {
                    return Err(AuditError::CorruptTail {
                        path: tail_path,
                        reason,
                    });
                }
            },
        };
        let last_checkpoint = match &key {
            Some(key) => last_checkpoint(path, &key.public_key()),
            None => Ok(None),
        };
        let at = last_checkpoint
            .as_ref()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.size));
        let scan = scan(&mut file, path, at)?;
        let mut log = AuditLog {
            file,
            path: path.to_owned(),
            last_seq,
            last_hash,
            // A first sync after open also repairs a missing or stale head file.
            dirty: last_seq > 0,
            len,
            pending_newline: false,
            checkpointed: scan.tree.size(),
            tree: scan.tree,
            key,
            broken_since: scan.first_gap,
            new_gap: None,
            max_bytes: None,
        };
        if tail.partial_len > 0 {
            tracing::warn!(
                path = %path.display(),
                bytes = tail.partial_len,
                resumes_after_seq = last_seq,
                "audit log ends in a partial line (a write torn by a crash); isolating it and continuing the chain"
            );
            log.pending_newline = true;
            let note = Record {
                code: Some("torn_write".to_owned()),
                message: Some(format!(
                    "the log ended in a partial line of {} bytes (a write torn by a crash); it was \
                     isolated on its own line and the chain continues from seq {last_seq}",
                    tail.partial_len
                )),
                ..Record::new(Kind::Error)
            };
            log.append(&note)?;
            log.sync()?;
        }
        let scanned = log.checkpointed;
        // Records written after the last checkpoint (the hub stopped before the next one) are
        // due for one; a log that is not what its checkpoint says is handled below.
        if let Ok(Some(cp)) = &last_checkpoint
            && cp.size <= log.checkpointed
        {
            log.checkpointed = cp.size;
        }
        let missing = match last_checkpoint {
            Err(reason) => Some(format!(
                "its last checkpoint cannot be trusted, so what the log held before is unknown: \
                 {reason}"
            )),
            Ok(None) => None,
            Ok(Some(cp)) if scan.root_at.is_none() => Some(format!(
                "the log holds {} records but its last checkpoint covers {}: records {} to {} \
                 are missing (cut off the end, or the file was truncated or replaced)",
                scanned,
                cp.size,
                scanned + 1,
                cp.size
            )),
            Ok(Some(cp)) if scan.root_at != Some(cp.root) => Some(format!(
                "its first {} records do not match its last checkpoint: the log was rewritten or \
                 replaced",
                cp.size
            )),
            Ok(Some(_)) => None,
        };
        if let Some(message) = missing {
            log.record_gap(message)?;
            log.sync()?;
            // The log as it is now, gap record included, is what the next start holds it to:
            // the gap is recorded once, not at every start.
            if let Some(job) = log.prepare_checkpoint() {
                job.run()?;
            }
        }
        Ok(log)
    }

    /// Appends a `gap` record and keeps it for [`AuditLog::take_gap`].
    fn record_gap(&mut self, message: String) -> Result<(), AuditError> {
        tracing::error!(path = %self.path.display(), "audit log: {message}");
        let seq = self.write(&Record {
            code: Some("gap".to_owned()),
            message: Some(message.clone()),
            ..Record::new(Kind::Gap)
        })?;
        self.broken_since.get_or_insert(seq);
        self.new_gap = Some(Gap { seq, message });
        Ok(())
    }

    /// Appends one record; returns its seq. The line reaches the kernel (one write(2) of the
    /// whole line) before this returns, so a crash of the process after it loses nothing.
    ///
    /// A file shorter than this writer left it was truncated under it (logrotate's
    /// `copytruncate` does that): a `gap` record goes first.
    pub fn append(&mut self, record: &Record) -> Result<u64, AuditError> {
        let now = self
            .file
            .metadata()
            .map_err(AuditError::io(&self.path, "read metadata"))?
            .len();
        if now < self.len {
            self.len = now;
            self.pending_newline = false;
            self.record_gap(format!(
                "the log file was truncated to {now} bytes while the hub was writing it \
                 (logrotate's copytruncate?): the records up to seq {} are no longer in it",
                self.last_seq
            ))?;
        }
        self.write(record)
    }

    fn write(&mut self, record: &Record) -> Result<u64, AuditError> {
        let seq = self.last_seq + 1;
        let ts = format_timestamp(SystemTime::now());
        let (mut line, hash) =
            encode_line(seq, &ts, record, &self.last_hash).map_err(AuditError::Encode)?;
        let leaf = leaf_hash(&line[..line.len() - 1]);
        if self.pending_newline {
            line.insert(0, b'\n');
        }
        if let Err(error) = self.file.write_all(&line) {
            // A short write (disk full) leaves a fragment that the next line would fuse with.
            let now = self.file.metadata().map(|m| m.len()).ok();
            if now != Some(self.len) && self.file.set_len(self.len).is_err() {
                self.pending_newline = true;
            }
            return Err(AuditError::Io {
                path: self.path.clone(),
                action: "append",
                error,
            });
        }
        self.len += line.len() as u64;
        self.last_seq = seq;
        self.last_hash = hash;
        self.dirty = true;
        self.pending_newline = false;
        self.tree.push(leaf);
        Ok(seq)
    }

    /// fdatasyncs the log, then writes the head file (`<path>.head`, via `<path>.head.tmp` and a
    /// rename). Cheap when nothing changed since the last sync.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        match self.prepare_sync()? {
            Some(job) => job.run(),
            None => Ok(()),
        }
    }

    /// The slow part of [`AuditLog::sync`] (two fsyncs and a rename) as a job
    /// that runs without holding the log, so appends never wait for the
    /// disk; `None` when nothing changed since the last sync.
    pub fn prepare_sync(&mut self) -> Result<Option<SyncJob>, AuditError> {
        if !self.dirty {
            return Ok(None);
        }
        let file = self
            .file
            .try_clone()
            .map_err(AuditError::io(&self.path, "sync"))?;
        self.dirty = false;
        Ok(Some(SyncJob {
            file,
            path: self.path.clone(),
            head: Head {
                seq: self.last_seq,
                hash: self.last_hash.clone(),
            },
        }))
    }

    /// A checkpoint of the tree as it is now, to sign and append off the hub's loop after the
    /// sync of the same records; `None` without a key or when nothing was written since the last.
    pub fn prepare_checkpoint(&mut self) -> Option<CheckpointJob> {
        let key = self.key.as_ref()?;
        if self.tree.size() == self.checkpointed {
            return None;
        }
        self.checkpointed = self.tree.size();
        Some(CheckpointJob {
            checkpoint: Checkpoint {
                origin: origin(&key.public_key()),
                size: self.tree.size(),
                root: self.tree.root(),
            },
            key: key.clone(),
            path: checkpoints_path(&self.path),
        })
    }

    /// Closes the live file as the next segment once it is `max_bytes` long (see
    /// [`AuditLog::rotate_if_full`]).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> AuditLog {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// When the live file has reached `max_bytes`: renames it to the next segment `<log>.<n>` and
    /// carries on in a new, empty `<log>`. The chain and the tree run on. Take a sync job
    /// first: it holds the closed segment's descriptor and makes it durable.
    pub fn rotate_if_full(&mut self) -> Result<bool, AuditError> {
        if self.max_bytes.is_none_or(|max| self.len < max) {
            return Ok(false);
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let next = segments(&self.path)
            .map_err(AuditError::io(dir, "list the segments in"))?
            .last()
            .map_or(1, |(n, _)| n + 1);
        let closed = segment_path(&self.path, next);
        if closed.exists() {
            return Err(AuditError::io(&closed, "rotate into")(io::Error::from(
                io::ErrorKind::AlreadyExists,
            )));
        }
        fs::rename(&self.path, &closed).map_err(AuditError::io(&self.path, "rotate"))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(AuditError::io(&self.path, "open"))?;
        lock_exclusive(&file, &self.path)?;
        self.file = file;
        self.len = 0;
        self.pending_newline = false;
        tracing::info!(segment = %closed.display(), "audit log rotated");
        Ok(true)
    }

    /// Records appended since the last sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records written since the last checkpoint.
    pub fn since_checkpoint(&self) -> u64 {
        self.tree.size() - self.checkpointed
    }

    /// The seq of the first `gap` record, if the log has one.
    pub fn broken_since(&self) -> Option<u64> {
        self.broken_since
    }

    /// A gap recorded since the last call.
    pub fn take_gap(&mut self) -> Option<Gap> {
        self.new_gap.take()
    }

    /// 0 when empty.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The hash of the last record, [`GENESIS`] when empty.
    #[cfg(test)]
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }
}

/// The last complete line of the newest closed segment, if there is one.
fn last_segment_line(path: &Path) -> Result<(Option<Vec<u8>>, PathBuf), AuditError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some((_, segment)) = segments(path)
        .map_err(AuditError::io(dir, "list the segments in"))?
        .pop()
    else {
        return Ok((None, path.to_owned()));
    };
    let mut file = File::open(&segment).map_err(AuditError::io(&segment, "read"))?;
    let len = file
        .metadata()
        .map_err(AuditError::io(&segment, "read metadata"))?
        .len();
    let tail = read_tail(&mut file, len, TAIL_CHUNK).map_err(AuditError::io(&segment, "read"))?;
    Ok((tail.last_line, segment))
}

fn lock_exclusive(file: &File, path: &Path) -> Result<(), AuditError> {
    // SAFETY: flock takes a plain descriptor number; `file` keeps it open for the whole call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::WouldBlock {
        Err(AuditError::Locked {
            path: path.to_owned(),
        })
    } else {
        Err(AuditError::io(path, "lock")(error))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};

    use crate::audit::test_util::{
        TestDir, read_lines, request, verify_err, write_lines, write_log,
    };
    use crate::audit::{AuditError, AuditLog, GENESIS, Kind, Record, head_path, verify};

    #[test]
    fn the_chain_continues_across_reopening_and_verifies() {
        let dir = TestDir::new("reopen");
        let path = dir.log();
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.last_seq(), 0);
        assert_eq!(log.last_hash(), GENESIS);
        for i in 1..=3 {
            assert_eq!(log.append(&request(i)).unwrap(), u64::from(i));
        }
        let hash3 = log.last_hash().to_owned();
        drop(log);

        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.last_seq(), 3);
        assert_eq!(log.last_hash(), hash3);
        assert_eq!(log.append(&Record::new(Kind::Stop)).unwrap(), 4);
        assert_eq!(log.append(&Record::new(Kind::Start)).unwrap(), 5);
        log.sync().unwrap();

        let report = verify(&path).unwrap();
        assert_eq!(report.records, 5);
        assert_eq!(report.last_seq, 5);
        assert_eq!(report.last_hash, log.last_hash());
    }

    #[test]
    fn a_torn_last_line_is_isolated_on_open_and_reported_by_verify() {
        let dir = TestDir::new("torn");
        let path = write_log(&dir, 5);
        let lines = read_lines(&path);
        let full = fs::metadata(&path).unwrap().len();
        let cut = full - lines[4].len() as u64 / 2;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(
            log.last_seq(),
            5,
            "the chain resumes after seq 4 with a torn_write note"
        );
        assert_eq!(log.append(&request(6)).unwrap(), 6);
        log.sync().unwrap();
        drop(log);

        let lines = read_lines(&path);
        assert_eq!(lines.len(), 7);
        assert!(lines[5].contains("\"kind\":\"error\""), "{}", lines[5]);
        assert!(lines[5].contains("\"code\":\"torn_write\""), "{}", lines[5]);
        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (5, Some(5)));
        assert!(e.reason.contains("torn"), "{e}");

        // Everything but the fragment is one intact chain.
        let mut without = lines.clone();
        without.remove(4);
        write_lines(&path, &without);
        assert_eq!(verify(&path).unwrap().last_seq, 6);
    }

    #[test]
    fn a_damaged_last_record_stops_open_with_advice() {
        let dir = TestDir::new("bad-tail");
        let path = write_log(&dir, 3);
        let mut lines = read_lines(&path);
        lines[2] = lines[2].replace("kitchen", "cellar!");
        write_lines(&path, &lines);

        let e = AuditLog::open(&path).unwrap_err();
        assert!(matches!(e, AuditError::CorruptTail { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("hark audit verify {}", path.display())),
            "{msg}"
        );
        assert!(msg.contains("move the file aside"), "{msg}");
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = TestDir::new("lock");
        let path = dir.log();
        let _first = AuditLog::open(&path).unwrap();
        let e = AuditLog::open(&path).unwrap_err();
        assert!(matches!(e, AuditError::Locked { .. }), "{e:?}");
    }

    #[test]
    fn open_creates_parent_directories_and_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TestDir::new("create");
        let path = dir.0.join("state/hark/audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        log.append(&Record::new(Kind::Start)).unwrap();
        log.sync().unwrap();
        for p in [path.clone(), head_path(&path)] {
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o137, 0, "{} has mode {mode:o}", p.display());
        }
    }

    #[test]
    fn a_big_log_reopens_and_continues() {
        let dir = TestDir::new("big");
        let path = write_log(&dir, 10_000);
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.last_seq(), 10_000);
        assert_eq!(log.append(&request(10_001)).unwrap(), 10_001);
        log.sync().unwrap();
        assert_eq!(verify(&path).unwrap().records, 10_001);
    }

    mod gaps {
        use std::fs;

        use crate::audit::test_util::{
            TestDir, key, read_lines, request, write_lines, write_signed_log,
        };
        use crate::audit::{AuditLog, head_path, verify};

        #[test]
        fn a_log_cut_below_its_last_checkpoint_gets_a_gap_record_at_start() {
            let dir = TestDir::new("gap-cut");
            let path = write_signed_log(&dir, 8, &[7]);
            let mut lines = read_lines(&path);
            lines.truncate(5);
            write_lines(&path, &lines);
            fs::remove_file(head_path(&path)).unwrap();

            let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
            let gap = log.take_gap().expect("a gap");
            assert_eq!(gap.seq, 6);
            assert!(
                gap.message
                    .contains("holds 5 records but its last checkpoint covers 7"),
                "{}",
                gap.message
            );
            assert!(
                gap.message.contains("records 6 to 7 are missing"),
                "{}",
                gap.message
            );
            assert_eq!(log.broken_since(), Some(6));
            assert_eq!(log.append(&request(9)).unwrap(), 7);
            drop(log);
            let lines = read_lines(&path);
            assert!(lines[5].contains("\"kind\":\"gap\""), "{}", lines[5]);
            let e = verify(&path).unwrap_err();
            assert_eq!((e.line, e.seq), (6, Some(6)));
            assert!(e.reason.contains("recorded the gap here"), "{e}");

            // The gap is remembered at every later start, and not recorded twice.
            let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
            assert_eq!(log.broken_since(), Some(6));
            assert_eq!(log.take_gap(), None);
            assert_eq!(log.last_seq(), 7);
        }

        #[test]
        fn an_intact_log_opens_without_a_gap() {
            let dir = TestDir::new("gap-none");
            let path = write_signed_log(&dir, 8, &[4, 8]);
            let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
            assert_eq!((log.take_gap(), log.broken_since()), (None, None));
            assert_eq!(log.since_checkpoint(), 0);
            assert!(log.prepare_checkpoint().is_none());
            log.append(&request(9)).unwrap();
            assert_eq!(log.since_checkpoint(), 1);
        }

        #[test]
        fn records_after_the_last_checkpoint_are_due_for_one_after_a_restart() {
            let dir = TestDir::new("gap-due");
            let path = write_signed_log(&dir, 8, &[5]);
            let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
            assert_eq!(log.take_gap(), None);
            assert_eq!(log.since_checkpoint(), 3);
            let job = log.prepare_checkpoint().expect("a checkpoint is due");
            assert_eq!(job.checkpoint.size, 8);
        }

        #[test]
        fn a_log_replaced_under_its_checkpoint_gets_a_gap_record() {
            let dir = TestDir::new("gap-replaced");
            let path = write_signed_log(&dir, 4, &[4]);
            let mut lines = read_lines(&path);
            lines[3] = lines[3].replace("kitchen", "cellar!");
            write_lines(&path, &lines);
            // The last line is damaged: open refuses, as before.
            assert!(AuditLog::open_signed(&path, Some(key())).is_err());
            let mut lines = read_lines(&path);
            lines[1] = lines[1].replace("kitchen", "cellar!");
            lines[3] = read_lines(&path)[3].replace("cellar!", "kitchen");
            write_lines(&path, &lines);
            let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
            let gap = log.take_gap().expect("a gap");
            assert!(
                gap.message.contains("records 4 to 4 are missing")
                    || gap.message.contains("do not match its last checkpoint"),
                "{}",
                gap.message
            );
        }

        #[test]
        fn a_file_truncated_under_the_writer_gets_a_gap_record_first() {
            let dir = TestDir::new("gap-copytruncate");
            let path = write_signed_log(&dir, 3, &[3]);
            let mut log = AuditLog::open_signed(&path, Some(key())).unwrap();
            log.append(&request(4)).unwrap();
            fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            assert_eq!(log.append(&request(5)).unwrap(), 6);
            let gap = log.take_gap().expect("a gap");
            assert_eq!(gap.seq, 5);
            assert!(
                gap.message.contains("truncated to 0 bytes"),
                "{}",
                gap.message
            );
            drop(log);
            let lines = read_lines(&path);
            assert_eq!(lines.len(), 2);
            assert!(lines[0].contains("\"kind\":\"gap\""), "{}", lines[0]);
        }
    }
}
