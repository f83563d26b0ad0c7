//! Fair shares of a bounded resource among satellites: one queue per
//! satellite (or Hermes site), served in turn, each satellite limited in how
//! much it may have waiting and running. The hub's request admission and the
//! sandbox's workers both use it, so one satellite (or a flood of requests
//! from it) waits behind itself, not in front of everyone else.

use std::collections::{HashMap, VecDeque};

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every queue slot is taken.
    Full,
    /// This satellite already holds its share of the queue.
    SatelliteFull,
}

/// How many jobs may wait and run, in all and per satellite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// Jobs waiting, all satellites together.
    pub queue: usize,
    /// Jobs one satellite may have waiting.
    pub queue_per_satellite: usize,
    /// Jobs one satellite may have running.
    pub running_per_satellite: usize,
}

impl Shares {
    /// The shares for `workers` threads behind a queue of `queue` calls: one
    /// worker kept free of any single satellite (when there are two or more),
    /// and a quarter of the queue per satellite (at least one slot).
    pub fn for_workers(workers: usize, queue: usize) -> Shares {
        Shares {
            queue,
            queue_per_satellite: (queue / 4).max(1),
            running_per_satellite: workers.saturating_sub(1).max(1),
        }
    }
}

/// Who runs next: a FIFO per satellite, satellites served round-robin,
/// within [`Shares`]. Pure bookkeeping, no threads, no clock: the sandbox's
/// pool wraps it in a mutex and a condition variable, the hub's loop in
/// [`crate::admission`].
#[derive(Debug)]
pub struct Scheduler<J> {
    shares: Shares,
    queues: HashMap<String, VecDeque<J>>,
    /// Satellites with waiting jobs, in the order they are served.
    turns: VecDeque<String>,
    running: HashMap<String, usize>,
    queued: usize,
}

impl<J> Scheduler<J> {
    pub fn new(shares: Shares) -> Scheduler<J> {
        Scheduler {
            shares,
            queues: HashMap::new(),
            turns: VecDeque::new(),
            running: HashMap::new(),
            queued: 0,
        }
    }

    /// Queues `job` for `satellite`, or gives it back with the reason.
    pub fn push(&mut self, satellite: &str, job: J) -> Result<(), (J, Refusal)> {
        if self.queued >= self.shares.queue {
            return Err((job, Refusal::Full));
        }
        let queue = self.queues.entry(satellite.to_string()).or_default();
        if queue.len() >= self.shares.queue_per_satellite {
            return Err((job, Refusal::SatelliteFull));
        }
        if queue.is_empty() {
            self.turns.push_back(satellite.to_string());
        }
        queue.push_back(job);
        self.queued += 1;
        Ok(())
    }

    /// The next job a free worker should run, with its satellite: the first
    /// satellite in turn that is below its running share. The satellite goes
    /// to the back of the line.
    pub fn start_next(&mut self) -> Option<(String, J)> {
        let cap = self.shares.running_per_satellite;
        let at = self
            .turns
            .iter()
            .position(|s| self.running.get(s).copied().unwrap_or(0) < cap)?;
        let satellite = self.turns.remove(at).expect("position is in range");
        let queue = self.queues.get_mut(&satellite).expect("a turn has a queue");
        let job = queue.pop_front().expect("a turn has a waiting job");
        if queue.is_empty() {
            self.queues.remove(&satellite);
        } else {
            self.turns.push_back(satellite.clone());
        }
        self.queued -= 1;
        *self.running.entry(satellite.clone()).or_default() += 1;
        Some((satellite, job))
    }

    /// A job of `satellite` finished.
    pub fn done(&mut self, satellite: &str) {
        if let Some(n) = self.running.get_mut(satellite) {
            *n -= 1;
            if *n == 0 {
                self.running.remove(satellite);
            }
        }
    }

    /// Whether every queue slot is taken.
    pub fn is_full(&self) -> bool {
        self.queued >= self.shares.queue
    }

