//! The audit log: an append-only, hash-chained JSON Lines file with one record per request,
//! refusal, skill load, timer and error, and the verifier behind `hark audit verify`. An edited,
//! deleted or reordered line breaks the chain; the head file catches lines cut off the end.
//!
//! The records are also the leaves of a Merkle tree whose size and root the hub signs now and
//! then (a checkpoint) and publishes, so copies live off the hub's disk: a log cut short, or
//! rewritten and re-hashed by whoever can write the file, no longer matches a checkpoint kept
//! elsewhere, and the hub itself records a gap when its log no longer matches its own last one.
//!
//! Layout:
//! - `record`: [`Record`], the facts of one event
//! - `line`: one line of the file, its hash, and reading it back
//! - `chain`: [`AuditLog`], the one writer: open, resume after a crash, append, and hold the log
//!   against its last checkpoint ([`Gap`])
//! - `merkle`: RFC 6962 leaf and node hashes, the tree's right edge, inclusion proofs
//! - `checkpoint`: the hub's key, checkpoints as C2SP signed notes, [`CheckpointJob`]
//! - `proof`: `hark audit prove` and `verify --proof`
//! - `segments`: rotation into `<log>.1`, `<log>.2`, … by `audit.max_bytes`
//! - `tail`: the last complete line of a big log, read backwards
//! - `sync`: [`SyncJob`], fdatasync and the head file ([`head_path`]), off the hub's loop
//! - `verify`: [`verify`], which names the first broken record
//! - `shared`: [`Audit`], the log as the hub shares it
//! - `timestamp`: [`format_timestamp`], RFC 3339 in UTC
//! - `error`: [`AuditError`]

mod chain;
pub mod checkpoint;
mod error;
mod line;
pub mod merkle;
pub mod proof;
mod record;
pub mod segments;
mod shared;
mod sync;
mod tail;
#[cfg(test)]
mod test_util;
mod timestamp;
mod verify;

pub use chain::{AuditLog, GENESIS, Gap};
pub use checkpoint::CheckpointJob;
pub use error::AuditError;
pub use record::{Decision, Kind, Record};
pub use shared::Audit;
pub use sync::{SyncJob, head_path};
pub use timestamp::{civil_from_days, days_from_civil, format_timestamp};
pub use verify::{Checks, VerifyError, VerifyReport, verify, verify_with};

/// Requests can carry what people said at home: no world access.
const FILE_MODE: u32 = 0o640;
