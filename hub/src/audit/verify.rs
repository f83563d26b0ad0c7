//! `hark audit verify`: checks the whole chain and the head file, and names the first broken
//! record and what probably happened to it; with the hub's public key, also holds the log against
//! signed checkpoints (its own, and older copies kept elsewhere): each must verify, and the first
//! records of the log must still give each one's root. A log that could not be read is said to
//! be unreadable, never broken.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use ed25519_compact::PublicKey;

use super::GENESIS;
use super::checkpoint::{Checkpoint, open_note, split_notes};
use super::line::{is_hash, parse_line, sniff_seq};
use super::merkle::{Frontier, leaf_hash};
use super::segments::{segment_path, segments};
use super::sync::{Head, head_path};

/// What to hold the log against besides its own chain.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// The hub's public key; needed to check any checkpoint.
    pub key: Option<PublicKey>,
    /// Files of signed checkpoints (the hub's `<log>.checkpoints`, copies, one saved note).
    pub checkpoints: Vec<PathBuf>,
}

/// The verified log: how many records, and where the chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    /// 0 when empty.
    pub last_seq: u64,
    /// [`GENESIS`] when empty.
    pub last_hash: String,
    /// How many checkpoints the log was held against, and the largest tree size among them.
    pub checkpoints: usize,
    pub newest_checkpoint: Option<u64>,
    /// Closed segments before the live file.
    pub segments: usize,
}

/// The first broken record. `line` is 1-based; 0 means the problem is not in a line (the file
/// cannot be read, or its head file is invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub line: u64,
    pub seq: Option<u64>,
    pub reason: String,
    /// Nothing was found broken: the log (or a file it is checked against) could not be read.
    pub unreadable: bool,
    /// The closed segment (or the live file, when the log has segments) `line` is in.
    pub segment: Option<PathBuf>,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(segment) = &self.segment {
            write!(f, "{}, ", segment.display())?;
        }
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
            unreadable: false,
            segment: None,
        }
    }

    fn unreadable(reason: String) -> VerifyError {
        VerifyError {
            unreadable: true,
            ..VerifyError::file(reason)
        }
    }
}

/// One checkpoint to hold the log against, and where it came from.
struct Held {
    checkpoint: Checkpoint,
    /// `<file> line <n>`.
    from: String,
}

fn read_checkpoints(checks: &Checks) -> Result<Vec<Held>, VerifyError> {
    let mut held = Vec::new();
    if checks.checkpoints.is_empty() {
        return Ok(held);
    }
    let Some(key) = checks.key.as_ref() else {
        return Err(VerifyError::unreadable(
            "cannot check checkpoints without the hub's public key: pass --key ed25519:<base64> \
             (`hark audit key` on the hub prints it)"
                .to_owned(),
        ));
    };
    for path in &checks.checkpoints {
        let text = fs::read_to_string(path).map_err(|e| {
            VerifyError::unreadable(format!("cannot read checkpoints {}: {e}", path.display()))
        })?;
        let notes = split_notes(&text);
        if notes.is_empty() {
            return Err(VerifyError::file(format!(
                "checkpoints {} holds no checkpoint",
                path.display()
            )));
        }
        for (line, note) in notes {
            let from = format!("{} line {line}", path.display());
            let checkpoint = open_note(&note, key)
                .map_err(|e| VerifyError::file(format!("checkpoint at {from} is bad: {e}")))?;
            held.push(Held { checkpoint, from });
        }
    }
    held.sort_by_key(|h| h.checkpoint.size);
    Ok(held)
}

/// Checks the whole chain and the head file; names the first broken record.
pub fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
    verify_with(path, &Checks::default())
}

