//! Wyoming's framing (the `wyoming` Python library's `event.py`): each event
//! is one JSON header line `{"type", "data"?, "data_length"?,
//! "payload_length"?, "version"?}`, then `data_length` bytes of JSON object
//! merged into `data`, then `payload_length` bytes of binary payload.
//!
//! Reading is bounded: a header line over [`MAX_LINE`] or data over the
//! caller's limit is refused (and skipped, so the connection stays in step
//! and goes on serving); payloads, which no event the hub takes carries, are
//! skipped unread.

use hark_skill_sdk::ErrorCode;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

use crate::request::{Failure, kind_of};

/// Longest header line the hub reads (with its newline).
pub const MAX_LINE: usize = 64 * 1024;

/// The Wyoming version the hub's events say they are written in (the
/// `wyoming` library release it was tested with).
pub const VERSION: &str = "1.10.2";

/// One event: its type and its data (header `data` merged with the data
/// bytes). Payloads are not kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: String,
    pub data: Map<String, Value>,
}

impl Event {
    pub fn new(kind: &str, data: Value) -> Event {
        Event {
            kind: kind.to_string(),
            data: match data {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    /// The event as the library writes it: the header line, then the data
    /// as separate bytes (none when empty).
    pub fn encode(&self) -> Vec<u8> {
        let data = (!self.data.is_empty())
            .then(|| serde_json::to_vec(&self.data).expect("event data serializes"));
        let mut header = json!({"type": self.kind, "version": VERSION});
        if let Some(data) = &data {
            header["data_length"] = json!(data.len());
        }
        let mut out = serde_json::to_vec(&header).expect("event header serializes");
        out.push(b'\n');
        if let Some(data) = data {
            out.extend_from_slice(&data);
        }
        out
    }
}

/// What reading the next event gave.
#[derive(Debug)]
pub enum Read {
    Event(Event),
    /// An event that cannot be read; the stream is still in step after it.
    Bad(Failure),
    /// The peer closed the connection (between events, or in the middle of
    /// one: a half event is dropped).
    Closed,
}

/// Reads the next event; `max_data` bounds its data bytes.
pub async fn read<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_data: usize,
) -> std::io::Result<Read> {
    let line = loop {
        match read_line(reader, MAX_LINE).await? {
            Line::Eof => return Ok(Read::Closed),
            Line::TooLong(len) => {
                return Ok(Read::Bad(bad(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the event's header line is {len} bytes or more; the limit is {MAX_LINE}"
                    ),
                )));
            }
            Line::Full(line) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Full(line) => break line,
        }
    };
    let header = match header(&line) {
        Ok(header) => header,
        Err(failure) => return Ok(Read::Bad(failure)),
    };
    // Take what the header says follows before judging the rest of it, so
    // the next event is read from its start.
    let data_length = match length(&header, "data_length") {
        Ok(n) => n,
        Err(failure) => return Ok(Read::Bad(failure)),
    };
    let payload_length = match length(&header, "payload_length") {
        Ok(n) => n,
        Err(failure) => return Ok(Read::Bad(failure)),
    };
    let mut extra = None;
    if data_length > max_data {
        if !skip(reader, data_length.saturating_add(payload_length)).await? {
            return Ok(Read::Closed);
        }
        return Ok(Read::Bad(bad(
            ErrorCode::PayloadTooLarge,
            format!("the event's data is {data_length} bytes; the limit is {max_data}"),
        )));
    }
    if data_length > 0 {
        let mut bytes = vec![0; data_length];
        if let Err(e) = reader.read_exact(&mut bytes).await {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Ok(Read::Closed),
                _ => Err(e),
            };
        }
        extra = Some(bytes);
    }
    if !skip(reader, payload_length).await? {
        return Ok(Read::Closed);
    }
    Ok(match event(header, extra.as_deref()) {
        Ok(event) => Read::Event(event),
        Err(failure) => Read::Bad(failure),
    })
}

fn bad(code: ErrorCode, message: String) -> Failure {
    Failure::new(code, message)
}

fn header(line: &[u8]) -> Result<Map<String, Value>, Failure> {
    let text = std::str::from_utf8(line).map_err(|e| {
        bad(
            ErrorCode::NotUtf8,
            format!(
                "the event's header line is not UTF-8: invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(header)) => Ok(header),
        Ok(other) => Err(bad(
            ErrorCode::NotObject,
            format!(
                "the event's header line must be a JSON object, not {}",
                kind_of(&other)
            ),
        )),
        Err(e) => Err(bad(
            ErrorCode::NotJson,
            format!("the event's header line is not JSON: {e}"),
        )),
    }
}

/// `data_length` or `payload_length`: absent, null or a count of bytes.
fn length(header: &Map<String, Value>, key: &str) -> Result<usize, Failure> {
    match header.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                bad(
                    ErrorCode::BadEvent,
                    format!("{key} must be a count of bytes, not {v}"),
                )
            }),
    }
}

fn event(mut header: Map<String, Value>, extra: Option<&[u8]>) -> Result<Event, Failure> {
    let kind = match header.remove("type") {
        Some(Value::String(kind)) if !kind.is_empty() => kind,
        Some(other) => {
            return Err(bad(
                ErrorCode::BadEvent,
                format!("the event's type must be a name, not {other}"),
            ));
        }
        None => {
            return Err(bad(
                ErrorCode::BadEvent,
                "the event has no type".to_string(),
            ));
        }
    };
    let mut data = match header.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(data)) => data,
        Some(other) => {
            return Err(bad(
                ErrorCode::BadEvent,
                format!(
                    "the {kind} event's data must be an object, not {}",
                    kind_of(&other)
                ),
            ));
        }
    };
    if let Some(extra) = extra {
        match serde_json::from_slice::<Value>(extra) {
            Ok(Value::Object(more)) => data.extend(more),
            Ok(other) => {
                return Err(bad(
                    ErrorCode::BadEvent,
                    format!(
                        "the {kind} event's data bytes must be a JSON object, not {}",
                        kind_of(&other)
                    ),
                ));
            }
            Err(e) => {
                return Err(bad(
                    ErrorCode::NotJson,
                    format!("the {kind} event's data bytes are not JSON: {e}"),
                ));
            }
        }
    }
    Ok(Event { kind, data })
}

