//! What can go wrong writing the log, said so that a person knows what to do.

use std::io;
use std::path::{Path, PathBuf};

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
    #[error("the hub's signing key {}: {reason}", .path.display())]
    Key { path: PathBuf, reason: String },
    #[error("cannot encode an audit record: {0}")]
    Encode(serde_json::Error),
}

impl AuditError {
    pub(super) fn io<'a>(
        path: &'a Path,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> AuditError + 'a {
        move |error| AuditError::Io {
            path: path.to_owned(),
            action,
            error,
        }
    }
}
