//! Timers: a pure table ([`table`]), its files ([`store`]), and the service
//! that changes them, keeps them on disk and rings them when they come due
//! ([`TimerService`]).
//!
//! Timers are kept in wall-clock milliseconds so they survive a restart, and
//! a timer that came due while the hub was down rings at start, marked late.
//! A change is made in memory at once and written by the service's own
//! thread, which appends it to the journal and fsyncs, many changes to one
//! fsync when they come together; whoever made the change waits for that
//! ([`Ticket`]) before answering, so every timer a reply speaks of is on
//! disk, and no change costs the hub's loop a disk write. Events about a
//! change (`timer_started`, `timer_updated`, `timer_cancelled`) go out once
//! it is on disk, and with them the satellite's whole list of timers
//! ([`Outbox::timers`], retained on `hark/timers/<sat>`); a change that
//! cannot be written is undone and its request told so.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hark_skills_builtin::TimerView;
use hark_skills_builtin::duration::speak_duration;
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::audit::{self, Audit};
use crate::events::{Event, Outbox, Protocol};

pub(crate) mod store;
pub(crate) mod table;

pub use store::TimerStoreError;
pub use table::{Saved, Timer, TimerError, TimerLimits, TimerTable, Update, UpdateError};

use store::{Change, Files};

/// A timer ringing this much after its due time is announced as late (so is
/// any timer that came due while the hub was down).
pub const LATE_AFTER_MS: u64 = 2_000;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The timers saved in `state_dir` (snapshot and journal), as the next start
/// of the hub will read them.
pub fn saved(state_dir: &Path) -> Result<Saved, TimerStoreError> {
    store::load(state_dir).map(|table| table.saved())
}

/// What the service does when a timer rings, besides the event: the hub
/// plays its alarm.
pub trait Ringer: Send + Sync {
    fn ring(&self, timer: &Timer);
}

/// A change waiting to be on disk; [`TimerService::settled`] says when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// What a queued change did, to announce it once written or undo it if not.
#[derive(Debug)]
enum Done {
    Started(Timer),
    Cancelled(Timer),
    /// A timer paused, resumed or shifted: as it was (to undo) and as it is.
    Updated {
        before: Timer,
        after: Timer,
    },
    /// A timer that rang and was forgotten: nothing to announce, nothing to
    /// undo (it may ring again after a restart, which beats never).
    Rang,
}

impl Done {
    /// The satellite whose timers the change is about, when a reply may
    /// speak of it.
    fn satellite(&self) -> Option<&str> {
        match self {
            Done::Started(t) | Done::Cancelled(t) | Done::Updated { after: t, .. } => {
                Some(&t.satellite)
            }
            Done::Rang => None,
        }
    }
}

/// Changes made in memory and not yet written.
#[derive(Debug, Default)]
struct Queue {
    lines: Vec<u8>,
    done: Vec<Done>,
    /// Ticket of the newest queued change.
    queued: u64,
    /// Ticket of the newest queued change of each satellite with changes
    /// not yet settled (older entries are dropped as changes are queued).
    newest: HashMap<String, u64>,
    /// Every change up to this one is written, or failed.
    settled: u64,
    /// Recent failed ranges of tickets, with why (a few are kept).
    failed: VecDeque<(u64, u64, String)>,
    stop: bool,
    /// The writer waits for work: a change must wake it. While it writes,
    /// it takes what was queued meanwhile without being woken.
    writer_idle: bool,
}

const FAILURES_KEPT: usize = 16;

/// When the last write carried more than one change, changes are coming
/// faster than fsyncs finish: the writer waits this long for more, so that
/// one fsync covers them. A lone change (a household's) is written at once.
const GROUP_COMMIT_WAIT: Duration = Duration::from_micros(500);

