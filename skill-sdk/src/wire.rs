//! Wire types: what a satellite sends, what a skill gets, what comes back.

use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An intent as a skill receives it: the request with validated `args`, and the
/// satellite it came from (taken from the MQTT topic, never the payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    pub id: String,
    pub intent: String,
    #[serde(default)]
    pub args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    pub satellite: String,
}

/// What a skill answers on success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SkillReply {
    /// What the satellite should say; `None` when the skill's effect speaks for
    /// itself (a sound starting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<String>,
    /// Machine-readable result for UIs and automations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl SkillReply {
    pub fn speech(speech: impl Into<String>) -> SkillReply {
        SkillReply {
            speech: Some(speech.into()),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> SkillReply {
        self.data = Some(data);
        self
    }
}

/// The outcome of one request, as the SPEC names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Invalid,
    UnknownIntent,
    Denied,
    Timeout,
    Error,
    Busy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Invalid => "invalid",
            Status::UnknownIntent => "unknown_intent",
            Status::Denied => "denied",
            Status::Timeout => "timeout",
            Status::Error => "error",
            Status::Busy => "busy",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One schema violation: where in `args` (a JSON pointer) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code (`not_json`, `schema`, `denied`, ...).
    pub code: String,
    /// A sentence for a person: what was wrong and what to do.
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Violation>,
}

/// The reply on `<prefix>/reply/<sat>`: exactly one per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id; `null` when the payload had no usable id.
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// Sequence number of this request's audit record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use serde_json::json;

    #[test]
    fn reply_without_id_serializes_id_as_null() {
        let reply = Reply {
            id: None,
            intent: None,
            status: Status::Invalid,
            speech: None,
            data: None,
            error: Some(ErrorBody {
                code: "not_json".to_string(),
                message: "payload is not JSON".to_string(),
                details: Vec::new(),
            }),
            audit: Some(7),
            elapsed_ms: None,
        };
        let value = serde_json::to_value(&reply).unwrap();
        assert_eq!(
            value,
            json!({"id": null, "status": "invalid", "audit": 7,
                   "error": {"code": "not_json", "message": "payload is not JSON"}})
        );
    }

    #[test]
    fn status_names_match_the_spec() {
        for (status, name) in [
            (Status::Ok, "ok"),
            (Status::Invalid, "invalid"),
            (Status::UnknownIntent, "unknown_intent"),
            (Status::Denied, "denied"),
            (Status::Timeout, "timeout"),
            (Status::Error, "error"),
            (Status::Busy, "busy"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn intent_round_trips() {
        let intent: Intent = serde_json::from_value(json!({
            "id": "r-1", "intent": "timer.set", "args": {"duration": "5m"},
            "satellite": "kitchen"
        }))
        .unwrap();
        assert_eq!(intent.args["duration"], json!("5m"));
        let back = serde_json::to_value(&intent).unwrap();
        assert_eq!(back["satellite"], json!("kitchen"));
        assert!(back.get("text").is_none());
    }
}
