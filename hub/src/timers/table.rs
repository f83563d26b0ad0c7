//! The table of running timers: no I/O, no clock (callers pass `now_ms`).
//! Indexed by satellite and by due time, so starting, listing and ringing
//! cost the same with ten timers as with ten thousand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use hark_skills_builtin::TimerView;
use serde::{Deserialize, Serialize};

use crate::events::Protocol;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub id: String,
    pub satellite: String,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub total_ms: u64,
    /// Unix time in milliseconds at which it rings (while it runs).
    pub due_ms: u64,
    /// Set while the timer is paused: the time it had left when paused,
    /// frozen until it is resumed. Absent in files written before pausing
    /// existed, which is right: those timers were running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<u64>,
}

impl Timer {
    pub fn view(&self, now_ms: u64) -> TimerView {
        TimerView {
            id: self.id.clone(),
            label: self.label.clone(),
            total: Duration::from_millis(self.total_ms),
            remaining: Duration::from_millis(self.remaining_ms(now_ms)),
            paused: self.is_paused(),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused_ms.is_some()
    }

    /// Milliseconds left at `now_ms`: frozen while paused.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.paused_ms
            .unwrap_or_else(|| self.due_ms.saturating_sub(now_ms))
    }

    /// `running` or `paused`, as events and lists say it.
    pub fn state(&self) -> &'static str {
        if self.is_paused() {
            "paused"
        } else {
            "running"
        }
    }
}

/// A change to a timer that exists: what `timer.pause`, `timer.resume`,
/// `timer.add` and `timer.subtract` ask of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Pause,
    Resume,
    /// Milliseconds more (positive) or fewer (negative) on the clock and on
    /// its total.
    Shift(i64),
}

/// How many timers the hub holds: per satellite, satellites holding any, and
/// in all (`[timers]` in the config). Sized for a home; they keep a flood of
/// `timer.set` from made-up satellite ids from growing the table, and with
/// it every start of the hub, without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerLimits {
    pub per_satellite: usize,
    pub satellites: usize,
    pub total: usize,
}

impl Default for TimerLimits {
    fn default() -> TimerLimits {
        TimerLimits {
            per_satellite: 32,
            satellites: 64,
            total: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    #[error("You already have {limit} timers on this satellite; cancel one first.")]
    TooMany { limit: usize },
    #[error("Timers are running on {limit} satellites, the most the hub keeps; cancel one first.")]
    TooManySatellites { limit: usize },
    #[error("The hub already holds {limit} timers, the most it keeps; cancel one first.")]
    HubFull { limit: usize },
}

/// Why [`TimerTable::update`] left a timer as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("no timer {id} on this satellite")]
    NotFound { id: String },
    #[error("timer {id} is already paused")]
    AlreadyPaused { id: String },
    #[error("timer {id} is not paused")]
    NotPaused { id: String },
    /// Taking `shift_ms` off would leave less than a second.
    #[error("timer {id} has {remaining_ms} ms left, too few to take {shift_ms} ms off")]
    WouldEnd {
        id: String,
        remaining_ms: u64,
        shift_ms: u64,
    },
    /// Adding would make the timer longer than `max_ms` in all.
    #[error("timer {id} would be longer than {max_ms} ms")]
    TooLong { id: String, max_ms: u64 },
}

/// The table as saved: the id counter and every timer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub next_id: u64,
    pub timers: BTreeMap<String, Timer>,
}

/// Every running timer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerTable {
    next_id: u64,
    timers: BTreeMap<String, Timer>,
    by_satellite: HashMap<String, BTreeSet<String>>,
    by_due: BTreeSet<(u64, String)>,
}

impl From<Saved> for TimerTable {
    fn from(saved: Saved) -> TimerTable {
        let mut table = TimerTable {
            next_id: saved.next_id,
            ..TimerTable::default()
        };
        for timer in saved.timers.into_values() {
            table.insert(timer);
        }
        table
    }
}

impl TimerTable {
    pub fn saved(&self) -> Saved {
        Saved {
            next_id: self.next_id,
            timers: self.timers.clone(),
        }
    }

