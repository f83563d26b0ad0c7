//! The log as the hub shares it between the dispatcher and its services.

use super::{AuditLog, CheckpointJob, Gap, Record, SyncJob};

/// The log as the hub shares it between the dispatcher and its services.
/// A failing disk is logged loudly but never fails the request that was
/// being audited: a household's timer matters more than its paper trail.
#[derive(Debug)]
pub struct Audit {
    log: std::sync::Mutex<AuditLog>,
    /// Records between checkpoints.
    every: u64,
    /// Woken when `every` records were written since the last checkpoint.
    due: tokio::sync::Notify,
    /// Held while syncing and checkpointing: two syncs at once race on the head file's rename,
    /// and a checkpoint prepared later must not be appended before one prepared earlier.
    disk: std::sync::Mutex<()>,
}

impl Audit {
    pub fn new(log: AuditLog) -> std::sync::Arc<Audit> {
        Audit::with_checkpoints(log, u64::MAX)
    }

    /// Wakes [`Audit::checkpoint_due`] every `every` records.
    pub fn with_checkpoints(log: AuditLog, every: u64) -> std::sync::Arc<Audit> {
        std::sync::Arc::new(Audit {
            log: std::sync::Mutex::new(log),
            every,
            due: tokio::sync::Notify::new(),
            disk: std::sync::Mutex::new(()),
        })
    }

    /// Resolves when enough records wait for a checkpoint.
    pub async fn checkpoint_due(&self) {
        self.due.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuditLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `record`; its seq, or `None` when the log could not be written.
    pub fn record(&self, record: &Record) -> Option<u64> {
        let mut log = self.lock();
        match log.append(record) {
            Ok(seq) => {
                if log.since_checkpoint() >= self.every {
                    self.due.notify_one();
                }
                Some(seq)
            }
            Err(e) => {
                tracing::error!("audit log: {e}");
                None
            }
        }
    }

    /// fdatasync the log and refresh its head file.
    pub fn sync(&self) {
        let _disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.lock().sync() {
            tracing::error!("audit log: {e}");
        }
    }

    /// Syncs the log, then (when `checkpoint`) signs and appends a checkpoint of the same
    /// records; the signed note when one was written. Blocks on the disk: run it off the hub's
    /// loop. Appends go on meanwhile: the log's lock is held only to take the jobs.
    pub fn write_out(&self, checkpoint: bool) -> Option<String> {
        let _disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
        let (sync, checkpoint) = self.jobs(checkpoint);
        if let Some(job) = sync
            && let Err(e) = job.run()
        {
            // A checkpoint must not name records that may not be on the disk.
            tracing::error!("audit log: {e}");
            return None;
        }
        match checkpoint?.run() {
            Ok(note) => Some(note),
            Err(e) => {
                tracing::error!("audit log: {e}");
                None
            }
        }
    }

    fn jobs(&self, checkpoint: bool) -> (Option<SyncJob>, Option<CheckpointJob>) {
        let mut log = self.lock();
        let sync = log.prepare_sync().unwrap_or_else(|e| {
            tracing::error!("audit log: {e}");
            None
        });
        // After the sync job took the full file's descriptor, which makes it durable.
        if let Err(e) = log.rotate_if_full() {
            tracing::error!("audit log: {e}");
        }
        let checkpoint = if checkpoint {
            log.prepare_checkpoint()
        } else {
            None
        };
        (sync, checkpoint)
    }

    /// Records appended since the last sync.
    pub fn unsynced(&self) -> bool {
        self.lock().is_dirty()
    }

    /// Records written since the last checkpoint.
    pub fn since_checkpoint(&self) -> u64 {
        self.lock().since_checkpoint()
    }

    /// The seq of the first `gap` record, if the log has one.
    pub fn broken_since(&self) -> Option<u64> {
        self.lock().broken_since()
    }

    /// The seq of the last record written (0: none).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq()
    }

    /// A gap recorded since the last call, for the hub to raise its alarm.
    pub fn take_gap(&self) -> Option<Gap> {
        self.lock().take_gap()
    }
}