struct Inner {
    table: Mutex<TimerTable>,
    queue: Mutex<Queue>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes blocking waiters (skill workers).
    written: Condvar,
    /// Tells async waiters how far changes are settled.
    settled_tx: watch::Sender<u64>,
    outbox: Outbox,
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, TimerTable> {
        // Every change is a few map operations that cannot fail halfway, so
        // a poisoned lock still guards a good table.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one change for the writer (the table lock is held by the
    /// caller, so changes are queued in the order they were made).
    fn push(&self, change: &Change, done: Done) -> Ticket {
        let mut queue = self.queue();
        queue.lines.extend(change.line());
        queue.queued += 1;
        let ticket = Ticket(queue.queued);
        if let Some(satellite) = done.satellite() {
            let settled = queue.settled;
            queue.newest.retain(|_, t| *t > settled);
            queue.newest.insert(satellite.to_string(), ticket.0);
        }
        queue.done.push(done);
        let wake = std::mem::take(&mut queue.writer_idle);
        drop(queue);
        if wake {
            self.work.notify_one();
        }
        ticket
    }

    /// Hands the current list of each of `satellites`' timers to the
    /// outbox. The caller holds the table lock, so lists go out in the
    /// order the table changed and a newer one is never overtaken.
    fn publish_lists(&self, table: &TimerTable, satellites: &[String]) {
        let now = now_ms();
        let mut done: Vec<&str> = Vec::new();
        for satellite in satellites {
            if done.contains(&satellite.as_str()) {
                continue;
            }
            done.push(satellite);
            // Written straight to bytes: a list is published after every
            // change of its satellite's timers, so its cost is per change.
            let list: Vec<ListEntry> = table
                .of_satellite(satellite, now)
                .into_iter()
                .map(|t| ListEntry::of(t, now))
                .collect();
            let json = serde_json::to_vec(&list).expect("timer lists serialize");
            self.outbox.timers(satellite, &json);
        }
    }

    fn outcome(&self, queue: &Queue, ticket: Ticket) -> Result<(), TimerStoreError> {
        match queue
            .failed
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&ticket.0))
        {
            None => Ok(()),
            Some((_, _, why)) => Err(TimerStoreError::Write {
                path: store::JOURNAL.into(),
                source: std::io::Error::other(why.clone()),
            }),
        }
    }
}

/// Owns the table, its files, the writer thread and the ringing.
pub struct TimerService {
    inner: Arc<Inner>,
    limits: TimerLimits,
    wake: Notify,
    ringer: Box<dyn Ringer>,
    audit: Arc<Audit>,
    /// When this hub started: a timer due before then came due while it was down.
    started_ms: u64,
    /// Satellites whose timers the journal removed: their lists may not have
    /// been published before the last stop ([`TimerService::announce_all`]).
    unannounced: Mutex<Vec<String>>,
}