    /// Starts a timer within `limits`.
    pub fn start(
        &mut self,
        satellite: &str,
        protocol: Protocol,
        label: Option<&str>,
        duration: Duration,
        now_ms: u64,
        limits: &TimerLimits,
    ) -> Result<Timer, TimerError> {
        match self.by_satellite.get(satellite) {
            Some(ids) if ids.len() >= limits.per_satellite => {
                return Err(TimerError::TooMany {
                    limit: limits.per_satellite,
                });
            }
            None if self.by_satellite.len() >= limits.satellites => {
                return Err(TimerError::TooManySatellites {
                    limit: limits.satellites,
                });
            }
            _ => {}
        }
        if self.timers.len() >= limits.total {
            return Err(TimerError::HubFull {
                limit: limits.total,
            });
        }
        let total_ms = duration.as_millis().min(u128::from(u64::MAX / 2)) as u64;
        let timer = Timer {
            id: format!("t-{}", self.next_id + 1),
            satellite: satellite.to_string(),
            protocol,
            label: label.map(str::to_string),
            total_ms,
            due_ms: now_ms.saturating_add(total_ms),
            paused_ms: None,
        };
        self.insert(timer.clone());
        Ok(timer)
    }

    /// Pauses, resumes or shifts the satellite's timer `id`; returns it as
    /// it was and as it is now. A shift may leave no less than a second on
    /// the clock and no more than `max_ms` in all; a refused update changes
    /// nothing.
    pub fn update(
        &mut self,
        satellite: &str,
        id: &str,
        update: Update,
        now_ms: u64,
        max_ms: u64,
    ) -> Result<(Timer, Timer), UpdateError> {
        let before = match self.timers.get(id) {
            Some(t) if t.satellite == satellite => t.clone(),
            _ => return Err(UpdateError::NotFound { id: id.to_string() }),
        };
        let mut after = before.clone();
        let remaining = before.remaining_ms(now_ms);
        match update {
            Update::Pause if before.is_paused() => {
                return Err(UpdateError::AlreadyPaused { id: id.to_string() });
            }
            Update::Pause => after.paused_ms = Some(remaining),
            Update::Resume => {
                let Some(left) = before.paused_ms else {
                    return Err(UpdateError::NotPaused { id: id.to_string() });
                };
                after.paused_ms = None;
                after.due_ms = now_ms.saturating_add(left);
            }
            Update::Shift(shift) => {
                let by = shift.unsigned_abs();
                let (left, total) = if shift >= 0 {
                    (
                        remaining.saturating_add(by),
                        before.total_ms.saturating_add(by),
                    )
                } else {
                    if remaining < by.saturating_add(1000) {
                        return Err(UpdateError::WouldEnd {
                            id: id.to_string(),
                            remaining_ms: remaining,
                            shift_ms: by,
                        });
                    }
                    // The total shrinks with the clock, but never below
                    // what is left.
                    (
                        remaining - by,
                        before.total_ms.saturating_sub(by).max(remaining - by),
                    )
                };
                if total > max_ms {
                    return Err(UpdateError::TooLong {
                        id: id.to_string(),
                        max_ms,
                    });
                }
                after.total_ms = total;
                match after.paused_ms {
                    Some(_) => after.paused_ms = Some(left),
                    None => after.due_ms = now_ms.saturating_add(left),
                }
            }
        }
        self.insert(after.clone());
        Ok((before, after))
    }

