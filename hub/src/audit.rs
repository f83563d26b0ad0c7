//! The audit log: an append-only, hash-chained JSON Lines file with one record per request,
//! refusal, skill load, timer and error, and the verifier behind `hark audit verify`. Each line
//! is `{"seq":N,"ts":"…Z",<the record's fields>,"prev":"<hex>","hash":"<hex>"}`, where `hash` is
//! the SHA-256 of the line's own bytes up to `,"hash":` (closed with `}`) and `prev` repeats the
//! previous line's `hash`, so an edited, deleted or reordered line breaks the chain; the
//! `<log>.head` file written by [`AuditLog::sync`] catches lines cut off the end.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of record 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the verifier cuts a line into its hashed body and its hash. A `"` inside a JSON string is
/// always escaped, so this text can only occur as the real key.
const HASH_KEY: &[u8] = b",\"hash\":\"";
/// open() reads the file backwards in chunks of this size to find the last record.
const TAIL_CHUNK: usize = 64 * 1024;
/// open() refuses to look further back than this for the last line.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Requests can carry what people said at home: no world access.
const FILE_MODE: u32 = 0o640;

/// The facts of one event; the log adds `seq`, `ts`, `prev` and `hash`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub satellite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The policy rule that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Reply status: `ok`, `invalid`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Error message or note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The caller decides what to redact; the log writes what it gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
}

impl Record {
    pub fn new(kind: Kind) -> Record {
        Record {
            kind,
            ..Record::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Request,
    Load,
    Refusal,
    Start,
    Stop,
    Timer,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

// The io error goes into the message rather than `source()` so that a plain `%err` in a log line
// says everything, and `{:#}` does not say it twice.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: cannot {action}: {error}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    #[error(
        "audit log {} is already open in another process (is another hark hub running?)",
        .path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "audit log {0}: its last record is damaged ({reason}); run `hark audit verify {0}` to see \
         what happened, then move the file aside so that a new log can start",
        .path.display()
    )]
    CorruptTail { path: PathBuf, reason: String },
    #[error("cannot encode an audit record: {0}")]
    Encode(serde_json::Error),
}

