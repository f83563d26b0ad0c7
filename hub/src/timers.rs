//! Timers: a pure table ([`TimerTable`]) and the service that persists it and
//! rings timers when they come due ([`TimerService`]).
//!
//! Timers are kept in wall-clock milliseconds so they survive a restart: the
//! table is written to `<state_dir>/timers.json` (atomically: temp file, fsync,
//! rename) on every change, and a timer that came due while the hub was down
//! rings at start, marked late.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hark_skills_builtin::TimerView;
use hark_skills_builtin::duration::speak_duration;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::audit::{self, Audit};
use crate::events::{Event, Outbox, Protocol};
use crate::fsutil::write_atomic;

/// Most timers one satellite may have running.
pub const MAX_TIMERS_PER_SATELLITE: usize = 32;
/// A timer ringing this much after its due time is announced as late (so is
/// any timer that came due while the hub was down).
pub const LATE_AFTER_MS: u64 = 2_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub satellite: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub total_ms: u64,
    /// Unix time in milliseconds at which it rings.
    pub due_ms: u64,
}

impl Timer {
    pub fn view(&self, now_ms: u64) -> TimerView {
        TimerView {
            id: self.id.clone(),
            label: self.label.clone(),
            total: Duration::from_millis(self.total_ms),
            remaining: Duration::from_millis(self.due_ms.saturating_sub(now_ms)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error(
        "You already have {MAX_TIMERS_PER_SATELLITE} timers on this satellite; cancel one first."
    )]
    TooMany,
}

/// Every running timer; no I/O, no clock: callers pass `now_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerTable {
    next_id: u64,
    timers: BTreeMap<String, Timer>,
}

impl TimerTable {
    pub fn start(
        &mut self,
        satellite: &str,
        protocol: Protocol,
        label: Option<&str>,
        duration: Duration,
        now_ms: u64,
    ) -> Result<Timer, TimerError> {
        if self
            .timers
            .values()
            .filter(|t| t.satellite == satellite)
            .count()
            >= MAX_TIMERS_PER_SATELLITE
        {
            return Err(TimerError::TooMany);
        }
        self.next_id += 1;
        let total_ms = duration.as_millis().min(u128::from(u64::MAX / 2)) as u64;
        let timer = Timer {
            id: format!("t-{}", self.next_id),
            satellite: satellite.to_string(),
            protocol,
            label: label.map(str::to_string),
            total_ms,
            due_ms: now_ms.saturating_add(total_ms),
        };
        self.timers.insert(timer.id.clone(), timer.clone());
        Ok(timer)
    }

    /// The satellite's timers, soonest first.
    pub fn of_satellite(&self, satellite: &str) -> Vec<&Timer> {
        let mut timers: Vec<&Timer> = self
            .timers
            .values()
            .filter(|t| t.satellite == satellite)
            .collect();
        timers.sort_by_key(|t| (t.due_ms, t.id.clone()));
        timers
    }

    /// Removes and returns the satellite's timers with these ids.
    pub fn cancel(&mut self, satellite: &str, ids: &[String]) -> Vec<Timer> {
        let mut gone = Vec::new();
        for id in ids {
            if self
                .timers
                .get(id)
                .is_some_and(|t| t.satellite == satellite)
            {
                gone.extend(self.timers.remove(id));
            }
        }
        gone
    }