/// Like [`verify`], and holds the log against every checkpoint in `checks`.
pub fn verify_with(path: &Path, checks: &Checks) -> Result<VerifyReport, VerifyError> {
    let held = read_checkpoints(checks)?;
    let head = read_head(&head_path(path))?;
    let segments = segments(path).map_err(|e| {
        VerifyError::unreadable(format!(
            "cannot list the segments of {}: {e}",
            path.display()
        ))
    })?;
    for (i, (n, _)) in segments.iter().enumerate() {
        let want = i as u64 + 1;
        if *n != want {
            return Err(VerifyError::file(format!(
                "segment {} is missing: a whole segment of the log was deleted",
                segment_path(path, want).display()
            )));
        }
    }
    let mut files: Vec<PathBuf> = segments.into_iter().map(|(_, p)| p).collect();
    files.push(path.to_path_buf());
    let mut opened = Vec::new();
    let mut ends = Vec::new();
    let mut end = 0u64;
    for file in &files {
        let f = File::open(file)
            .map_err(|e| VerifyError::unreadable(format!("cannot read {}: {e}", file.display())))?;
        end += f
            .metadata()
            .map_err(|e| VerifyError::unreadable(format!("cannot read {}: {e}", file.display())))?
            .len();
        ends.push(end);
        opened.push(f);
    }
    let mut reader: Box<dyn io::Read> = Box::new(io::empty());
    for f in opened {
        reader = Box::new(io::Read::chain(reader, f));
    }
    let mut starts = vec![1u64];
    let result = verify_lines(
        path,
        BufReader::new(reader),
        &ends,
        &mut starts,
        head,
        &held,
    );
    result.map_err(|mut e| {
        if files.len() > 1 && e.line > 0 {
            let i = starts.iter().rposition(|&s| s <= e.line).unwrap_or(0);
            e.line = e.line - starts[i] + 1;
            e.segment = Some(files[i].clone());
        }
        e
    })
}

/// The records of the log's files read as one; `ends` are the files' cumulative byte lengths,
/// and `starts` is filled with the line number each file starts at.
fn verify_lines<R: BufRead>(
    path: &Path,
    mut reader: R,
    ends: &[u64],
    starts: &mut Vec<u64>,
    head: Option<Head>,
    held: &[Held],
) -> Result<VerifyReport, VerifyError> {
    let cannot_read =
        |e: io::Error| VerifyError::unreadable(format!("cannot read {}: {e}", path.display()));
    let mut pending = held.iter().peekable();
    let mut tree = Frontier::default();
    let mut offset = 0u64;
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut last: Option<(u64, String)> = None;
    // Where the record the head file names was found, and its hash.
    let mut at_head: Option<(u64, String)> = None;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(cannot_read)?;
        if n == 0 {
            break;
        }
        while starts.len() < ends.len() && offset >= ends[starts.len() - 1] {
            starts.push(line_no + 1);
        }
        offset += n as u64;
        line_no += 1;
        if buf.pop() != Some(b'\n') {
            return Err(VerifyError {
                line: line_no,
                seq: sniff_seq(&buf),
                reason: "the last line is incomplete: a write torn by a crash (or the log is \
                         being written right now)"
                    .to_owned(),
                unreadable: false,
                segment: None,
            });
        }
        let rec = parse_line(&buf).map_err(|(seq, reason)| VerifyError {
            line: line_no,
            seq,
            reason,
            unreadable: false,
            segment: None,
        })?;
        let broken = |reason: String| VerifyError {
            line: line_no,
            seq: Some(rec.seq),
            reason,
            unreadable: false,
            segment: None,
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
        if rec.kind == "gap" {
            return Err(broken(format!(
                "the hub found records missing when it started and recorded the gap here: {}",
                gap_message(&buf)
            )));
        }
        // Checkpoints of the empty tree come before the first leaf.
        check_roots(&mut pending, &tree, line_no, rec.seq)?;
        tree.push(leaf_hash(&buf));
        check_roots(&mut pending, &tree, line_no, rec.seq)?;
        if head.as_ref().is_some_and(|h| h.seq == rec.seq) {
            at_head = Some((line_no, rec.hash.clone()));
        }
        last = Some((rec.seq, rec.hash));
    }
    while starts.len() < ends.len() {
        starts.push(line_no + 1);
    }
    let (last_seq, last_hash) = last.unwrap_or((0, GENESIS.to_owned()));
    check_roots(&mut pending, &tree, line_no, last_seq)?;
    if let Some(h) = pending.next() {
        return Err(VerifyError {
            line: line_no + 1,
            seq: Some(last_seq + 1),
            reason: format!(
                "log ends at seq {last_seq} ({} records) but the checkpoint at {} covers {}: the \
                 last records were cut off, or the file was truncated or replaced",
                tree.size(),
                h.from,
                h.checkpoint.size
            ),
            unreadable: false,
            segment: None,
        });
    }
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
                unreadable: false,
                segment: None,
            });
        }
        if let Some((line, hash)) = at_head
            && hash != head.hash
        {
            return Err(VerifyError {
                line,
                seq: Some(head.seq),
                reason: format!(
                    "record does not match its head file, which says its hash is {}: the log \
                         was rewritten from here or earlier",
                    head.hash
                ),
                unreadable: false,
                segment: None,
            });
        }
    }
    Ok(VerifyReport {
        records: line_no,
        last_seq,
        last_hash,
        checkpoints: held.len(),
        newest_checkpoint: held.last().map(|h| h.checkpoint.size),
        segments: ends.len() - 1,
    })
}

