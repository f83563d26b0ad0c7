//! The native intent request (docs/protocol.md §3) and reply (§5) on the
//! wire: a JSON payload on `<prefix>/intent/<sat>` decoded into a
//! [`Request`], strictly, every problem named by its JSON pointer; and the
//! [`Reply`] as the JSON published on `<prefix>/reply/<sat>`.

use hark_skill_sdk::{ErrorCode, Reply};
use serde_json::{Map, Value};

use crate::events::Protocol;
use crate::request::{Failure, Known, MAX_ID_LEN, Rejected, Request, kind_of, valid_id};

/// The payload on `<prefix>/intent/<satellite>` as a request, or what could
/// be read of it and why it cannot run. The steps of §4, in order: size,
/// UTF-8, JSON, object, `id`, `intent`, `args`, `text`, `confidence`.
pub fn decode(
    satellite: &str,
    payload: &[u8],
    max_payload: usize,
) -> Result<Request, Box<Rejected>> {
    let mut known = Known::new(satellite, Protocol::NATIVE);
    let reject = |known: &Known, failure: Failure| {
        Box::new(Rejected {
            known: known.clone(),
            failure,
        })
    };
    let value = parse(payload, max_payload).map_err(|failure| reject(&known, failure))?;
    let Value::Object(mut map) = value else {
        let failure = Failure::new(
            ErrorCode::NotObject,
            format!("the payload must be a JSON object, not {}", kind_of(&value)),
        );
        return Err(reject(&known, failure));
    };
    let id = match map.remove("id") {
        None => {
            let failure = Failure::invalid_at(ErrorCode::MissingId, "/id", "is required");
            return Err(reject(&known, failure));
        }
        Some(Value::String(id)) if valid_id(&id) => id,
        Some(Value::String(id)) => {
            let failure = Failure::invalid_at(
                ErrorCode::BadId,
                "/id",
                format!(
                    "must be 1 to {MAX_ID_LEN} characters, got {}",
                    id.chars().count()
                ),
            );
            return Err(reject(&known, failure));
        }
        Some(other) => {
            let failure = Failure::invalid_at(
                ErrorCode::BadId,
                "/id",
                format!("must be a string, not {}", kind_of(&other)),
            );
            return Err(reject(&known, failure));
        }
    };
    known.id = Some(id.clone());
    let intent = match map.remove("intent") {
        Some(Value::String(intent)) if !intent.is_empty() => intent,
        Some(Value::String(_)) => {
            let failure = Failure::invalid_at(ErrorCode::BadIntent, "/intent", "must not be empty");
            return Err(reject(&known, failure));
        }
        Some(other) if !other.is_null() => {
            let failure = Failure::invalid_at(
                ErrorCode::BadIntent,
                "/intent",
                format!("must be a string, not {}", kind_of(&other)),
            );
            return Err(reject(&known, failure));
        }
        _ => {
            let failure = Failure::invalid_at(ErrorCode::MissingIntent, "/intent", "is required");
            return Err(reject(&known, failure));
        }
    };
    known.intent = Some(intent.clone());
    let args = match map.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args,
        Some(other) => {
            let failure = Failure::invalid_at(
                ErrorCode::BadArgs,
                "/args",
                format!("must be an object, not {}", kind_of(&other)),
            );
            return Err(reject(&known, failure));
        }
    };
    known.args = Some(args.clone());
    let text = match map.remove("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(other) => {
            let failure = Failure::invalid_at(
                ErrorCode::BadText,
                "/text",
                format!("must be a string, not {}", kind_of(&other)),
            );
            return Err(reject(&known, failure));
        }
    };
    let confidence = match map.remove("confidence") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => {
            let failure = Failure::invalid_at(
                ErrorCode::BadConfidence,
                "/confidence",
                format!("must be a number, not {}", kind_of(&other)),
            );
            return Err(reject(&known, failure));
        }
    };
    Ok(Request {
        id,
        intent,
        args,
        text,
        confidence,
        satellite: satellite.to_string(),
        protocol: Protocol::NATIVE,
    })
}

/// What a payload the hub will not run says about itself: its `id` and
/// `intent` when it is a JSON object within `max_payload`.
pub fn known(satellite: &str, payload: &[u8], max_payload: usize) -> Known {
    let mut known = Known::new(satellite, Protocol::NATIVE);
    if payload.len() <= max_payload
        && let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload)
    {
        known.id = map
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| valid_id(id))
            .map(String::from);
        known.intent = map.get("intent").and_then(Value::as_str).map(String::from);
    }
    known
}

/// The reply as published on `<prefix>/reply/<sat>`.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    serde_json::to_vec(reply).expect("replies serialize")
}

