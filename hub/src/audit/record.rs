//! What one audit record says. The log adds `seq`, `ts`, `prev` and `hash` when it writes it.

use serde::{Deserialize, Serialize};

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
    /// The hub found at start that its log does not hold what its last checkpoint says it did.
    Gap,
    /// A request a skill had the hub make (`net.http`).
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}
