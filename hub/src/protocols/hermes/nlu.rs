//! What the hub reads from Rhasspy: `NluIntent` (on `hermes/intent/<name>`)
//! and the parts of any Hermes message needed to answer it ([`Envelope`]).
//!
//! Field names are rhasspy-hermes's camelCase. Decoding is strict about the
//! fields the hub uses (each problem names its JSON pointer in the payload)
//! and ignores the rest (`asrTokens`, `wakewordId`, `lang`, ...), since
//! Rhasspy versions add fields.

use hark_skill_sdk::ErrorCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::request::kind_of;

/// Rhasspy's site id when a message names none.
pub const DEFAULT_SITE: &str = "default";

/// Why a payload is not a usable NluIntent. `code` is one of the native
/// protocol's codes (docs/protocol.md §5.2), `pointer` is into the Hermes
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: ErrorCode,
    pub pointer: String,
    pub message: String,
}

impl Problem {
    pub fn new(code: ErrorCode, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            code,
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// One recognized slot: `{"entity", "slotName", "value": {"kind", "value"}, "rawValue"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub entity: Option<String>,
    pub slot_name: Option<String>,
    /// The whole `value` object (`{"kind": "Number", "value": 5}`).
    pub value: Map<String, Value>,
    pub raw_value: Option<String>,
}

impl Slot {
    /// The key the slot gets in `args`: `slotName`, else `entity`.
    pub fn name(&self) -> &str {
        self.slot_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.entity.as_deref())
            .unwrap_or_default()
    }
}

/// `hermes/intent/<intentName>`, the NLU's result.
#[derive(Debug, Clone, PartialEq)]
pub struct NluIntent {
    /// What was said (`input`); rhasspy-hermes always writes it.
    pub input: Option<String>,
    pub intent_name: String,
    pub confidence_score: Option<f64>,
    pub slots: Vec<Slot>,
    /// `siteId` as sent; [`DEFAULT_SITE`] when absent.
    pub site_id: String,
    /// `sessionId`; absent without a dialogue manager.
    pub session_id: Option<String>,
    /// `customData`, kept as it came (a string in rhasspy-hermes) to give back.
    pub custom_data: Value,
}

/// `None` for absent or `null`; the string; or a problem naming the type.
fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    pointer: &str,
    code: ErrorCode,
) -> Result<Option<String>, Problem> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Problem::new(
            code,
            pointer,
            format!("must be a string, not {}", kind_of(other)),
        )),
    }
}

