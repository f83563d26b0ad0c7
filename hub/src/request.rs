//! The hub's own request, whatever protocol brought it: each adapter decodes
//! its wire format once into a [`Request`] (or a [`Rejected`]: what it could
//! read, and why the request cannot run), and the dispatcher runs it. Also
//! [`Failure`], why a request did not succeed, before it becomes a reply.

use hark_skill_sdk::{ErrorCode, Intent, Status, Violation};
use serde_json::{Map, Value};

use crate::events::Protocol;

/// Longest request id (SPEC §2).
pub const MAX_ID_LEN: usize = 64;

/// One request to run a skill.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// 1 to [`MAX_ID_LEN`] characters; echoed in the reply.
    pub id: String,
    /// The skill asked for (not empty).
    pub intent: String,
    pub args: Map<String, Value>,
    /// The utterance, for skills that want it; never audited.
    pub text: Option<String>,
    pub confidence: Option<f64>,
    /// Who asked: a valid satellite id (1–64 of `[A-Za-z0-9_-]`).
    pub satellite: String,
    /// How it asked: where its answer and later events (a timer ringing) go.
    pub protocol: Protocol,
}

impl Request {
    /// What the skill is handed: the request without its route.
    pub fn into_intent(self) -> Intent {
        Intent {
            id: self.id,
            intent: self.intent,
            args: self.args,
            text: self.text,
            confidence: self.confidence,
            satellite: self.satellite,
        }
    }
}

/// What is known of a request that will not run (unreadable, busy, shutting
/// down, a bug while running it), for its reply and audit record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Known {
    /// As the audit record names it; not necessarily a valid id.
    pub satellite: String,
    pub protocol: Protocol,
    /// Kept in the reply only when it is a valid request id.
    pub id: Option<String>,
    pub intent: Option<String>,
    pub args: Option<Map<String, Value>>,
}

impl Known {
    pub fn new(satellite: &str, protocol: Protocol) -> Known {
        Known {
            satellite: satellite.to_string(),
            protocol,
            ..Known::default()
        }
    }

    /// All of `request`, for refusing it after all.
    pub fn of(request: &Request) -> Known {
        Known {
            satellite: request.satellite.clone(),
            protocol: request.protocol,
            id: Some(request.id.clone()),
            intent: Some(request.intent.clone()),
            args: Some(request.args.clone()),
        }
    }
}

/// A request that could not be decoded: what was read of it, and why not.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub known: Known,
    pub failure: Failure,
}

/// Why a request did not succeed, before it becomes a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: Status,
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<Violation>,
    /// Words for the satellite to say, when the failure is a question or an
    /// answer a person should hear ("Which timer?").
    pub speech: Option<String>,
}

impl Failure {
    /// A failure with `code`, and the status that goes with it.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            status: code.status(),
            code,
            message: message.into(),
            details: Vec::new(),
            speech: None,
        }
    }

    /// An invalid field of the request: `"<pointer>: <message>"`, with the
    /// violation at `pointer` (into the request as its protocol sent it).
    pub fn invalid_at(code: ErrorCode, pointer: &str, message: impl Into<String>) -> Failure {
        let message = message.into();
        Failure {
            status: Status::Invalid,
            code,
            message: format!("{pointer}: {message}"),
            details: vec![Violation {
                pointer: pointer.to_string(),
                message,
            }],
            speech: None,
        }
    }
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_LEN
}

/// `a string`, `an object`, ...: a JSON value's type in words.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