/// Every checkpoint of the tree's current size must have its root.
fn check_roots<'a>(
    pending: &mut std::iter::Peekable<impl Iterator<Item = &'a Held>>,
    tree: &Frontier,
    line: u64,
    seq: u64,
) -> Result<(), VerifyError> {
    while let Some(h) = pending.next_if(|h| h.checkpoint.size <= tree.size()) {
        if h.checkpoint.size == tree.size() && h.checkpoint.root != tree.root() {
            return Err(VerifyError {
                line,
                seq: Some(seq),
                reason: format!(
                    "the first {} records do not match the checkpoint at {}: the log was \
                     rewritten or replaced up to here (or earlier)",
                    tree.size(),
                    h.from
                ),
                unreadable: false,
                segment: None,
            });
        }
    }
    Ok(())
}

fn gap_message(line: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
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
            return Err(VerifyError::unreadable(format!(
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

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};

    use sha2::{Digest, Sha256};

    use crate::audit::line::hex;
    use crate::audit::test_util::{TestDir, read_lines, verify_err, write_lines, write_log};
    use crate::audit::{AuditLog, GENESIS, head_path, verify};

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

    mod checkpoints {
        use std::fs;

        use sha2::{Digest, Sha256};

        use crate::audit::checkpoint::checkpoints_path;
        use crate::audit::line::hex;
        use crate::audit::test_util::{TestDir, key, read_lines, write_lines, write_signed_log};
        use crate::audit::{Checks, VerifyError, head_path, verify_with};

        fn checks(files: &[&std::path::Path]) -> Checks {
            Checks {
                key: Some(key().public_key()),
                checkpoints: files.iter().map(|p| p.to_path_buf()).collect(),
            }
        }

        fn broken(path: &std::path::Path, files: &[&std::path::Path]) -> VerifyError {
            let e = verify_with(path, &checks(files)).unwrap_err();
            assert!(!e.unreadable, "{e}");
            e
        }

        #[test]
        fn a_log_agrees_with_every_checkpoint_it_made() {
            let dir = TestDir::new("cp-ok");
            let path = write_signed_log(&dir, 10, &[3, 4, 10]);
            let report = verify_with(&path, &checks(&[&checkpoints_path(&path)])).unwrap();
            assert_eq!(
                (report.checkpoints, report.newest_checkpoint),
                (3, Some(10))
            );
        }

        #[test]
        fn a_tail_cut_with_its_head_file_is_caught_by_a_checkpoint_kept_elsewhere() {
            let dir = TestDir::new("cp-cut");
            let path = write_signed_log(&dir, 8, &[6]);
            let copy = dir.0.join("copy.checkpoints");
            fs::copy(checkpoints_path(&path), &copy).unwrap();
            let mut lines = read_lines(&path);
            lines.truncate(4);
            write_lines(&path, &lines);
            fs::remove_file(head_path(&path)).unwrap();
            fs::remove_file(checkpoints_path(&path)).unwrap();

            let e = broken(&path, &[&copy]);
            assert_eq!((e.line, e.seq), (5, Some(5)));
            assert!(e.reason.contains("log ends at seq 4 (4 records)"), "{e}");
            assert!(e.reason.contains("copy.checkpoints line 1 covers 6"), "{e}");
        }

        #[test]
        fn a_log_edited_and_rehashed_throughout_is_caught_by_a_checkpoint() {
            let dir = TestDir::new("cp-rehash");
            let path = write_signed_log(&dir, 6, &[5]);
            let mut lines = read_lines(&path);
            // The attacker's script: change a record, then re-seal every line after it.
            let mut prev = None::<String>;
            for (i, line) in lines.iter_mut().enumerate() {
                let mut body = line[..line.rfind(",\"hash\":\"").unwrap()].to_owned();
                if i == 1 {
                    body = body.replace("kitchen", "hallway");
                }
                if let Some(p) = &prev {
                    let at = body.rfind(",\"prev\":\"").unwrap();
                    body = format!("{},\"prev\":\"{p}\"", &body[..at]);
                }
                let hash = hex(&Sha256::digest(format!("{body}}}").as_bytes()));
                *line = format!("{body},\"hash\":\"{hash}\"}}");
                prev = Some(hash);
            }
            write_lines(&path, &lines);
            fs::remove_file(head_path(&path)).unwrap();
            assert!(
                crate::audit::verify(&path).is_ok(),
                "the chain alone is fooled"
            );

            let e = broken(&path, &[&checkpoints_path(&path)]);
            assert_eq!((e.line, e.seq), (5, Some(5)));
            assert!(
                e.reason
                    .contains("the first 5 records do not match the checkpoint"),
                "{e}"
            );
        }

        #[test]
        fn a_checkpoint_with_a_bad_signature_is_named() {
            let dir = TestDir::new("cp-badsig");
            let path = write_signed_log(&dir, 4, &[2, 4]);
            let cp = checkpoints_path(&path);
            let text = fs::read_to_string(&cp).unwrap();
            fs::write(&cp, text.replacen("\n4\n", "\n3\n", 1)).unwrap();
            let e = broken(&path, &[&cp]);
            assert!(e.reason.contains("line 7 is bad"), "{e}");
            assert!(e.reason.contains("signature does not verify"), "{e}");

            let other = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
            let e = verify_with(
                &path,
                &Checks {
                    key: Some(other.pk),
                    checkpoints: vec![cp],
                },
            )
            .unwrap_err();
            assert!(e.reason.contains("checkpoint of another log"), "{e}");
        }

        #[test]
        fn checkpoints_without_a_key_or_unreadable_are_not_called_broken() {
            let dir = TestDir::new("cp-unread");
            let path = write_signed_log(&dir, 2, &[2]);
            let e = verify_with(
                &path,
                &Checks {
                    key: None,
                    checkpoints: vec![checkpoints_path(&path)],
                },
            )
            .unwrap_err();
            assert!(e.unreadable && e.reason.contains("--key"), "{e}");
            let e = verify_with(&path, &checks(&[&dir.0.join("nope")])).unwrap_err();
            assert!(
                e.unreadable && e.reason.contains("cannot read checkpoints"),
                "{e}"
            );
            let e = verify_with(&dir.0.join("missing.jsonl"), &checks(&[])).unwrap_err();
            assert!(e.unreadable, "{e}");
        }
    }
}