    /// Timers due at `now_ms`, soonest first (they stay until [`TimerTable::remove`]).
    pub fn due(&self, now_ms: u64) -> Vec<Timer> {
        let mut due: Vec<Timer> = self
            .timers
            .values()
            .filter(|t| t.due_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by_key(|t| t.due_ms);
        due
    }

    pub fn remove(&mut self, id: &str) -> Option<Timer> {
        self.timers.remove(id)
    }

    pub fn next_due_ms(&self) -> Option<u64> {
        self.timers.values().map(|t| t.due_ms).min()
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum TimerStoreError {
    #[error("cannot read timers from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("timers file {path} is damaged ({message}); move it aside to start without its timers")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot save timers to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the service does when a timer rings, besides the event: the hub
/// plays its alarm.
pub trait Ringer: Send + Sync {
    fn ring(&self, timer: &Timer);
}

/// Owns the table, its file, and the task that rings timers.
pub struct TimerService {
    table: Mutex<TimerTable>,
    path: PathBuf,
    wake: Notify,
    outbox: Outbox,
    ringer: Box<dyn Ringer>,
    audit: Arc<Audit>,
    /// When this hub started: a timer due before then came due while it was down.
    started_ms: u64,
}

impl std::fmt::Debug for TimerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerService")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TimerService {
    /// Loads `<state_dir>/timers.json` if it exists.
    pub fn open(
        state_dir: &Path,
        outbox: Outbox,
        ringer: Box<dyn Ringer>,
        audit: Arc<Audit>,
    ) -> Result<Arc<TimerService>, TimerStoreError> {
        let path = state_dir.join("timers.json");
        let table = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TimerStoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TimerTable::default(),
            Err(source) => return Err(TimerStoreError::Read { path, source }),
        };
        Ok(Arc::new(TimerService {
            table: Mutex::new(table),
            path,
            wake: Notify::new(),
            outbox,
            ringer,
            audit,
            started_ms: now_ms(),
        }))
    }

    fn save(&self, table: &TimerTable) -> Result<(), TimerStoreError> {
        let bytes = serde_json::to_vec_pretty(table).expect("timers serialize");
        write_atomic(&self.path, &bytes).map_err(|source| TimerStoreError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TimerTable> {
        // A panic while holding the lock cannot leave the table half-changed
        // (every change is one map operation), so a poisoned lock is still good.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a timer; it is on disk before this returns.
    pub fn start(
        &self,
        satellite: &str,
        protocol: Protocol,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<Timer, StartError> {
        let mut table = self.lock();
        let mut next = table.clone();
        let timer = next.start(satellite, protocol, label, duration, now_ms())?;
        self.save(&next)?;
        *table = next;
        drop(table);
        self.wake.notify_one();
        self.outbox.event(Event::new(
            satellite,
            protocol,
            timer_event("timer_started", &timer, now_ms()),
        ));
        Ok(timer)
    }

    pub fn of_satellite(&self, satellite: &str) -> Vec<TimerView> {
        let now = now_ms();
        self.lock()
            .of_satellite(satellite)
            .into_iter()
            .map(|t| t.view(now))
            .collect()
    }

    pub fn cancel(&self, satellite: &str, ids: &[String]) -> Result<Vec<Timer>, TimerStoreError> {
        let mut table = self.lock();
        let mut next = table.clone();
        let gone = next.cancel(satellite, ids);
        if gone.is_empty() {
            return Ok(gone);
        }
        self.save(&next)?;
        *table = next;
        drop(table);
        let now = now_ms();
        for timer in &gone {
            self.outbox.event(Event::new(
                &timer.satellite,
                timer.protocol,
                timer_event("timer_cancelled", timer, now),
            ));
        }
        self.wake.notify_one();
        Ok(gone)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Rings timers as they come due, until the task is dropped. Timers that
    /// came due while the hub was down ring at once, marked late.
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = now_ms();
            let due = self.lock().due(now);
            for timer in due {
                self.fire(&timer, now);
            }
            let next = self.lock().next_due_ms();
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
        self.outbox
            .event(Event::new(&timer.satellite, timer.protocol, event));
        self.ringer.ring(timer);
        let mut table = self.lock();
        let mut next = table.clone();
        next.remove(&timer.id);
        match self.save(&next) {
            Ok(()) => *table = next,
            Err(e) => {
                // Keep it out of memory anyway so it does not ring in a loop;
                // it may ring again after a restart.
                tracing::error!("{e}");
                *table = next;
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

/// The payload of a timer event (same facts as Wyoming's timer events).
pub fn timer_event(kind: &str, timer: &Timer, now: u64) -> serde_json::Value {
    json!({
        "event": kind,
        "timer_id": timer.id,
        "label": timer.label,
        "total_s": timer.total_ms.div_ceil(1000),
        "remaining_s": timer.due_ms.saturating_sub(now).div_ceil(1000),
        "speech": timer_speech(kind, timer),
    })
}

/// What a satellite can say about the event.
fn timer_speech(kind: &str, timer: &Timer) -> String {
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
        _ => format!("Your {name} is running."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn timers_come_due_in_order() {
        let mut t = TimerTable::default();
        let a = t
            .start("kitchen", Protocol::Native, Some("pasta"), 5 * MIN, 1_000)
            .unwrap();
        let b = t
            .start("kitchen", Protocol::Native, None, MIN, 1_000)
            .unwrap();
        assert_eq!((a.id.as_str(), b.id.as_str()), ("t-1", "t-2"));
        assert_eq!(t.next_due_ms(), Some(61_000));
        assert!(t.due(60_999).is_empty());
        assert_eq!(t.due(301_000), [b.clone(), a.clone()]);
        t.remove(&b.id);
        assert_eq!(t.next_due_ms(), Some(301_000));
    }

    #[test]
    fn a_satellite_cancels_only_its_own_timers() {
        let mut t = TimerTable::default();
        let k = t.start("kitchen", Protocol::Native, None, MIN, 0).unwrap();
        let h = t.start("hall", Protocol::Native, None, MIN, 0).unwrap();
        assert!(t.cancel("kitchen", std::slice::from_ref(&h.id)).is_empty());
        assert_eq!(t.cancel("kitchen", std::slice::from_ref(&k.id)), [k]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_satellite_has_a_timer_limit() {
        let mut t = TimerTable::default();
        for _ in 0..MAX_TIMERS_PER_SATELLITE {
            t.start("kitchen", Protocol::Native, None, MIN, 0).unwrap();
        }
        assert_eq!(
            t.start("kitchen", Protocol::Native, None, MIN, 0),
            Err(TimerError::TooMany)
        );
        assert!(t.start("hall", Protocol::Native, None, MIN, 0).is_ok());
    }

    #[test]
    fn the_table_round_trips_through_json_with_its_id_counter() {
        let mut t = TimerTable::default();
        t.start("kitchen", Protocol::Native, Some("tea"), MIN, 5)
            .unwrap();
        let t2: TimerTable = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        assert_eq!(t, t2);
        let mut t2 = t2;
        assert_eq!(
            t2.start("kitchen", Protocol::Native, None, MIN, 5)
                .unwrap()
                .id,
            "t-2"
        );
    }

    #[test]
    fn events_carry_the_wyoming_facts() {
        let timer = Timer {
            id: "t-3".into(),
            satellite: "kitchen".into(),
            protocol: Protocol::Native,
            label: Some("pasta".into()),
            total_ms: 300_000,
            due_ms: 400_000,
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