enum Line {
    Full(Vec<u8>),
    /// Longer than the limit; read up to its newline and dropped.
    TooLong(usize),
    Eof,
}

/// One line without its newline, at most `max` bytes kept. A line cut by
/// the end of the stream counts as the end.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut seen = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        seen += chunk.len();
        if seen <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let used = found.unwrap_or(buf.len());
        reader.consume(used);
        if found.is_some() {
            return Ok(if seen > max {
                Line::TooLong(seen)
            } else {
                Line::Full(line)
            });
        }
    }
}

/// Reads and drops `n` bytes; `false` when the stream ends first.
async fn skip<R: AsyncRead + Unpin>(reader: &mut R, n: usize) -> std::io::Result<bool> {
    if n == 0 {
        return Ok(true);
    }
    let copied = tokio::io::copy(&mut reader.take(n as u64), &mut tokio::io::sink()).await?;
    Ok(copied == n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn all(bytes: &[u8], max_data: usize) -> Vec<Result<Event, String>> {
        let mut reader = BufReader::with_capacity(16, bytes);
        let mut out = Vec::new();
        loop {
            match read(&mut reader, max_data).await.unwrap() {
                Read::Event(e) => out.push(Ok(e)),
                Read::Bad(f) => out.push(Err(format!("{}: {}", f.code, f.message))),
                Read::Closed => return out,
            }
        }
    }

    /// Each event's type, or each refusal's code.
    fn codes(got: &[Result<Event, String>]) -> Vec<&str> {
        got.iter()
            .map(|r| match r {
                Ok(e) => e.kind.as_str(),
                Err(e) => e.split(':').next().unwrap(),
            })
            .collect()
    }

    #[tokio::test]
    async fn data_bytes_are_merged_into_the_header_data_and_payloads_skipped() {
        let got = all(
            b"{\"type\":\"intent\",\"data\":{\"name\":\"x\"},\"data_length\":14,\"payload_length\":3}\n\
              {\"text\":\"hi\"}\nabc{\"type\":\"describe\"}\n",
            1024,
        )
        .await;
        assert_eq!(
            got,
            vec![
                Ok(Event::new("intent", json!({"name": "x", "text": "hi"}))),
                Ok(Event::new("describe", json!({}))),
            ]
        );
    }

    #[tokio::test]
    async fn what_the_hub_writes_reads_back() {
        let event = Event::new("handled", json!({"text": "Pasta timer set for 5 minutes."}));
        let bytes = event.encode();
        let first_line = bytes.split(|b| *b == b'\n').next().unwrap();
        let header: Value = serde_json::from_slice(first_line).unwrap();
        assert_eq!(header["type"], "handled");
        assert!(header.get("data").is_none(), "data goes after the line");
        assert_eq!(all(&bytes, 1024).await, vec![Ok(event)]);
        let bare = Event::new("describe", json!({})).encode();
        assert!(!String::from_utf8(bare).unwrap().contains("data_length"));
    }

    #[tokio::test]
    async fn bad_events_are_refused_one_by_one_and_the_stream_stays_in_step() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"not json\n");
        bytes.extend_from_slice(b"[1]\n");
        bytes.extend_from_slice(b"{\"data\":{}}\n");
        bytes.extend_from_slice(
            format!("{{\"type\":\"x\",\"pad\":\"{}\"}}\n", "a".repeat(MAX_LINE)).as_bytes(),
        );
        bytes.extend_from_slice(b"{\"type\":\"intent\",\"data_length\":40}\n");
        bytes.extend_from_slice(&[b' '; 40]);
        bytes.extend_from_slice(b"{\"type\":\"intent\",\"data_length\":-1}\n");
        bytes.extend_from_slice(b"{\"type\":\"describe\"}\n");
        let got = all(&bytes, 16).await;
        let codes = codes(&got);
        assert_eq!(
            codes,
            [
                "not_json",
                "not_object",
                "bad_event",
                "payload_too_large",
                "payload_too_large",
                "bad_event",
                "describe"
            ],
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn undecodable_headers_and_data_bytes_are_refused_with_their_codes() {
        let mut bytes = b"{\"type\":\"x\xff\"}\n".to_vec();
        bytes.extend_from_slice(b"{\"type\":\"intent\",\"data_length\":3}\nabc");
        bytes.extend_from_slice(b"{\"type\":\"intent\",\"data_length\":3}\n[1]");
        bytes.extend_from_slice(b"{\"type\":\"intent\",\"data\":[]}\n");
        bytes.extend_from_slice(b"{\"type\":\"describe\"}\n");
        let got = all(&bytes, 16).await;
        let codes = codes(&got);
        assert_eq!(
            codes,
            ["not_utf8", "not_json", "bad_event", "bad_event", "describe"],
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn a_half_event_at_the_end_is_the_end() {
        assert_eq!(all(b"{\"type\":\"describe\"}", 16).await, vec![]);
        assert_eq!(
            all(b"{\"type\":\"x\",\"data_length\":9}\n{}", 16).await,
            vec![]
        );
    }
}