impl AuditError {
    fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> AuditError + 'a {
        move |error| AuditError::Io {
            path: path.to_owned(),
            action,
            error,
        }
    }
}

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
        let (last_seq, last_hash) = match &tail.last_line {
            None => (0, GENESIS.to_owned()),
            Some(line) => match parse_line(line) {
                Ok(rec) => (rec.seq, rec.hash),
                Err((_, reason)) => {
                    return Err(AuditError::CorruptTail {
                        path: path.to_owned(),
                        reason,
                    });
                }
            },
        };
        let mut log = AuditLog {
            file,
            path: path.to_owned(),
            last_seq,
            last_hash,
            // A first sync after open also repairs a missing or stale head file.
            dirty: last_seq > 0,
            len,
            pending_newline: false,
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
        Ok(log)
    }

    /// Appends one record; returns its seq. The line reaches the kernel (one write(2) of the
    /// whole line) before this returns, so a crash of the process after it loses nothing.
    pub fn append(&mut self, record: &Record) -> Result<u64, AuditError> {
        let seq = self.last_seq + 1;
        let ts = format_timestamp(SystemTime::now());
        let (mut line, hash) =
            encode_line(seq, &ts, record, &self.last_hash).map_err(AuditError::Encode)?;
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 0 when empty.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The hash of the last record, [`GENESIS`] when empty.
    pub fn last_hash(&self) -> &str {
        &self.last_hash
    }
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

/// `<path>.head`: the seq and hash of the last record that [`AuditLog::sync`] made durable.
pub fn head_path(path: &Path) -> PathBuf {
    with_suffix(path, ".head")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: &'a str,
    #[serde(flatten)]
    record: &'a Record,
    prev: &'a str,
}

/// One complete line, '\n' included, and its hash.
fn encode_line(
    seq: u64,
    ts: &str,
    record: &Record,
    prev: &str,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let mut line = serde_json::to_vec(&Body {
        seq,
        ts,
        record,
        prev,
    })?;
    let hash = hex(&Sha256::digest(&line));
    debug_assert_eq!(line.last(), Some(&b'}'));
    line.pop();
    line.extend_from_slice(HASH_KEY);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    Ok((line, hash))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn is_hash(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

enum Seal<'a> {
    Missing,
    Mismatch,
    Valid(&'a str),
}

/// Checks the hash against the bytes as written: cut at the last `,"hash":"`, never re-serialize,
/// because a JSON round trip may not give back the same bytes.
fn check_seal(line: &[u8]) -> Seal<'_> {
    let Some(cut) = line.windows(HASH_KEY.len()).rposition(|w| w == HASH_KEY) else {
        return Seal::Missing;
    };
    let tail = &line[cut + HASH_KEY.len()..];
    let Some(stated) = tail.strip_suffix(b"\"}").filter(|h| is_hash(h)) else {
        return Seal::Missing;
    };
    let mut body = Sha256::new();
    body.update(&line[..cut]);
    body.update(b"}");
    if hex(&body.finalize()).as_bytes() == stated {
        // is_hash made sure it is ASCII.
        Seal::Valid(std::str::from_utf8(stated).unwrap_or_default())
    } else {
        Seal::Mismatch
    }
}

#[derive(Debug)]
struct Parsed {
    seq: u64,
    prev: String,
    hash: String,
}

/// Parses and checks one line (without its '\n'); on failure, the seq if one can be read, and why.
fn parse_line(line: &[u8]) -> Result<Parsed, (Option<u64>, String)> {
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) if e.classify() == serde_json::error::Category::Eof => {
            return Err((
                sniff_seq(line),
                "record is cut off: a write torn by a crash (or the line was edited)".to_owned(),
            ));
        }
        Err(_) => {
            return Err((
                sniff_seq(line),
                "record was edited: the line is not valid JSON".to_owned(),
            ));
        }
    };
    let Some(obj) = value.as_object() else {
        return Err((
            None,
            "record was edited: the line is not a JSON object".to_owned(),
        ));
    };
    let seq = obj.get("seq").and_then(serde_json::Value::as_u64);
    let hash = match check_seal(line) {
        Seal::Valid(h) => h.to_owned(),
        Seal::Missing => return Err((seq, "record was edited: it has no valid hash".to_owned())),
        Seal::Mismatch => {
            return Err((
                seq,
                "record was edited: hash does not match its contents".to_owned(),
            ));
        }
    };
    let Some(seq) = seq else {
        return Err((None, "record has no valid seq".to_owned()));
    };
    let Some(prev) = obj
        .get("prev")
        .and_then(serde_json::Value::as_str)
        .filter(|p| is_hash(p.as_bytes()))
    else {
        return Err((Some(seq), "record has no valid prev".to_owned()));
    };
    Ok(Parsed {
        seq,
        prev: prev.to_owned(),
        hash,
    })
}

/// The seq of a line that may not be valid JSON: every line starts with `{"seq":N,`.
fn sniff_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// What open() needs from the end of the file.
#[derive(Debug, PartialEq, Eq)]
struct Tail {
    /// The last line that ends in '\n', without it.
    last_line: Option<Vec<u8>>,
    /// Bytes after the last '\n': a torn write when not 0.
    partial_len: u64,
}

