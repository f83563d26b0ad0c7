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
    /// A sensitive skill waits for a yes (`Reply::confirm` says how to give it).
    Confirm,
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
            Status::Confirm => "confirm",
        }
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Declares [`ErrorCode`]: each code with its wire string and the status a
/// failure with that code has.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal => $status:ident,)*) => {
        /// A failure's stable, machine-readable code (`error.code`): every code
        /// the hub and its built-in skills give, and [`ErrorCode::Skill`] for a
        /// code a WebAssembly skill chose for itself. On the wire it is the
        /// code's string (docs/protocol.md §5.2, §5.3), so matching on the
        /// enum, not on strings, makes a misspelt code a compile error.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code a WebAssembly skill returned (`{"error": {"code": ...}}`).
            Skill(String),
        }

        impl ErrorCode {
            /// Every code of the hub's own, in the order the protocol doc lists them.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                    ErrorCode::Skill(code) => code,
                }
            }

            /// The reply status that goes with the code.
            pub fn status(&self) -> Status {
                match self {
                    $(ErrorCode::$variant => Status::$status,)*
                    ErrorCode::Skill(_) => Status::Error,
                }
            }

            /// The code a wire string names; an unknown one is a skill's own.
            pub fn parse(text: &str) -> ErrorCode {
                match text {
                    $($text => ErrorCode::$variant,)*
                    other => ErrorCode::Skill(String::from(other)),
                }
            }
        }
    };
}

error_codes! {
    /// The satellite id breaks the rules (1–64 of `[A-Za-z0-9_-]`).
    BadSatellite = "bad_satellite" => Invalid,
    /// Arrived while the hub drains at shutdown.
    ShuttingDown = "shutting_down" => Busy,
    /// The request queue, or this satellite's share of it, is full.
    Busy = "busy" => Busy,
    /// The request is over `mqtt.max_payload`.
    PayloadTooLarge = "payload_too_large" => Invalid,
    NotUtf8 = "not_utf8" => Invalid,
    NotJson = "not_json" => Invalid,
    NotObject = "not_object" => Invalid,
    MissingId = "missing_id" => Invalid,
    BadId = "bad_id" => Invalid,
    MissingIntent = "missing_intent" => Invalid,
    BadIntent = "bad_intent" => Invalid,
    BadArgs = "bad_args" => Invalid,
    BadText = "bad_text" => Invalid,
    BadConfidence = "bad_confidence" => Invalid,
    /// Wyoming only: an event that breaks the framing or is not one the hub takes.
    BadEvent = "bad_event" => Invalid,
    UnknownIntent = "unknown_intent" => UnknownIntent,
    /// Hermes only: Rhasspy recognized no intent.
    NotRecognized = "not_recognized" => UnknownIntent,
    /// The policy gate refuses.
    Denied = "denied" => Denied,
    /// A WebAssembly skill of that name is installed but was refused at load.
    NotLoaded = "not_loaded" => Denied,
    /// `args` fail the skill's schema.
    Schema = "schema" => Invalid,
    Timeout = "timeout" => Timeout,
    Trap = "trap" => Error,
    BadOutput = "bad_output" => Error,
    Cancelled = "cancelled" => Error,
    Limit = "limit" => Error,
    /// The hub hit a bug (a panic) while handling the request.
    Internal = "internal" => Error,
    NoSandbox = "no_sandbox" => Error,
    WorkerLost = "worker_lost" => Error,
    /// A skill found an argument that passed the schema unusable.
    BadArg = "bad_arg" => Invalid,
    TooManyTimers = "too_many_timers" => Error,
    /// Several timers could be meant; the speech asks which ("Which timer:
    /// pasta or tea?").
    AmbiguousTimer = "ambiguous_timer" => Invalid,
    /// `system.confirm` with nothing of this satellite's waiting (none asked,
    /// already answered, expired, or another satellite's token).
    NoConfirmation = "no_confirmation" => Invalid,
    /// The satellite has no timer of that label, or none at all.
    NoTimer = "no_timer" => Invalid,
    /// The timer is already as asked: pausing a paused one, resuming a running one.
    TimerState = "timer_state" => Invalid,
    /// The timers could not be saved.
    Storage = "storage" => Error,
    SoundUnplayable = "sound_unplayable" => Error,
    Speaker = "speaker" => Error,
    /// Internal: a sound name the host cannot use; reported as `bad_arg`.
    BadSound = "bad_sound" => Invalid,
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&text))
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
    pub code: ErrorCode,
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
    /// With `status: "confirm"`: how to say yes (`system.confirm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<ConfirmBody>,
}

/// A question waiting for its answer: `system.confirm` with this `token`
/// (or none: the satellite's newest) within `expires_s` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmBody {
    pub token: String,
    pub expires_s: u64,
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
                code: ErrorCode::NotJson,
                message: "payload is not JSON".to_string(),
                details: Vec::new(),
            }),
            audit: Some(7),
            elapsed_ms: None,
            confirm: None,
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
            (Status::Confirm, "confirm"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(name));
            assert_eq!(status.as_str(), name);
        }
    }

    #[test]
    fn error_codes_are_their_wire_strings_both_ways() {
        for code in ErrorCode::ALL {
            let text = serde_json::to_value(code).unwrap();
            assert_eq!(text, json!(code.as_str()));
            assert_eq!(&serde_json::from_value::<ErrorCode>(text).unwrap(), code);
        }
        let skill: ErrorCode = serde_json::from_value(json!("no_sides")).unwrap();
        assert_eq!(skill, ErrorCode::Skill("no_sides".to_string()));
        assert_eq!(serde_json::to_value(&skill).unwrap(), json!("no_sides"));
        assert_eq!(skill.status(), Status::Error);
        assert_eq!(ErrorCode::NotRecognized.status(), Status::UnknownIntent);
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