    /// Puts `timer` in (replacing one with its id), keeping the id counter
    /// ahead of it: how a journal is replayed and a failed removal undone.
    pub fn insert(&mut self, timer: Timer) {
        if let Some(n) = timer
            .id
            .strip_prefix("t-")
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.next_id = self.next_id.max(n);
        }
        self.remove(&timer.id);
        self.by_satellite
            .entry(timer.satellite.clone())
            .or_default()
            .insert(timer.id.clone());
        // A paused timer does not come due.
        if !timer.is_paused() {
            self.by_due.insert((timer.due_ms, timer.id.clone()));
        }
        self.timers.insert(timer.id.clone(), timer);
    }

    pub fn get(&self, id: &str) -> Option<&Timer> {
        self.timers.get(id)
    }

    /// The satellite's timers, soonest to end first (paused ones by the
    /// time they have left).
    pub fn of_satellite(&self, satellite: &str, now_ms: u64) -> Vec<&Timer> {
        let mut timers: Vec<&Timer> = self
            .by_satellite
            .get(satellite)
            .into_iter()
            .flatten()
            .filter_map(|id| self.timers.get(id))
            .collect();
        timers.sort_by_key(|t| (t.remaining_ms(now_ms), &t.id));
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
                gone.extend(self.remove(id));
            }
        }
        gone
    }

    /// Timers due at `now_ms`, soonest first (they stay until [`TimerTable::remove`]).
    pub fn due(&self, now_ms: u64) -> Vec<Timer> {
        self.by_due
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .filter_map(|(_, id)| self.timers.get(id).cloned())
            .collect()
    }

    pub fn remove(&mut self, id: &str) -> Option<Timer> {
        let timer = self.timers.remove(id)?;
        if !timer.is_paused() {
            self.by_due.remove(&(timer.due_ms, timer.id.clone()));
        }
        if let Some(ids) = self.by_satellite.get_mut(&timer.satellite) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_satellite.remove(&timer.satellite);
            }
        }
        Some(timer)
    }

    pub fn next_due_ms(&self) -> Option<u64> {
        self.by_due.first().map(|(due, _)| *due)
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// The ids of the satellites holding at least one timer.
    pub fn satellite_ids(&self) -> impl Iterator<Item = &str> {
        self.by_satellite.keys().map(String::as_str)
    }

    /// Timers per satellite that holds any.
    pub fn per_satellite(&self) -> BTreeMap<String, usize> {
        self.by_satellite
            .iter()
            .map(|(sat, ids)| (sat.clone(), ids.len()))
            .collect()
    }

    /// Satellites holding at least one timer.
    pub fn satellites(&self) -> usize {
        self.by_satellite.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn start(t: &mut TimerTable, sat: &str, d: Duration, now: u64) -> Result<Timer, TimerError> {
        t.start(sat, Protocol::NATIVE, None, d, now, &TimerLimits::default())
    }

    #[test]
    fn timers_come_due_in_order() {
        let mut t = TimerTable::default();
        let a = t
            .start(
                "kitchen",
                Protocol::NATIVE,
                Some("pasta"),
                5 * MIN,
                1_000,
                &TimerLimits::default(),
            )
            .unwrap();
        let b = start(&mut t, "kitchen", MIN, 1_000).unwrap();
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
        let k = start(&mut t, "kitchen", MIN, 0).unwrap();
        let h = start(&mut t, "hall", MIN, 0).unwrap();
        assert!(t.cancel("kitchen", std::slice::from_ref(&h.id)).is_empty());
        assert_eq!(t.cancel("kitchen", std::slice::from_ref(&k.id)), [k]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.satellites(), 1);
    }

    #[test]
    fn a_satellite_has_a_timer_limit() {
        let mut t = TimerTable::default();
        for _ in 0..32 {
            start(&mut t, "kitchen", MIN, 0).unwrap();
        }
        assert_eq!(
            start(&mut t, "kitchen", MIN, 0),
            Err(TimerError::TooMany { limit: 32 })
        );
        assert!(start(&mut t, "hall", MIN, 0).is_ok());
    }

    #[test]
    fn made_up_satellites_cannot_grow_the_table_past_its_limits() {
        let limits = TimerLimits {
            per_satellite: 2,
            satellites: 3,
            total: 5,
        };
        let mut t = TimerTable::default();
        let mut set = |sat: &str| t.start(sat, Protocol::NATIVE, None, MIN, 0, &limits);
        for sat in ["a", "a", "b", "b"] {
            set(sat).unwrap();
        }
        assert_eq!(set("a"), Err(TimerError::TooMany { limit: 2 }));
        set("c").unwrap();
        assert_eq!(set("d"), Err(TimerError::TooManySatellites { limit: 3 }));
        assert_eq!(set("c"), Err(TimerError::HubFull { limit: 5 }));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn the_table_round_trips_through_its_saved_form_with_its_id_counter() {
        let mut t = TimerTable::default();
        start(&mut t, "kitchen", MIN, 5).unwrap();
        let gone = start(&mut t, "kitchen", MIN, 5).unwrap();
        t.remove(&gone.id);
        let saved = t.saved();
        let back: Saved = serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
        let mut t2 = TimerTable::from(back);
        assert_eq!(t, t2);
        assert_eq!(start(&mut t2, "kitchen", MIN, 5).unwrap().id, "t-3");
    }

    #[test]
    fn replaying_an_insert_twice_leaves_one_timer() {
        let mut t = TimerTable::default();
        let timer = start(&mut t, "kitchen", MIN, 0).unwrap();
        t.insert(timer.clone());
        assert_eq!(t.len(), 1);
        assert_eq!(t.of_satellite("kitchen", 0), [&timer]);
        assert_eq!(t.due(MIN.as_millis() as u64).len(), 1);
    }

    const MAX: u64 = 7 * 24 * 3600 * 1000;

    #[test]
    fn a_paused_timer_keeps_its_remaining_time_and_does_not_come_due() {
        let mut t = TimerTable::default();
        let pasta = start(&mut t, "kitchen", 10 * MIN, 0).unwrap();
        let (_, paused) = t
            .update("kitchen", &pasta.id, Update::Pause, 120_000, MAX)
            .unwrap();
        assert_eq!(paused.paused_ms, Some(480_000));
        assert_eq!(paused.state(), "paused");
        assert!(t.due(u64::MAX / 4).is_empty(), "a paused timer never rings");
        assert_eq!(t.next_due_ms(), None);
        // An hour later it still has eight minutes.
        assert_eq!(t.get(&pasta.id).unwrap().view(3_720_000).remaining, 8 * MIN);
        let (_, resumed) = t
            .update("kitchen", &pasta.id, Update::Resume, 3_720_000, MAX)
            .unwrap();
        assert_eq!(resumed.due_ms, 3_720_000 + 480_000);
        assert_eq!(t.next_due_ms(), Some(4_200_000));
        assert_eq!(t.due(4_200_000), [resumed]);
    }

    #[test]
    fn pausing_a_paused_timer_or_resuming_a_running_one_changes_nothing() {
        let mut t = TimerTable::default();
        let pasta = start(&mut t, "kitchen", 10 * MIN, 0).unwrap();
        assert_eq!(
            t.update("kitchen", &pasta.id, Update::Resume, 1, MAX),
            Err(UpdateError::NotPaused {
                id: pasta.id.clone()
            })
        );
        t.update("kitchen", &pasta.id, Update::Pause, 1_000, MAX)
            .unwrap();
        let before = t.clone();
        assert_eq!(
            t.update("kitchen", &pasta.id, Update::Pause, 2_000, MAX),
            Err(UpdateError::AlreadyPaused {
                id: pasta.id.clone()
            })
        );
        assert_eq!(t, before);
    }

    #[test]
    fn adding_and_subtracting_move_the_finish_and_the_total() {
        let mut t = TimerTable::default();
        let pasta = start(&mut t, "kitchen", 10 * MIN, 0).unwrap();
        let (_, later) = t
            .update("kitchen", &pasta.id, Update::Shift(60_000), 0, MAX)
            .unwrap();
        assert_eq!((later.due_ms, later.total_ms), (660_000, 660_000));
        assert_eq!(t.next_due_ms(), Some(660_000));
        let (_, sooner) = t
            .update("kitchen", &pasta.id, Update::Shift(-300_000), 60_000, MAX)
            .unwrap();
        assert_eq!((sooner.due_ms, sooner.total_ms), (360_000, 360_000));
        assert_eq!(t.due(360_000), [sooner]);
    }

    #[test]
    fn shifting_a_paused_timer_moves_its_frozen_remaining_time() {
        let mut t = TimerTable::default();
        let pasta = start(&mut t, "kitchen", 10 * MIN, 0).unwrap();
        t.update("kitchen", &pasta.id, Update::Pause, 60_000, MAX)
            .unwrap();
        let (_, more) = t
            .update("kitchen", &pasta.id, Update::Shift(120_000), 90_000, MAX)
            .unwrap();
        assert_eq!(more.paused_ms, Some(660_000));
        assert!(t.due(u64::MAX / 4).is_empty(), "still paused");
    }

    #[test]
    fn a_shift_that_ends_the_timer_or_outgrows_the_maximum_is_refused() {
        let mut t = TimerTable::default();
        let pasta = start(&mut t, "kitchen", 2 * MIN, 0).unwrap();
        let before = t.clone();
        assert_eq!(
            t.update("kitchen", &pasta.id, Update::Shift(-300_000), 0, MAX),
            Err(UpdateError::WouldEnd {
                id: pasta.id.clone(),
                remaining_ms: 120_000,
                shift_ms: 300_000
            })
        );
        assert!(matches!(
            t.update("kitchen", &pasta.id, Update::Shift(-120_000), 0, MAX),
            Err(UpdateError::WouldEnd { .. })
        ));
        assert_eq!(
            t.update("kitchen", &pasta.id, Update::Shift(MAX as i64), 0, MAX),
            Err(UpdateError::TooLong {
                id: pasta.id.clone(),
                max_ms: MAX
            })
        );
        assert_eq!(t, before, "nothing lost");
    }

    #[test]
    fn a_satellite_cannot_change_another_satellites_timer() {
        let mut t = TimerTable::default();
        let hall = start(&mut t, "hall", MIN, 0).unwrap();
        assert_eq!(
            t.update("kitchen", &hall.id, Update::Pause, 0, MAX),
            Err(UpdateError::NotFound {
                id: hall.id.clone()
            })
        );
    }

    #[test]
    fn timers_saved_before_pausing_existed_load_as_running() {
        let old = r#"{"next_id":1,"timers":{"t-1":{"id":"t-1","satellite":"kitchen","label":"pasta","total_ms":60000,"due_ms":61000}}}"#;
        let t = TimerTable::from(serde_json::from_str::<Saved>(old).unwrap());
        let pasta = t.get("t-1").unwrap();
        assert_eq!(
            (pasta.state(), pasta.protocol),
            ("running", Protocol::NATIVE)
        );
        assert_eq!(t.next_due_ms(), Some(61_000));
    }
}