impl NluIntent {
    pub fn from_value(value: &Value) -> Result<NluIntent, Problem> {
        let Value::Object(map) = value else {
            return Err(Problem::new(
                ErrorCode::NotObject,
                "",
                format!("an NluIntent must be a JSON object, not {}", kind_of(value)),
            ));
        };
        let intent = match map.get("intent") {
            None | Some(Value::Null) => {
                return Err(Problem::new(
                    ErrorCode::MissingIntent,
                    "/intent",
                    "is required (an object with intentName)",
                ));
            }
            Some(Value::Object(intent)) => intent,
            Some(other) => {
                return Err(Problem::new(
                    ErrorCode::BadIntent,
                    "/intent",
                    format!("must be an object with intentName, not {}", kind_of(other)),
                ));
            }
        };
        let intent_name = match optional_string(
            intent,
            "intentName",
            "/intent/intentName",
            ErrorCode::BadIntent,
        )? {
            Some(name) if !name.is_empty() => name,
            Some(_) => {
                return Err(Problem::new(
                    ErrorCode::BadIntent,
                    "/intent/intentName",
                    "must not be empty",
                ));
            }
            None => {
                return Err(Problem::new(
                    ErrorCode::MissingIntent,
                    "/intent/intentName",
                    "is required",
                ));
            }
        };
        let confidence_score = match intent.get("confidenceScore") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(Problem::new(
                    ErrorCode::BadConfidence,
                    "/intent/confidenceScore",
                    format!("must be a number, not {}", kind_of(other)),
                ));
            }
        };
        let input = optional_string(map, "input", "/input", ErrorCode::BadText)?;
        let site_id = optional_string(map, "siteId", "/siteId", ErrorCode::BadSatellite)?
            .unwrap_or_else(|| DEFAULT_SITE.to_string());
        let session_id = optional_string(map, "sessionId", "/sessionId", ErrorCode::BadId)?;
        let slots = match map.get("slots") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| decode_slot(i, item))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(Problem::new(
                    ErrorCode::BadArgs,
                    "/slots",
                    format!("must be an array of slots, not {}", kind_of(other)),
                ));
            }
        };
        Ok(NluIntent {
            input,
            intent_name,
            confidence_score,
            slots,
            site_id,
            session_id,
            custom_data: map.get("customData").cloned().unwrap_or(Value::Null),
        })
    }

    /// The message as rhasspy-hermes writes it: every optional field present,
    /// `null` when unset.
    pub fn to_value(&self) -> Value {
        let slots: Vec<Value> = self
            .slots
            .iter()
            .map(|s| {
                json!({
                    "entity": s.entity, "value": s.value, "slotName": s.slot_name,
                    "rawValue": s.raw_value, "confidence": 1.0, "range": null,
                })
            })
            .collect();
        json!({
            "input": self.input,
            "intent": {"intentName": self.intent_name, "confidenceScore": self.confidence_score},
            "siteId": self.site_id,
            "id": null,
            "slots": slots,
            "sessionId": self.session_id,
            "customData": self.custom_data,
            "asrTokens": null, "asrConfidence": null, "rawInput": null,
            "wakewordId": null, "lang": null,
        })
    }
}

fn decode_slot(i: usize, item: &Value) -> Result<Slot, Problem> {
    let at = format!("/slots/{i}");
    let Value::Object(slot) = item else {
        return Err(Problem::new(
            ErrorCode::BadArgs,
            &at,
            format!("a slot must be an object, not {}", kind_of(item)),
        ));
    };
    let entity = optional_string(slot, "entity", &format!("{at}/entity"), ErrorCode::BadArgs)?;
    let slot_name = optional_string(
        slot,
        "slotName",
        &format!("{at}/slotName"),
        ErrorCode::BadArgs,
    )?;
    let raw_value = optional_string(
        slot,
        "rawValue",
        &format!("{at}/rawValue"),
        ErrorCode::BadArgs,
    )?;
    let value = match slot.get("value") {
        Some(Value::Object(value)) => value.clone(),
        None | Some(Value::Null) => {
            return Err(Problem::new(
                ErrorCode::BadArgs,
                format!("{at}/value"),
                "is required (an object with a value key)",
            ));
        }
        Some(other) => {
            return Err(Problem::new(
                ErrorCode::BadArgs,
                format!("{at}/value"),
                format!("must be an object with a value key, not {}", kind_of(other)),
            ));
        }
    };
    let slot = Slot {
        entity,
        slot_name,
        value,
        raw_value,
    };
    if slot.name().is_empty() {
        return Err(Problem::new(
            ErrorCode::BadArgs,
            at,
            "a slot needs a slotName or an entity to name it",
        ));
    }
    Ok(slot)
}

/// What is needed to answer a Hermes message, recovered from whatever part
/// of it is readable.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// `siteId` as sent ([`DEFAULT_SITE`] when absent); `None` when it is not a string.
    pub site_id: Option<String>,
    pub session_id: Option<String>,
    pub custom_data: Value,
}