/// Finds the last complete line by reading backwards from `len`, so opening a big log costs
/// about one chunk. Each further read doubles, keeping a huge line linear to read.
fn read_tail<R: Read + Seek>(r: &mut R, len: u64, chunk: usize) -> io::Result<Tail> {
    // `buf` holds the bytes [pos, len).
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = len;
    let mut want = chunk.max(1) as u64;
    loop {
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            let start = buf[..end].iter().rposition(|&b| b == b'\n');
            if start.is_some() || pos == 0 {
                let from = start.map_or(0, |s| s + 1);
                return Ok(Tail {
                    last_line: Some(buf[from..end].to_vec()),
                    partial_len: len - (pos + end as u64 + 1),
                });
            }
        } else if pos == 0 {
            return Ok(Tail {
                last_line: None,
                partial_len: len,
            });
        }
        if buf.len() > MAX_LINE {
            // Past any real record: rather than read gigabytes of damage into memory, give up.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no complete record in the last {} bytes", buf.len()),
            ));
        }
        let n = want.min(pos);
        pos -= n;
        let mut more = vec![0; usize::try_from(n).map_err(io::Error::other)?];
        r.seek(SeekFrom::Start(pos))?;
        r.read_exact(&mut more)?;
        more.extend_from_slice(&buf);
        buf = more;
        want = want.saturating_mul(2);
    }
}

/// The verified log: how many records, and where the chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// 0 when empty.
    pub last_seq: u64,
    /// [`GENESIS`] when empty.
    pub last_hash: String,
}

/// The first broken record. `line` is 1-based; 0 means the problem is not in a line (the file
/// cannot be read, or its head file is invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub line: u64,
    pub seq: Option<u64>,
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.seq) {
            (0, _) => f.write_str(&self.reason),
            (line, Some(seq)) => write!(f, "line {line} (seq {seq}): {}", self.reason),
            (line, None) => write!(f, "line {line}: {}", self.reason),
        }
    }
}

impl std::error::Error for VerifyError {}

impl VerifyError {
    fn file(reason: String) -> VerifyError {
        VerifyError {
            line: 0,
            seq: None,
            reason,
        }
    }
}

/// One sync of the log and its head file, taken from [`AuditLog::prepare_sync`].
#[derive(Debug)]
pub struct SyncJob {
    file: File,
    path: PathBuf,
    head: Head,
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

/// Checks the whole chain and the head file; names the first broken record.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    let cannot_read =
        |e: io::Error| VerifyError::file(format!("cannot read {}: {e}", path.display()));
    let head = read_head(&head_path(path))?;
    let mut reader = BufReader::new(File::open(path).map_err(cannot_read)?);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut last: Option<(u64, String)> = None;
    // Where the record the head file names was found, and its hash.
    let mut at_head: Option<(u64, String)> = None;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(cannot_read)? == 0 {
            break;
        }
        line_no += 1;
        if buf.pop() != Some(b'\n') {
            return Err(VerifyError {
                line: line_no,
                seq: sniff_seq(&buf),
                reason: "the last line is incomplete: a write torn by a crash (or the log is \
                         being written right now)"
                    .to_owned(),
            });
        }
        let rec = parse_line(&buf).map_err(|(seq, reason)| VerifyError {
            line: line_no,
            seq,
            reason,
        })?;
        let broken = |reason: String| VerifyError {
            line: line_no,
            seq: Some(rec.seq),
            reason,
        };
        match &last {
            None if rec.seq != 1 => {
                return Err(broken(format!(
                    "records at the start were deleted: the first record has seq {}, not 1",
                    rec.seq
                )));
            }
            None if rec.prev != GENESIS => {
                return Err(broken(
                    "records at the start were deleted: the first record's prev is not the \
                     genesis hash"
                        .to_owned(),
                ));
            }
            None => {}
            Some((prev_seq, prev_hash)) => {
                let expected = prev_seq + 1;
                if rec.seq > expected {
                    return Err(broken(explain_gap(
                        &mut reader,
                        line_no,
                        *prev_seq,
                        rec.seq,
                    )));
                }
                if rec.seq < expected {
                    return Err(broken(format!(
                        "records were reordered: seq goes back from {prev_seq} to {}",
                        rec.seq
                    )));
                }
                if rec.prev != *prev_hash {
                    return Err(broken(format!(
                        "chain broken: a record before it was deleted or changed (its prev is not \
                         the hash of seq {prev_seq})"
                    )));
                }
            }
        }
        if head.as_ref().is_some_and(|h| h.seq == rec.seq) {
            at_head = Some((line_no, rec.hash.clone()));
        }
        last = Some((rec.seq, rec.hash));
    }
    let (last_seq, last_hash) = last.unwrap_or((0, GENESIS.to_owned()));
    if let Some(head) = head {
        if last_seq < head.seq {
            return Err(VerifyError {
                line: line_no + 1,
                seq: Some(last_seq + 1),
                reason: format!(
                    "log ends at seq {last_seq} but its head file says {}: the last records were \
                     deleted",
                    head.seq
                ),
            });
        }
        if let Some((line, hash)) = at_head {
            if hash != head.hash {
                return Err(VerifyError {
                    line,
                    seq: Some(head.seq),
                    reason: format!(
                        "record does not match its head file, which says its hash is {}: the log \
                         was rewritten from here or earlier",
                        head.hash
                    ),
                });
            }
        }
    }
    Ok(VerifyReport {
        records: line_no,
        last_seq,
        last_hash,
    })
}