impl std::fmt::Debug for TimerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl TimerService {
    /// Loads the timers of `state_dir`, folds the journal into a fresh
    /// snapshot, and starts the writer thread.
    pub fn open(
        state_dir: &Path,
        limits: TimerLimits,
        outbox: Outbox,
        ringer: Box<dyn Ringer>,
        audit: Arc<Audit>,
    ) -> Result<Arc<TimerService>, TimerStoreError> {
        let (table, removed) = store::load_noting_removals(state_dir)?;
        let files = Files::create(state_dir, &table)?;
        let (settled_tx, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            table: Mutex::new(table),
            queue: Mutex::default(),
            work: Condvar::new(),
            written: Condvar::new(),
            settled_tx,
            outbox,
        });
        let writer = inner.clone();
        std::thread::Builder::new()
            .name("hark-timers".into())
            .stack_size(256 * 1024)
            .spawn(move || write_changes(&writer, files))
            .map_err(|source| TimerStoreError::Write {
                path: state_dir.join(store::JOURNAL),
                source,
            })?;
        Ok(Arc::new(TimerService {
            inner,
            limits,
            wake: Notify::new(),
            ringer,
            audit,
            started_ms: now_ms(),
            unannounced: Mutex::new(removed.into_iter().collect()),
        }))
    }

    /// The caps this service enforces.
    #[cfg(test)]
    pub(crate) fn limits(&self) -> &TimerLimits {
        &self.limits
    }

    /// Starts a timer in memory and queues it for the disk; await
    /// [`TimerService::settled`] with the ticket before speaking of it.
    pub fn begin_start(
        &self,
        satellite: &str,
        protocol: Protocol,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<(Timer, Ticket), TimerError> {
        let mut table = self.inner.table();
        let timer = table.start(satellite, protocol, label, duration, now_ms(), &self.limits)?;
        let ticket = self
            .inner
            .push(&Change::Set(timer.clone()), Done::Started(timer.clone()));
        drop(table);
        self.wake.notify_one();
        Ok((timer, ticket))
    }

    /// Starts a timer and waits, blocking the thread, until it is on disk:
    /// for skill workers, which run off the hub's loop.
    pub fn start(
        &self,
        satellite: &str,
        protocol: Protocol,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<Timer, StartError> {
        let (timer, ticket) = self.begin_start(satellite, protocol, label, duration)?;
        self.settled_blocking(ticket)?;
        Ok(timer)
    }

    /// Cancels the satellite's timers with these ids in memory and queues
    /// that for the disk (no ticket when none was cancelled).
    pub fn begin_cancel(&self, satellite: &str, ids: &[String]) -> (Vec<Timer>, Option<Ticket>) {
        let mut table = self.inner.table();
        let gone = table.cancel(satellite, ids);
        let mut ticket = None;
        for timer in &gone {
            ticket = Some(self.inner.push(
                &Change::Remove(timer.id.clone()),
                Done::Cancelled(timer.clone()),
            ));
        }
        drop(table);
        self.wake.notify_one();
        (gone, ticket)
    }

    /// Pauses, resumes or shifts the satellite's timer `id` in memory (at
    /// most `max_ms` long in all) and queues that for the disk; await
    /// [`TimerService::settled`] with the ticket before speaking of it.
    pub fn begin_update(
        &self,
        satellite: &str,
        id: &str,
        update: Update,
        max_ms: u64,
    ) -> Result<(Timer, Ticket), UpdateError> {
        let mut table = self.inner.table();
        let (before, after) = table.update(satellite, id, update, now_ms(), max_ms)?;
        let ticket = self.inner.push(
            &Change::Set(after.clone()),
            Done::Updated {
                before,
                after: after.clone(),
            },
        );
        drop(table);
        // The next timer to ring may have changed.
        self.wake.notify_one();
        Ok((after, ticket))
    }

    /// The newest change to the satellite's timers queued and not yet on
    /// disk, if any: a reply that speaks of its timers waits for it, so it
    /// never speaks of one a crash could still lose. Another satellite's
    /// changes are not waited for.
    pub fn pending(&self, satellite: &str) -> Option<Ticket> {
        let queue = self.inner.queue();
        queue
            .newest
            .get(satellite)
            .filter(|t| **t > queue.settled)
            .map(|t| Ticket(*t))
    }

    /// Publishes every satellite's list of timers (retained, so a
    /// dashboard sees them): at start, once the protocols have their routes.
    /// Also the empty list of each satellite whose last timer the journal
    /// removed, in case the hub stopped before saying so: a dashboard must
    /// not show a cancelled timer after a crash.
    pub fn announce_all(&self) {
        let table = self.inner.table();
        let mut satellites: Vec<String> = table.satellite_ids().map(str::to_string).collect();
        satellites.append(&mut self.unannounced.lock().unwrap_or_else(|e| e.into_inner()));
        self.inner.publish_lists(&table, &satellites);
    }

    /// [`TimerService::begin_cancel`], then waits (blocking) until it is on disk.
    pub fn cancel(&self, satellite: &str, ids: &[String]) -> Result<Vec<Timer>, TimerStoreError> {
        let (gone, ticket) = self.begin_cancel(satellite, ids);
        if let Some(ticket) = ticket {
            self.settled_blocking(ticket)?;
        }
        Ok(gone)
    }

    /// Waits until the change of `ticket` (and every one before it) is on
    /// disk, or was undone because it could not be written.
    pub async fn settled(&self, ticket: Ticket) -> Result<(), TimerStoreError> {
        let mut rx = self.inner.settled_tx.subscribe();
        // The sender lives in `inner`, as long as `self`: this cannot fail.
        let _ = rx.wait_for(|settled| *settled >= ticket.0).await;
        self.inner.outcome(&self.inner.queue(), ticket)
    }

    /// [`TimerService::settled`], blocking the thread.
    pub fn settled_blocking(&self, ticket: Ticket) -> Result<(), TimerStoreError> {
        let mut queue = self.inner.queue();
        while queue.settled < ticket.0 {
            queue = self
                .inner
                .written
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
        self.inner.outcome(&queue, ticket)
    }

    /// Waits (blocking, at most `limit`) until every queued change is
    /// written: at shutdown.
    pub fn flush(&self, limit: Duration) {
        let queue = self.inner.queue();
        let target = queue.queued;
        let (_queue, timeout) = self
            .inner
            .written
            .wait_timeout_while(queue, limit, |q| q.settled < target)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            tracing::warn!("timer changes not yet on disk at shutdown");
        }
    }

    pub fn of_satellite(&self, satellite: &str) -> Vec<TimerView> {
        let now = now_ms();
        self.inner
            .table()
            .of_satellite(satellite, now)
            .into_iter()
            .map(|t| t.view(now))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.table().len()
    }

    /// Timers per satellite that holds any.
    pub fn per_satellite(&self) -> std::collections::BTreeMap<String, usize> {
        self.inner.table().per_satellite()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.table().is_empty()
    }

    /// Rings timers as they come due, until the task is dropped. Timers that
    /// came due while the hub was down ring at once, marked late.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = now_ms();
            let due = self.inner.table().due(now);
            for timer in due {
                self.fire(&timer, now);
            }
            let next = self.inner.table().next_due_ms();
            let notified = self.wake.notified();
            match next {
                Some(due) => {
                    let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn fire(&self, timer: &Timer, now: u64) {
        // Ring first, forget second: a crash in between rings it twice after
        // restart, which beats never.
        let mut event = timer_event("timer_finished", timer, now);
        let late_ms = now.saturating_sub(timer.due_ms);
        if timer.due_ms < self.started_ms || late_ms >= LATE_AFTER_MS {
            event["late"] = json!(true);
            event["late_s"] = json!(late_ms / 1000);
        }
        tracing::info!(timer = %timer.id, satellite = %timer.satellite, late_ms, "timer finished");
        self.audit.record(&audit::Record {
            kind: audit::Kind::Timer,
            satellite: Some(timer.satellite.clone()),
            skill: Some("timer.set".into()),
            status: Some("finished".into()),
            message: Some(format!(
                "timer {} finished {} ms after its due time",
                timer.id, late_ms
            )),
            ..Default::default()
        });
        self.inner
            .outbox
            .event(Event::new(&timer.satellite, timer.protocol, event));
        self.ringer.ring(timer);
        let mut table = self.inner.table();
        if table.remove(&timer.id).is_some() {
            self.inner
                .push(&Change::Remove(timer.id.clone()), Done::Rang);
            // It rang, on disk or not: the list says it is gone.
            self.inner
                .publish_lists(&table, std::slice::from_ref(&timer.satellite));
        }
    }
}

impl Drop for TimerService {
    fn drop(&mut self) {
        self.inner.queue().stop = true;
        self.inner.work.notify_one();
    }
}

/// The writer thread: takes every queued change, appends them with one
/// fsync, announces or undoes them, and folds the journal into the snapshot
/// when it has grown. Ends when the service is dropped and the queue is empty.
fn write_changes(inner: &Inner, mut files: Files) {
    let mut failing = false;
    let mut last_batch = 0;
    loop {
        if last_batch > 1 {
            std::thread::sleep(GROUP_COMMIT_WAIT);
        }
        let (lines, done, upto) = {
            let mut queue = inner.queue();
            while queue.lines.is_empty() && !queue.stop {
                queue.writer_idle = true;
                queue = inner.work.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            queue.writer_idle = false;
            if queue.lines.is_empty() {
                return;
            }
            let lines = std::mem::take(&mut queue.lines);
            let done = std::mem::take(&mut queue.done);
            (lines, done, queue.queued)
        };
        let first = upto + 1 - done.len() as u64;
        last_batch = done.len();
        match files.append(&lines) {
            Ok(()) => {
                if failing {
                    tracing::info!("timer changes are written again");
                    failing = false;
                }
                let mut changed = Vec::new();
                for done in done {
                    let (kind, timer) = match done {
                        Done::Started(timer) => ("timer_started", timer),
                        Done::Cancelled(timer) => ("timer_cancelled", timer),
                        Done::Updated { after, .. } => ("timer_updated", after),
                        Done::Rang => continue,
                    };
                    changed.push(timer.satellite.clone());
                    inner.outbox.event(Event::new(
                        &timer.satellite,
                        timer.protocol,
                        timer_event(kind, &timer, now_ms()),
                    ));
                }
                inner.publish_lists(&inner.table(), &changed);
                inner.queue().settled = upto;
            }
            Err(e) => {
                if !failing {
                    tracing::error!("{e}; timer changes are undone until it can be written");
                    failing = true;
                }
                let mut table = inner.table();
                let mut changed = Vec::new();
                for done in done.into_iter().rev() {
                    match done {
                        Done::Started(timer) => {
                            table.remove(&timer.id);
                            changed.push(timer.satellite);
                        }
                        Done::Cancelled(timer) => {
                            changed.push(timer.satellite.clone());
                            table.insert(timer);
                        }
                        Done::Updated { before, .. } => {
                            changed.push(before.satellite.clone());
                            table.insert(before);
                        }
                        Done::Rang => {}
                    }
                }
                // A list published meanwhile may have shown what is undone.
                inner.publish_lists(&table, &changed);
                drop(table);
                let mut queue = inner.queue();
                queue.failed.push_back((first, upto, e.to_string()));
                if queue.failed.len() > FAILURES_KEPT {
                    queue.failed.pop_front();
                }
                queue.settled = upto;
            }
        }
        inner.written.notify_all();
        inner.settled_tx.send_replace(upto);
        if files.wants_compaction() {
            // The table may hold changes not yet appended; they are in the
            // snapshot and will be replayed on it, which is harmless.
            let saved = inner.table().saved();
            if let Err(e) = files.compact(&saved) {
                tracing::error!("cannot fold the timer journal into its snapshot: {e}");
                files.postpone_compaction();
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Timer(#[from] TimerError),
    #[error(transparent)]
    Store(#[from] TimerStoreError),
}

/// The payload of a timer event (same facts as Wyoming's timer events);
/// `timer_updated` also says whether it now runs or is paused.
pub fn timer_event(kind: &str, timer: &Timer, now: u64) -> serde_json::Value {
    let mut event = json!({
        "event": kind,
        "timer_id": timer.id,
        "label": timer.label,
        "total_s": timer.total_ms.div_ceil(1000),
        "remaining_s": timer.remaining_ms(now).div_ceil(1000),
        "speech": timer_speech(kind, timer, now),
    });
    if kind == "timer_updated" {
        event["state"] = json!(timer.state());
    }
    event
}

/// One timer in the list of `hark/timers/<sat>`: as `timer.list` gives it,
/// and when a running one ends (`ends_at_ms`, Unix milliseconds; `null`
/// while paused), since a retained message is read later than it is sent.
#[derive(serde::Serialize)]
struct ListEntry<'a> {
    id: &'a str,
    label: Option<&'a str>,
    total_s: u64,
    remaining_s: u64,
    state: &'static str,
    ends_at_ms: Option<u64>,
}

impl ListEntry<'_> {
    fn of(timer: &Timer, now: u64) -> ListEntry<'_> {
        ListEntry {
            id: &timer.id,
            label: timer.label.as_deref(),
            total_s: timer.total_ms.div_ceil(1000),
            remaining_s: timer.remaining_ms(now).div_ceil(1000),
            state: timer.state(),
            ends_at_ms: (!timer.is_paused()).then_some(timer.due_ms),
        }
    }
}

/// What a satellite can say about the event.
fn timer_speech(kind: &str, timer: &Timer, now: u64) -> String {
    let name = match &timer.label {
        Some(label) => format!("{label} timer"),
        None => format!(
            "timer for {}",
            speak_duration(Duration::from_millis(timer.total_ms))
        ),
    };
    match kind {
        "timer_finished" => format!("Your {name} is done."),
        "timer_cancelled" => format!("Your {name} is cancelled."),
        "timer_updated" if timer.is_paused() => format!("Your {name} is paused."),
        "timer_updated" => format!(
            "Your {name} has {} left.",
            speak_duration(Duration::from_millis(timer.remaining_ms(now)))
        ),
        _ => format!("Your {name} is running."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::events::{Message, Route};

    /// Every event as a message, so the tests can count them.
    #[derive(Debug)]
    struct AsMessages;
    impl Route for AsMessages {
        fn event(&self, event: &Event, outbox: &Outbox) {
            let payload = serde_json::to_vec(&event.body).unwrap();
            let topic = event.satellite.clone();
            outbox.publish_event(
                &event.satellite,
                Message {
                    topic,
                    payload,
                    retain: false,
                },
            );
        }
        fn timers(&self, satellite: &str, timers: &[u8], outbox: &Outbox) {
            let message = Message {
                topic: format!("timers/{satellite}"),
                payload: timers.to_vec(),
                retain: true,
            };
            outbox.publish_event(satellite, message);
        }
    }

    struct Silent;
    impl Ringer for Silent {
        fn ring(&self, _: &Timer) {}
    }

    fn service(
        dir: &Path,
    ) -> (
        Arc<TimerService>,
        tokio::sync::mpsc::Receiver<crate::events::Message>,
    ) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let (outbox, rx) = Outbox::channel(4096);
        outbox.add_route(Protocol::NATIVE, Arc::new(AsMessages));
        let audit = Audit::new(AuditLog::open(&dir.join("audit.jsonl")).unwrap());
        let limits = TimerLimits {
            per_satellite: 4,
            satellites: 1000,
            total: 1000,
        };
        let service = TimerService::open(dir, limits, outbox, Box::new(Silent), audit).unwrap();
        (service, rx)
    }

    #[tokio::test]
    async fn many_changes_at_once_all_settle_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("hark-timers-many-{}", std::process::id()));
        let (timers, mut events) = service(&dir);
        let mut tasks = Vec::new();
        for n in 0..200 {
            let timers = timers.clone();
            tasks.push(tokio::spawn(async move {
                let (timer, ticket) = timers
                    .begin_start(
                        &format!("sat-{n}"),
                        Protocol::NATIVE,
                        None,
                        Duration::from_secs(600),
                    )
                    .unwrap();
                timers.settled(ticket).await.unwrap();
                timer
            }));
        }
        let mut started = Vec::new();
        for task in tasks {
            started.push(
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("every change settles")
                    .unwrap(),
            );
        }
        let mut announced = 0;
        while let Ok(message) = events.try_recv() {
            if message.retain {
                // The satellite's list of timers, published after each change.
                continue;
            }
            assert!(String::from_utf8_lossy(&message.payload).contains("timer_started"));
            announced += 1;
        }
        assert_eq!(announced, 200, "each start is announced once it is on disk");
        let (gone, ticket) = timers.begin_cancel("sat-7", &[started[7].id.clone()]);
        assert_eq!(gone.len(), 1);
        timers.settled(ticket.unwrap()).await.unwrap();
        drop(timers);
        let saved = saved(&dir).unwrap();
        assert_eq!(saved.timers.len(), 199);
        assert!(!saved.timers.contains_key(&started[7].id));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_pause_is_announced_once_on_disk_and_survives_a_reopen_paused() {
        let dir = std::env::temp_dir().join(format!("hark-timers-pause-{}", std::process::id()));
        let (timers, mut out) = service(&dir);
        let (pasta, ticket) = timers
            .begin_start(
                "kitchen",
                Protocol::NATIVE,
                Some("pasta"),
                Duration::from_secs(600),
            )
            .unwrap();
        timers.settled(ticket).await.unwrap();
        let (paused, ticket) = timers
            .begin_update("kitchen", &pasta.id, Update::Pause, u64::MAX)
            .unwrap();
        timers.settled(ticket).await.unwrap();
        let mut messages = Vec::new();
        while let Ok(m) = out.try_recv() {
            let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            messages.push((m.topic, m.retain, body));
        }
        let kinds: Vec<String> = messages
            .iter()
            .map(|(topic, _, body)| match body["event"].as_str() {
                Some(kind) => kind.to_string(),
                None => topic.clone(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "timer_started",
                "timers/kitchen",
                "timer_updated",
                "timers/kitchen"
            ],
            "each change: its event, then the list"
        );
        let (_, retained, list) = &messages[3];
        assert!(retained);
        assert_eq!(list[0]["state"], "paused");
        assert_eq!(list[0]["ends_at_ms"], serde_json::Value::Null);
        assert_eq!(messages[2].2["state"], "paused");

        let (_, ticket) = timers.begin_cancel("kitchen", std::slice::from_ref(&pasta.id));
        timers.settled(ticket.unwrap()).await.unwrap();
        let mut last = None;
        while let Ok(m) = out.try_recv() {
            if m.retain {
                last = Some(m.payload);
            }
        }
        assert_eq!(
            last.as_deref(),
            Some(&b"[]"[..]),
            "an empty list when none are left"
        );

        // Put the paused one back, as a restart would find it.
        let (p2, ticket) = timers
            .begin_start(
                "kitchen",
                Protocol::NATIVE,
                Some("tea"),
                Duration::from_secs(300),
            )
            .unwrap();
        timers.settled(ticket).await.unwrap();
        let (p2, ticket) = timers
            .begin_update("kitchen", &p2.id, Update::Pause, u64::MAX)
            .unwrap();
        timers.settled(ticket).await.unwrap();
        drop(timers);
        std::thread::sleep(Duration::from_millis(50));
        let back = TimerTable::from(saved(&dir).unwrap());
        let tea = back.get(&p2.id).unwrap();
        assert_eq!(tea.paused_ms, p2.paused_ms, "the same time left");
        assert!(tea.is_paused());
        assert_eq!(back.next_due_ms(), None, "a paused timer is not due");
        assert_eq!(paused.state(), "paused");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_satellite_whose_last_timer_was_removed_before_a_crash_gets_its_empty_list() {
        let dir = std::env::temp_dir().join(format!("hark-timers-stale-{}", std::process::id()));
        let (timers, _out) = service(&dir);
        let (pasta, ticket) = timers
            .begin_start(
                "kitchen",
                Protocol::NATIVE,
                Some("pasta"),
                Duration::from_secs(600),
            )
            .unwrap();
        timers.settled(ticket).await.unwrap();
        let (_, ticket) = timers
            .begin_start("hall", Protocol::NATIVE, None, Duration::from_secs(600))
            .unwrap();
        timers.settled(ticket).await.unwrap();
        drop(timers);
        std::thread::sleep(Duration::from_millis(50));
        // The cancel reached the journal; the hub died before its list went out.
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(store::JOURNAL))
            .unwrap();
        std::io::Write::write_all(&mut journal, &Change::Remove(pasta.id.clone()).line()).unwrap();
        drop(journal);

        let (outbox, mut out) = Outbox::channel(64);
        outbox.add_route(Protocol::NATIVE, Arc::new(AsMessages));
        let audit = Audit::new(AuditLog::open(&dir.join("audit.jsonl")).unwrap());
        let timers = TimerService::open(
            &dir,
            TimerLimits::default(),
            outbox,
            Box::new(Silent),
            audit,
        )
        .unwrap();
        timers.announce_all();
        let mut lists = std::collections::BTreeMap::new();
        while let Ok(m) = out.try_recv() {
            let list: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            lists.insert(m.topic, list.as_array().unwrap().len());
        }
        assert_eq!(
            lists,
            std::collections::BTreeMap::from([
                ("timers/hall".to_string(), 1),
                ("timers/kitchen".to_string(), 0),
            ])
        );
        drop(timers);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_reply_waits_for_its_own_satellites_changes_only() {
        let dir = std::env::temp_dir().join(format!("hark-timers-pending-{}", std::process::id()));
        let (timers, _out) = service(&dir);
        let (_, ticket) = timers
            .begin_start("hall", Protocol::NATIVE, None, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            timers.pending("kitchen"),
            None,
            "the hall's change is not the kitchen's"
        );
        assert!(timers.pending("hall").is_none_or(|t| t == ticket));
        timers.settled(ticket).await.unwrap();
        assert_eq!(timers.pending("hall"), None, "settled");
        drop(timers);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn events_carry_the_wyoming_facts() {
        let timer = Timer {
            id: "t-3".into(),
            satellite: "kitchen".into(),
            protocol: Protocol::NATIVE,
            label: Some("pasta".into()),
            total_ms: 300_000,
            due_ms: 400_000,
            paused_ms: None,
        };
        let e = timer_event("timer_started", &timer, 100_000);
        assert_eq!(e["timer_id"], "t-3");
        assert_eq!(e["total_s"], 300);
        assert_eq!(e["remaining_s"], 300);
        assert_eq!(
            timer_event("timer_finished", &timer, 400_000)["speech"],
            "Your pasta timer is done."
        );
    }
}
