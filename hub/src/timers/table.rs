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
        };
        self.insert(timer.clone());
        Ok(timer)
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
        self.by_due.insert((timer.due_ms, timer.id.clone()));
        self.timers.insert(timer.id.clone(), timer);
    }

    pub fn get(&self, id: &str) -> Option<&Timer> {
        self.timers.get(id)
    }

    /// The satellite's timers, soonest first.
    pub fn of_satellite(&self, satellite: &str) -> Vec<&Timer> {
        let mut timers: Vec<&Timer> = self
            .by_satellite
            .get(satellite)
            .into_iter()
            .flatten()
            .filter_map(|id| self.timers.get(id))
            .collect();
        timers.sort_by(|a, b| (a.due_ms, &a.id).cmp(&(b.due_ms, &b.id)));
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
        self.by_due.remove(&(timer.due_ms, timer.id.clone()));
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
        assert_eq!(t.of_satellite("kitchen"), [&timer]);
        assert_eq!(t.due(MIN.as_millis() as u64).len(), 1);
    }
}