impl Envelope {
    /// From a decoded payload, however wrong the rest of it is.
    pub fn of(value: &Value) -> Envelope {
        let Value::Object(map) = value else {
            return Envelope::default();
        };
        let site_id = match map.get("siteId") {
            None | Some(Value::Null) => Some(DEFAULT_SITE.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        Envelope {
            site_id,
            session_id: map
                .get("sessionId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from),
            custom_data: map.get("customData").cloned().unwrap_or(Value::Null),
        }
    }

    /// From bytes the hub will not otherwise read (too large, not UTF-8):
    /// only `siteId` and `sessionId`; serde skips every other field without
    /// keeping it. `customData` is not given back from such a payload.
    pub fn skim(payload: &[u8]) -> Envelope {
        #[derive(Deserialize)]
        struct Skim {
            #[serde(rename = "siteId", default)]
            site_id: Option<Value>,
            #[serde(rename = "sessionId", default)]
            session_id: Option<Value>,
        }
        let text = String::from_utf8_lossy(payload);
        let Ok(skim) = serde_json::from_str::<Skim>(&text) else {
            return Envelope::default();
        };
        let mut map = Map::new();
        for (key, value) in [("siteId", skim.site_id), ("sessionId", skim.session_id)] {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        }
        Envelope {
            custom_data: Value::Null,
            ..Envelope::of(&Value::Object(map))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As rhasspy-hermes 0.6.2 writes it (`NluIntent(...).to_json()`).
    const FROM_RHASSPY: &str = r#"{"input": "set a pasta timer for five minutes", "intent": {"intentName": "SetTimer", "confidenceScore": 1.0}, "siteId": "kitchen", "id": null, "slots": [{"entity": "duration", "value": {"kind": "Unknown", "value": "five minutes"}, "slotName": "duration", "rawValue": "five minutes", "confidence": 0.0, "range": null}, {"entity": "label", "value": {"kind": "Unknown", "value": "pasta"}, "slotName": "label", "rawValue": "pasta", "confidence": 0.0, "range": null}], "sessionId": "s-1", "customData": "cd", "asrTokens": null, "asrConfidence": null, "rawInput": null, "wakewordId": null, "lang": null}"#;

    fn decode(text: &str) -> Result<NluIntent, Problem> {
        NluIntent::from_value(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn an_nlu_intent_written_by_rhasspy_hermes_decodes() {
        let nlu = decode(FROM_RHASSPY).unwrap();
        assert_eq!(nlu.intent_name, "SetTimer");
        assert_eq!(nlu.site_id, "kitchen");
        assert_eq!(nlu.session_id.as_deref(), Some("s-1"));
        assert_eq!(
            nlu.input.as_deref(),
            Some("set a pasta timer for five minutes")
        );
        assert_eq!(nlu.confidence_score, Some(1.0));
        assert_eq!(nlu.custom_data, json!("cd"));
        assert_eq!(nlu.slots.len(), 2);
        assert_eq!(nlu.slots[1].name(), "label");
        assert_eq!(nlu.slots[0].value["value"], "five minutes");
    }

    #[test]
    fn encoding_then_decoding_gives_the_same_intent() {
        let nlu = decode(FROM_RHASSPY).unwrap();
        assert_eq!(NluIntent::from_value(&nlu.to_value()).unwrap(), nlu);
        let bare = NluIntent {
            input: None,
            intent_name: "Stop".into(),
            confidence_score: None,
            slots: vec![],
            site_id: DEFAULT_SITE.into(),
            session_id: None,
            custom_data: Value::Null,
        };
        assert_eq!(NluIntent::from_value(&bare.to_value()).unwrap(), bare);
    }

    #[test]
    fn absent_optional_fields_take_rhasspy_defaults() {
        let nlu = decode(r#"{"input": "stop", "intent": {"intentName": "Stop"}}"#).unwrap();
        assert_eq!(nlu.site_id, "default");
        assert_eq!(nlu.session_id, None);
        assert!(nlu.slots.is_empty());
        assert_eq!(nlu.custom_data, Value::Null);
    }

    #[test]
    fn a_slot_without_slot_name_is_named_by_its_entity() {
        let nlu = decode(
            r#"{"input": "x", "intent": {"intentName": "A"},
                "slots": [{"entity": "colour", "value": {"value": "red"}}]}"#,
        )
        .unwrap();
        assert_eq!(nlu.slots[0].name(), "colour");
    }

    #[test]
    fn each_bad_field_is_named_by_its_pointer() {
        for (text, code, pointer) in [
            (r#"[1]"#, "not_object", ""),
            (r#"{"input": "x"}"#, "missing_intent", "/intent"),
            (r#"{"intent": "SetTimer"}"#, "bad_intent", "/intent"),
            (r#"{"intent": {}}"#, "missing_intent", "/intent/intentName"),
            (
                r#"{"intent": {"intentName": ""}}"#,
                "bad_intent",
                "/intent/intentName",
            ),
            (
                r#"{"intent": {"intentName": 7}}"#,
                "bad_intent",
                "/intent/intentName",
            ),
            (
                r#"{"intent": {"intentName": "A", "confidenceScore": "high"}}"#,
                "bad_confidence",
                "/intent/confidenceScore",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "input": 5}"#,
                "bad_text",
                "/input",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "siteId": 5}"#,
                "bad_satellite",
                "/siteId",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "sessionId": []}"#,
                "bad_id",
                "/sessionId",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "slots": {}}"#,
                "bad_args",
                "/slots",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "slots": ["x"]}"#,
                "bad_args",
                "/slots/0",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "slots": [{"entity": "d", "value": 5}]}"#,
                "bad_args",
                "/slots/0/value",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "slots": [{"entity": "d"}]}"#,
                "bad_args",
                "/slots/0/value",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "slots": [{"value": {"value": 1}}]}"#,
                "bad_args",
                "/slots/0",
            ),
            (
                r#"{"intent": {"intentName": "A"}, "slots": [{"entity": 3, "value": {"value": 1}}]}"#,
                "bad_args",
                "/slots/0/entity",
            ),
        ] {
            let problem = decode(text).unwrap_err();
            assert_eq!(
                (problem.code.as_str(), problem.pointer.as_str()),
                (code, pointer),
                "{text}"
            );
            assert!(!problem.message.is_empty());
        }
    }

    #[test]
    fn the_envelope_survives_a_broken_intent() {
        let envelope = Envelope::of(
            &serde_json::from_str(
                r#"{"siteId": "hall", "sessionId": "s-9", "customData": {"a": 1}, "intent": 3}"#,
            )
            .unwrap(),
        );
        assert_eq!(envelope.site_id.as_deref(), Some("hall"));
        assert_eq!(envelope.session_id.as_deref(), Some("s-9"));
        assert_eq!(envelope.custom_data, json!({"a": 1}));
        assert_eq!(
            Envelope::of(&json!({"siteId": 4})).site_id,
            None,
            "a site that is not a string cannot be spoken to"
        );
        assert_eq!(Envelope::of(&json!({})).site_id.as_deref(), Some("default"));
    }

    #[test]
    fn skimming_finds_the_session_in_huge_or_mangled_payloads() {
        let huge = format!(
            r#"{{"input": "{}", "sessionId": "s-big", "siteId": "hall", "customData": "x"}}"#,
            "a".repeat(1 << 20)
        );
        let envelope = Envelope::skim(huge.as_bytes());
        assert_eq!(envelope.session_id.as_deref(), Some("s-big"));
        assert_eq!(envelope.site_id.as_deref(), Some("hall"));
        assert_eq!(envelope.custom_data, Value::Null, "not given back");

        let mut mangled = br#"{"input": "caf"#.to_vec();
        mangled.extend_from_slice(&[0xff, 0xfe]);
        mangled.extend_from_slice(br#"", "sessionId": "s-bytes"}"#);
        assert_eq!(
            Envelope::skim(&mangled).session_id.as_deref(),
            Some("s-bytes")
        );
        assert_eq!(Envelope::skim(b"{not json").session_id, None);
    }
}