fn parse(payload: &[u8], max_payload: usize) -> Result<Value, Failure> {
    if payload.len() > max_payload {
        return Err(Failure::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the payload is {} bytes; the limit is {max_payload} (mqtt.max_payload)",
                payload.len(),
            ),
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|e| {
        Failure::new(
            ErrorCode::NotUtf8,
            format!(
                "the payload is not UTF-8: invalid byte at offset {}",
                e.valid_up_to()
            ),
        )
    })?;
    serde_json::from_str(text)
        .map_err(|e| Failure::new(ErrorCode::NotJson, format!("the payload is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hark_skill_sdk::{ErrorBody, Status, Violation};
    use serde_json::json;

    const LIMIT: usize = 65_536;

    /// The request as a satellite publishes it (`text` and `confidence` only when set).
    fn encode(request: &Request) -> Vec<u8> {
        let mut body = json!({"id": request.id, "intent": request.intent, "args": request.args});
        if let Some(text) = &request.text {
            body["text"] = json!(text);
        }
        if let Some(confidence) = request.confidence {
            body["confidence"] = json!(confidence);
        }
        serde_json::to_vec(&body).expect("requests serialize")
    }

    /// A payload; the code, pointer and message it is refused with; the id
    /// and intent known by then.
    type Case<'a> = (
        &'a [u8],
        ErrorCode,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn request() -> Request {
        Request {
            id: "r-17".into(),
            intent: "timer.set".into(),
            args: json!({"duration": "5m", "label": "pasta"})
                .as_object()
                .unwrap()
                .clone(),
            text: Some("set a pasta timer for five minutes".into()),
            confidence: Some(0.93),
            satellite: "kitchen".into(),
            protocol: Protocol::NATIVE,
        }
    }

    #[test]
    fn a_request_round_trips_through_its_payload() {
        let request = request();
        assert_eq!(decode("kitchen", &encode(&request), LIMIT), Ok(request));
        let bare = Request {
            args: Map::new(),
            text: None,
            confidence: None,
            ..super::tests::request()
        };
        let payload = encode(&bare);
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            json!({"id": "r-17", "intent": "timer.set", "args": {}})
        );
        assert_eq!(decode("kitchen", &payload, LIMIT), Ok(bare));
    }

    #[test]
    fn the_documented_example_decodes_and_extra_fields_are_ignored() {
        let payload =
            br#"{"id":"r-17","intent":"timer.set","args":{"duration":"5m","label":"pasta"},
            "text":"set a pasta timer for five minutes","confidence":0.93,"colour":"blue"}"#;
        assert_eq!(decode("kitchen", payload, LIMIT), Ok(request()));
        let nulls = br#"{"id":"r","intent":"x","args":null,"text":null,"confidence":null}"#;
        let request = decode("hall", nulls, LIMIT).unwrap();
        assert_eq!(
            (request.args.len(), request.text, request.confidence),
            (0, None, None)
        );
        assert_eq!(request.satellite, "hall");
    }

    /// Each step of §4 that can fail: code, pointer, message, and what was
    /// known of the request by then (for its reply and audit record).
    #[test]
    fn each_bad_payload_is_refused_with_its_code_pointer_and_what_was_read() {
        let too_big = vec![b' '; LIMIT + 1];
        let cases: [Case; 16] = [
            (
                &too_big,
                ErrorCode::PayloadTooLarge,
                None,
                "the payload is 65537 bytes; the limit is 65536 (mqtt.max_payload)",
                None,
                None,
            ),
            (
                b"{\"id\":\"r\xff\"}",
                ErrorCode::NotUtf8,
                None,
                "the payload is not UTF-8: invalid byte at offset 8",
                None,
                None,
            ),
            (
                b"set a timer",
                ErrorCode::NotJson,
                None,
                "the payload is not JSON: expected value at line 1 column 1",
                None,
                None,
            ),
            (
                b"[1]",
                ErrorCode::NotObject,
                None,
                "the payload must be a JSON object, not an array",
                None,
                None,
            ),
            (
                b"{}",
                ErrorCode::MissingId,
                Some("/id"),
                "/id: is required",
                None,
                None,
            ),
            (
                br#"{"id":""}"#,
                ErrorCode::BadId,
                Some("/id"),
                "/id: must be 1 to 64 characters, got 0",
                None,
                None,
            ),
            (
                br#"{"id":7}"#,
                ErrorCode::BadId,
                Some("/id"),
                "/id: must be a string, not a number",
                None,
                None,
            ),
            (
                br#"{"id":"r"}"#,
                ErrorCode::MissingIntent,
                Some("/intent"),
                "/intent: is required",
                Some("r"),
                None,
            ),
            (
                br#"{"id":"r","intent":null}"#,
                ErrorCode::MissingIntent,
                Some("/intent"),
                "/intent: is required",
                Some("r"),
                None,
            ),
            (
                br#"{"id":"r","intent":""}"#,
                ErrorCode::BadIntent,
                Some("/intent"),
                "/intent: must not be empty",
                Some("r"),
                None,
            ),
            (
                br#"{"id":"r","intent":["x"]}"#,
                ErrorCode::BadIntent,
                Some("/intent"),
                "/intent: must be a string, not an array",
                Some("r"),
                None,
            ),
            (
                br#"{"id":"r","intent":"x","args":[]}"#,
                ErrorCode::BadArgs,
                Some("/args"),
                "/args: must be an object, not an array",
                Some("r"),
                Some("x"),
            ),
            (
                br#"{"id":"r","intent":"x","args":"a=1"}"#,
                ErrorCode::BadArgs,
                Some("/args"),
                "/args: must be an object, not a string",
                Some("r"),
                Some("x"),
            ),
            (
                br#"{"id":"r","intent":"x","text":5}"#,
                ErrorCode::BadText,
                Some("/text"),
                "/text: must be a string, not a number",
                Some("r"),
                Some("x"),
            ),
            (
                br#"{"id":"r","intent":"x","confidence":"high"}"#,
                ErrorCode::BadConfidence,
                Some("/confidence"),
                "/confidence: must be a number, not a string",
                Some("r"),
                Some("x"),
            ),
            (
                br#"{"id":"r","intent":"x","args":{"a":1},"confidence":true}"#,
                ErrorCode::BadConfidence,
                Some("/confidence"),
                "/confidence: must be a number, not a boolean",
                Some("r"),
                Some("x"),
            ),
        ];
        for (payload, code, pointer, message, id, intent) in cases {
            let Rejected { known, failure } = *decode("kitchen", payload, LIMIT).unwrap_err();
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(60)]).to_string();
            assert_eq!(failure.code, code, "{shown}");
            assert_eq!(failure.status, Status::Invalid, "{shown}");
            assert_eq!(failure.message, message, "{shown}");
            assert_eq!(
                failure.details.first().map(|v| v.pointer.as_str()),
                pointer,
                "{shown}"
            );
            assert_eq!(known.id.as_deref(), id, "{shown}");
            assert_eq!(known.intent.as_deref(), intent, "{shown}");
            assert_eq!(
                (known.satellite.as_str(), known.protocol),
                ("kitchen", Protocol::NATIVE)
            );
        }
        let Rejected { known, .. } = *decode(
            "k",
            br#"{"id":"r","intent":"x","args":{"a":1},"text":2}"#,
            LIMIT,
        )
        .unwrap_err();
        assert_eq!(
            known.args,
            json!({"a": 1}).as_object().cloned(),
            "args read before the bad field are audited"
        );
    }

    #[test]
    fn what_is_known_of_a_refused_payload_is_only_what_is_valid() {
        let known_of = |payload: &[u8]| known("kitchen", payload, 64);
        let k = known_of(br#"{"id":"r-1","intent":"timer.set"}"#);
        assert_eq!(
            (k.id.as_deref(), k.intent.as_deref()),
            (Some("r-1"), Some("timer.set"))
        );
        let k = known_of(br#"{"id":"","intent":7}"#);
        assert_eq!((k.id, k.intent), (None, None));
        let k = known_of(format!(r#"{{"id":"r-1","pad":"{}"}}"#, "x".repeat(64)).as_bytes());
        assert_eq!(k.id, None, "not read past max_payload");
        assert_eq!(known_of(b"\xff").id, None);
    }

    #[test]
    fn a_reply_is_published_as_the_protocol_documents_it() {
        let reply = Reply {
            id: None,
            intent: None,
            status: Status::Invalid,
            speech: None,
            data: None,
            error: Some(ErrorBody {
                code: ErrorCode::Schema,
                message: "m".into(),
                details: vec![Violation {
                    pointer: "/args/duration".into(),
                    message: "must be a string, not an integer".into(),
                }],
            }),
            audit: Some(88),
            elapsed_ms: Some(0.07),
            confirm: None,
        };
        let written: Value = serde_json::from_slice(&encode_reply(&reply)).unwrap();
        assert_eq!(
            written,
            json!({"id": null, "status": "invalid", "audit": 88, "elapsed_ms": 0.07,
                   "error": {"code": "schema", "message": "m",
                             "details": [{"pointer": "/args/duration",
                                          "message": "must be a string, not an integer"}]}})
        );
        assert_eq!(serde_json::from_value::<Reply>(written).unwrap(), reply);
    }
}