    /// Makes room for one more job of `satellite` when the queue is full:
    /// takes the newest waiting job of the satellite with the longest line,
    /// if that line is longer than `satellite`'s would be with the new job
    /// (longest-queue drop). `None` when `satellite`'s own line is among the
    /// longest: then the newcomer is the one to refuse.
    pub fn evict_for(&mut self, satellite: &str) -> Option<(String, J)> {
        let mine = self.queues.get(satellite).map_or(0, VecDeque::len) + 1;
        let (longest, len) = self
            .queues
            .iter()
            .map(|(s, q)| (s, q.len()))
            .max_by_key(|(_, len)| *len)?;
        if len <= mine {
            return None;
        }
        let longest = longest.clone();
        let queue = self.queues.get_mut(&longest).expect("found above");
        let job = queue.pop_back().expect("the longest line is not empty");
        self.queued -= 1;
        Some((longest, job))
    }

    /// Takes every waiting job out, each satellite's oldest first; the
    /// running ones are not touched.
    pub fn take_all(&mut self) -> Vec<(String, J)> {
        let mut jobs = Vec::with_capacity(self.queued);
        for satellite in self.turns.drain(..) {
            if let Some(queue) = self.queues.remove(&satellite) {
                jobs.extend(queue.into_iter().map(|job| (satellite.clone(), job)));
            }
        }
        self.queued = 0;
        jobs
    }

    pub fn queued(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(workers: usize, queue: usize) -> Scheduler<u32> {
        Scheduler::new(Shares::for_workers(workers, queue))
    }

    #[test]
    fn one_worker_is_always_left_for_the_other_satellites() {
        let mut s = scheduler(2, 8);
        for n in 0..2 {
            s.push("attic", n).unwrap();
        }
        assert_eq!(s.start_next(), Some(("attic".into(), 0)));
        assert_eq!(s.start_next(), None, "attic already runs its share of one");
        s.push("kitchen", 100).unwrap();
        assert_eq!(s.start_next(), Some(("kitchen".into(), 100)));
        s.done("attic");
        assert_eq!(s.start_next(), Some(("attic".into(), 1)));
    }

    #[test]
    fn satellites_take_turns_whoever_queued_first() {
        let mut s = scheduler(3, 12);
        for n in 0..3 {
            s.push("attic", n).unwrap();
        }
        s.push("kitchen", 10).unwrap();
        s.push("hall", 20).unwrap();
        let order: Vec<u32> = std::iter::from_fn(|| s.start_next().map(|(_, j)| j)).collect();
        assert_eq!(order, [0, 10, 20, 1], "attic's third waits for its share");
    }

    #[test]
    fn a_satellite_holds_at_most_its_share_of_the_queue() {
        let mut s = scheduler(2, 8);
        for n in 0..2 {
            s.push("attic", n).unwrap();
        }
        assert_eq!(s.push("attic", 2), Err((2, Refusal::SatelliteFull)));
        for (n, sat) in ["a", "b", "c"].iter().enumerate() {
            s.push(sat, n as u32).unwrap();
            s.push(sat, n as u32).unwrap();
        }
        assert_eq!(s.queued(), 8);
        assert_eq!(s.push("kitchen", 9), Err((9, Refusal::Full)));
    }

    #[test]
    fn a_full_queue_drops_from_the_longest_line_to_let_a_newcomer_in() {
        let mut s = scheduler(2, 8);
        for n in 0..2 {
            s.push("attic", n).unwrap();
        }
        for (n, sat) in ["a", "b", "c"].iter().enumerate() {
            s.push(sat, 10 + n as u32).unwrap();
            s.push(sat, 20 + n as u32).unwrap();
        }
        assert!(s.is_full());
        // Every line is 2 long; the kitchen's would be 1: take from one.
        let (from, job) = s.evict_for("kitchen").unwrap();
        assert_eq!(s.queues[&from].len(), 1);
        assert!(job >= 1, "the newest of that line goes: {job}");
        s.push("kitchen", 99).unwrap();
        // The attic, at 2, may not push out an equal line for a third.
        assert_eq!(s.evict_for("attic"), None);
    }

    #[test]
    fn a_single_worker_still_serves_one_call_at_a_time() {
        let mut s = scheduler(1, 4);
        s.push("attic", 0).unwrap();
        s.push("kitchen", 1).unwrap();
        assert_eq!(s.start_next(), Some(("attic".into(), 0)));
        assert_eq!(
            s.start_next(),
            Some(("kitchen".into(), 1)),
            "the share is per satellite"
        );
        s.done("attic");
        s.done("kitchen");
        assert_eq!(s.start_next(), None);
    }
}