/// A seq jump is a deletion, unless a missing seq turns up later: then the records were moved.
fn explain_gap<R: BufRead>(rest: &mut R, line_no: u64, prev_seq: u64, seq: u64) -> String {
    let missing = prev_seq + 1..seq;
    let mut later = line_no;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match rest.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => later += 1,
        }
        if let Some(found) = sniff_seq(&buf).filter(|s| missing.contains(s)) {
            return format!(
                "records were reordered: seq {seq} comes before seq {found} (line {later})"
            );
        }
    }
    if missing.end - missing.start == 1 {
        format!(
            "a record was deleted before it: seq jumps from {prev_seq} to {seq}, seq {} is missing",
            missing.start
        )
    } else {
        format!(
            "records were deleted before it: seq jumps from {prev_seq} to {seq}, seq {} to {} are \
             missing",
            missing.start,
            seq - 1
        )
    }
}

fn read_head(path: &Path) -> Result<Option<Head>, VerifyError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(VerifyError::file(format!(
                "cannot read head file {}: {e}",
                path.display()
            )));
        }
    };
    match serde_json::from_slice::<Head>(&text) {
        Ok(head) if is_hash(head.hash.as_bytes()) => Ok(Some(head)),
        _ => Err(VerifyError::file(format!(
            "head file {} is damaged: it should hold {{\"seq\":N,\"hash\":\"<64 hex digits>\"}}",
            path.display()
        ))),
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T09:07:33.123Z`.
pub fn format_timestamp(t: SystemTime) -> String {
    // A clock before 1970 is broken; an odd timestamp is better than losing the record.
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let day = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day / 3600,
        day / 60 % 60,
        day % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar. Howard
/// Hinnant's algorithm: it counts from 0000-03-01 so that the leap day ends each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> TestDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "hark-audit-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TestDir(dir)
        }

        fn log(&self) -> PathBuf {
            self.0.join("audit.jsonl")
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn request(n: u32) -> Record {
        Record {
            satellite: Some("kitchen".to_owned()),
            request_id: Some(format!("r{n}")),
            intent: Some("timer.set".to_owned()),
            skill: Some("timer".to_owned()),
            decision: Some(Decision::Allow),
            rule: Some("default".to_owned()),
            status: Some("ok".to_owned()),
            args: Some(serde_json::json!({ "minutes": n, "label": "tea \"green\"" })),
            result: Some(serde_json::json!({ "ok": true })),
            elapsed_ms: Some(1.5),
            ..Record::new(Kind::Request)
        }
    }

    /// A log of `n` requests, synced; returns the path.
    fn write_log(dir: &TestDir, n: u32) -> PathBuf {
        let path = dir.log();
        let mut log = AuditLog::open(&path).unwrap();
        for i in 1..=n {
            log.append(&request(i)).unwrap();
        }
        log.sync().unwrap();
        path
    }

    fn read_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(path, text).unwrap();
    }

    fn verify_err(path: &Path) -> VerifyError {
        match verify(path) {
            Ok(report) => panic!("expected a broken log, got {report:?}"),
            Err(e) => e,
        }
    }

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
    fn a_line_holds_the_fields_in_order_and_hashes_its_own_bytes() {
        let dir = TestDir::new("format");
        let path = dir.log();
        let mut log = AuditLog::open(&path).unwrap();
        let record = Record {
            intent: Some("lights.on".to_owned()),
            decision: Some(Decision::Deny),
            ..Record::new(Kind::Refusal)
        };
        log.append(&record).unwrap();
        let line = &read_lines(&path)[0];

        assert!(line.starts_with("{\"seq\":1,\"ts\":\""), "{line}");
        let after_ts = &line[line.find("Z\",").unwrap() + 3..];
        assert!(
            after_ts.starts_with(&format!(
                "\"kind\":\"refusal\",\"intent\":\"lights.on\",\"decision\":\"deny\",\"prev\":\"{GENESIS}\",\"hash\":\""
            )),
            "{line}"
        );
        let cut = line.rfind(",\"hash\":\"").unwrap();
        let body = format!("{}}}", &line[..cut]);
        let hash = &line[cut + 9..line.len() - 2];
        assert_eq!(hex(&Sha256::digest(body.as_bytes())), hash);
        assert_eq!(log.last_hash(), hash);
    }

    #[test]
    fn editing_a_record_names_it() {
        let dir = TestDir::new("edit");
        let path = write_log(&dir, 5);
        let mut lines = read_lines(&path);
        lines[1] = lines[1].replace("\"minutes\":2", "\"minutes\":20");
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (2, Some(2)));
        assert_eq!(
            e.to_string(),
            "line 2 (seq 2): record was edited: hash does not match its contents"
        );
    }

    #[test]
    fn a_line_that_is_not_json_is_reported_as_edited() {
        let dir = TestDir::new("garbage");
        let path = write_log(&dir, 3);
        let mut lines = read_lines(&path);
        lines[1] = "hello".to_owned();
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (2, None));
        assert!(e.reason.contains("edited"), "{e}");
    }

    #[test]
    fn a_record_without_its_hash_is_reported_as_edited() {
        let dir = TestDir::new("nohash");
        let path = write_log(&dir, 3);
        let mut lines = read_lines(&path);
        let cut = lines[2].rfind(",\"hash\":").unwrap();
        lines[2] = format!("{}}}", &lines[2][..cut]);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (3, Some(3)));
        assert!(e.reason.contains("edited: it has no valid hash"), "{e}");
    }

    #[test]
    fn a_rewritten_record_with_a_fresh_hash_breaks_the_chain_after_it() {
        let dir = TestDir::new("rehash");
        let path = write_log(&dir, 4);
        let mut lines = read_lines(&path);
        let cut = lines[1].rfind(",\"hash\":\"").unwrap();
        let body = format!("{}}}", &lines[1][..cut].replace("kitchen", "hallway"));
        let hash = hex(&Sha256::digest(body.as_bytes()));
        lines[1] = format!("{},\"hash\":\"{hash}\"}}", &body[..body.len() - 1]);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (3, Some(3)));
        assert!(
            e.reason
                .starts_with("chain broken: a record before it was deleted or changed")
        );
    }

    #[test]
    fn deleting_a_record_names_the_next_one() {
        let dir = TestDir::new("delete");
        let path = write_log(&dir, 5);
        let mut lines = read_lines(&path);
        lines.remove(2);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (3, Some(4)));
        assert!(e.reason.contains("deleted"), "{e}");
        assert!(e.reason.contains("seq 3 is missing"), "{e}");
    }

    #[test]
    fn swapping_two_records_says_reordered() {
        let dir = TestDir::new("swap");
        let path = write_log(&dir, 5);
        let mut lines = read_lines(&path);
        lines.swap(1, 2);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (2, Some(3)));
        assert!(e.reason.contains("reordered"), "{e}");
        assert!(
            e.reason.contains("seq 3 comes before seq 2 (line 3)"),
            "{e}"
        );
    }

    #[test]
    fn a_seq_that_goes_backwards_says_reordered() {
        let dir = TestDir::new("backwards");
        let path = write_log(&dir, 4);
        let mut lines = read_lines(&path);
        let second = lines[1].clone();
        lines.push(second);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (5, Some(2)));
        assert!(
            e.reason.contains("reordered: seq goes back from 4 to 2"),
            "{e}"
        );
    }

    #[test]
    fn deleting_the_first_record_says_the_start_was_deleted() {
        let dir = TestDir::new("first");
        let path = write_log(&dir, 3);
        let mut lines = read_lines(&path);
        lines.remove(0);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (1, Some(2)));
        assert!(
            e.reason.starts_with("records at the start were deleted"),
            "{e}"
        );
    }

    #[test]
    fn deleting_the_last_records_after_sync_is_caught_by_the_head_file() {
        let dir = TestDir::new("tail-deleted");
        let path = write_log(&dir, 5);
        let mut lines = read_lines(&path);
        lines.truncate(3);
        write_lines(&path, &lines);

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (4, Some(4)));
        assert!(
            e.reason.contains(
                "log ends at seq 3 but its head file says 5: the last records were deleted"
            ),
            "{e}"
        );
    }

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
    fn a_head_file_that_disagrees_with_the_log_names_the_record() {
        let dir = TestDir::new("head-mismatch");
        let path = write_log(&dir, 3);
        fs::write(
            head_path(&path),
            format!("{{\"seq\":2,\"hash\":\"{}\"}}\n", "ab".repeat(32)),
        )
        .unwrap();

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (2, Some(2)));
        assert!(e.reason.contains("does not match its head file"), "{e}");
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
    fn verify_reports_a_last_line_without_newline_as_torn() {
        let dir = TestDir::new("torn-verify");
        let path = write_log(&dir, 3);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();

        let e = verify_err(&path);
        assert_eq!((e.line, e.seq), (3, Some(3)));
        assert!(e.reason.contains("torn"), "{e}");
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
    fn an_empty_log_verifies_and_a_missing_one_is_named() {
        let dir = TestDir::new("empty");
        let path = dir.log();
        drop(AuditLog::open(&path).unwrap());
        let report = verify(&path).unwrap();
        assert_eq!((report.records, report.last_seq), (0, 0));
        assert_eq!(report.last_hash, GENESIS);

        let missing = dir.0.join("nope.jsonl");
        let e = verify_err(&missing);
        assert_eq!(e.line, 0);
        assert!(e.to_string().contains("nope.jsonl"), "{e}");
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

    /// Counts the bytes read, to show open() reads only the tail.
    struct Counting<R> {
        inner: R,
        read: usize,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    fn tail_of(bytes: &[u8], chunk: usize) -> Tail {
        read_tail(&mut io::Cursor::new(bytes), bytes.len() as u64, chunk).unwrap()
    }

    #[test]
    fn the_tail_reader_reads_only_the_end_of_a_big_log() {
        let mut buf = Vec::new();
        let mut prev = GENESIS.to_owned();
        let mut last = Vec::new();
        for seq in 1..=10_000 {
            let (line, hash) =
                encode_line(seq, "2026-11-22T09:07:33.123Z", &request(seq as u32), &prev).unwrap();
            buf.extend_from_slice(&line);
            last = line;
            prev = hash;
        }
        assert!(buf.len() > 20 * TAIL_CHUNK);
        let mut r = Counting {
            inner: io::Cursor::new(&buf),
            read: 0,
        };
        let tail = read_tail(&mut r, buf.len() as u64, TAIL_CHUNK).unwrap();
        assert_eq!(tail.last_line.as_deref(), Some(&last[..last.len() - 1]));
        assert_eq!(tail.partial_len, 0);
        assert_eq!(r.read, TAIL_CHUNK);
        assert_eq!(
            parse_line(tail.last_line.as_ref().unwrap()).unwrap().seq,
            10_000
        );
    }

    #[test]
    fn the_tail_reader_finds_the_last_complete_line_in_any_shape() {
        let none = Tail {
            last_line: None,
            partial_len: 0,
        };
        assert_eq!(tail_of(b"", 4), none);
        assert_eq!(
            tail_of(b"abc", 2),
            Tail {
                last_line: None,
                partial_len: 3
            }
        );
        for chunk in [1, 2, 3, 5, 64] {
            let t = tail_of(b"one\ntwo\n", chunk);
            assert_eq!(t.last_line.as_deref(), Some(&b"two"[..]), "chunk {chunk}");
            assert_eq!(t.partial_len, 0);

            let t = tail_of(b"only\n", chunk);
            assert_eq!(t.last_line.as_deref(), Some(&b"only"[..]), "chunk {chunk}");

            let t = tail_of(b"one\na very long second line\ntorn", chunk);
            assert_eq!(
                t.last_line.as_deref(),
                Some(&b"a very long second line"[..]),
                "chunk {chunk}"
            );
            assert_eq!(t.partial_len, 4);
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |secs: u64, ms: u64| {
            format_timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(946_684_799, 999), "1999-12-31T23:59:59.999Z");
        assert_eq!(at(951_868_799, 5), "2000-02-29T23:59:59.005Z");
        assert_eq!(at(1_709_210_096, 789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(1_795_338_453, 123), "2026-11-22T09:07:33.123Z");
        assert_eq!(at(2_147_483_648, 0), "2038-01-19T03:14:08.000Z");
        assert_eq!(at(4_107_456_000, 0), "2100-02-28T00:00:00.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(13_574_563_200, 0), "2400-02-29T00:00:00.000Z");
        assert_eq!(
            format_timestamp(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn civil_dates_match_a_day_by_day_count() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut days = 0;
        for y in 1970..2500 {
            for m in 1..=12u32 {
                let len = match m {
                    2 if leap(y) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for d in 1..=len {
                    assert_eq!(civil_from_days(days), (y, m, d));
                    days += 1;
                }
            }
        }
    }
}

/// The log as the hub shares it between the dispatcher and its services.
/// A failing disk is logged loudly but never fails the request that was
/// being audited: a household's timer matters more than its paper trail.
#[derive(Debug)]
pub struct Audit {
    log: std::sync::Mutex<AuditLog>,
}

impl Audit {
    pub fn new(log: AuditLog) -> std::sync::Arc<Audit> {
        std::sync::Arc::new(Audit {
            log: std::sync::Mutex::new(log),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuditLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `record`; its seq, or `None` when the log could not be written.
    pub fn record(&self, record: &Record) -> Option<u64> {
        match self.lock().append(record) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!("audit log: {e}");
                None
            }
        }
    }

    /// fdatasync the log and refresh its head file.
    pub fn sync(&self) {
        if let Err(e) = self.lock().sync() {
            tracing::error!("audit log: {e}");
        }
    }

    /// Like [`Audit::sync`], but hands the disk work back as a job to run
    /// off the hub's loop (and off the lock).
    pub fn sync_job(&self) -> Option<SyncJob> {
        match self.lock().prepare_sync() {
            Ok(job) => job,
            Err(e) => {
                tracing::error!("audit log: {e}");
                None
            }
        }
    }
}
