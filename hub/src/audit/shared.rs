//! The log as the hub shares it between the dispatcher and its services.

use super::{AuditLog, Record, SyncJob};

/// The log as the hub shares it between the dispatcher and its services.
/// A failing disk is logged loudly but never fails the request that was
/// being audited: a household's timer matters more than its paper trail.
#[derive(Debug)]
pub struct Audit {
    log: std::sync::Mutex<AuditLog>,
}

impl Audit {
    pub fn new(log: AuditLog) -> std::sync::Arc<Audit> {
        std::sync::Arc::new(Audit {
            log: std::sync::Mutex::new(log),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuditLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `record`; its seq, or `None` when the log could not be written.
    pub fn record(&self, record: &Record) -> Option<u64> {
        match self.lock().append(record) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::error!("audit log: {e}");
                None
            }
        }
    }

    /// fdatasync the log and refresh its head file.
    pub fn sync(&self) {
        if let Err(e) = self.lock().sync() {
            tracing::error!("audit log: {e}");
        }
    }

    /// Like [`Audit::sync`], but hands the disk work back as a job to run
    /// off the hub's loop (and off the lock).
    pub fn sync_job(&self) -> Option<SyncJob> {
        match self.lock().prepare_sync() {
            Ok(job) => job,
            Err(e) => {
                tracing::error!("audit log: {e}");
                None
            }
        }
    }
}
