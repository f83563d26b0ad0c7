//! One line of the log: `{"seq":N,"ts":"…Z",<the record's fields>,"prev":"<hex>","hash":"<hex>"}`,
//! where `hash` is the SHA-256 of the line's own bytes up to `,"hash":` (closed with `}`) and
//! `prev` repeats the previous line's `hash`. Encoding a record, and reading one back with its seal checked.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Record;

/// Where the verifier cuts a line into its hashed body and its hash. A `"` inside a JSON string is
/// always escaped, so this text can only occur as the real key.
pub(super) const HASH_KEY: &[u8] = b",\"hash\":\"";

#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: &'a str,
    #[serde(flatten)]
    record: &'a Record,
    prev: &'a str,
}

/// One complete line, '\n' included, and its hash.
pub(super) fn encode_line(
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

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

pub(super) fn is_hash(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

enum Seal<'a> {
    Missing,
    Mismatch,
    Valid(&'a str),
}

/// What the hub's read of the whole log at start needs, cheaper than [`parse_line`] (one
/// SHA-256, no JSON parse): `None` when the line is not a sealed record (a torn fragment),
/// else whether it is a `gap` record. The verifier does the full check.
pub(super) fn sealed_is_gap(line: &[u8]) -> Option<bool> {
    const KIND: &[u8] = b",\"kind\":\"";
    if !matches!(check_seal(line), Seal::Valid(_)) {
        return None;
    }
    // The record's own kind comes right after `ts`, before any field that could hold this text.
    let at = line.windows(KIND.len()).position(|w| w == KIND)?;
    Some(line[at + KIND.len()..].starts_with(b"gap\""))
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
pub(super) struct Parsed {
    pub(super) seq: u64,
    pub(super) prev: String,
    pub(super) hash: String,
    /// The record's `kind`, as written.
    pub(super) kind: String,
}

/// Parses and checks one line (without its '\n'); on failure, the seq if one can be read, and why.
pub(super) fn parse_line(line: &[u8]) -> Result<Parsed, (Option<u64>, String)> {
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
    let kind = obj
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(Parsed {
        seq,
        prev: prev.to_owned(),
        hash,
        kind,
    })
}

/// The seq of a line that may not be valid JSON: every line starts with `{"seq":N,`.
pub(super) fn sniff_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::hex;
    use crate::audit::test_util::{TestDir, read_lines};
    use crate::audit::{AuditLog, Decision, GENESIS, Kind, Record};

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
}
