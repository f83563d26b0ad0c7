//! Requests waiting and running, in all and per satellite (or Hermes site):
//! a request that arrives is queued in its satellite's line ([`Scheduler`]),
//! and the loop starts requests, satellites in turn, while fewer than
//! [`MAX_CONCURRENT_REQUESTS`] run. A burst from one satellite waits behind
//! itself; a flood from made-up satellites takes its turns among the others,
//! so a real satellite's request runs after at most one request of each.
//! Only when its line, or the queue, is full is a request answered `busy`.

use crate::fair::{Refusal, Scheduler, Shares};

/// Requests running at once (a built-in finishes in microseconds; a
/// WebAssembly call holds its place until the sandbox answers).
pub const MAX_CONCURRENT_REQUESTS: usize = 64;
/// Requests one satellite may have running.
pub const MAX_RUNNING_PER_SATELLITE: usize = MAX_CONCURRENT_REQUESTS / 4;
/// Requests waiting, all satellites together.
pub const MAX_QUEUED: usize = 1024;
/// Requests one satellite may have waiting: a reconnecting satellite's
/// backlog, or a burst, fits.
pub const MAX_QUEUED_PER_SATELLITE: usize = 512;
/// Payload bytes waiting, all satellites together: 1,024 payloads of the
/// largest size would not fit a Pi's memory.
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// What became of an offered request: refused (with why), and the waiting
/// requests it pushed out of the queue.
#[derive(Debug)]
pub struct Offer<J> {
    pub refused: Option<(J, Refusal)>,
    pub evicted: Vec<J>,
}

/// The queue of requests and the count of those running.
#[derive(Debug)]
pub struct Admission<J> {
    scheduler: Scheduler<(usize, J)>,
    running: usize,
    max_running: usize,
    queued_bytes: usize,
    max_queued_bytes: usize,
}

impl<J> Default for Admission<J> {
    fn default() -> Admission<J> {
        Admission::new(
            MAX_CONCURRENT_REQUESTS,
            Shares {
                queue: MAX_QUEUED,
                queue_per_satellite: MAX_QUEUED_PER_SATELLITE,
                running_per_satellite: MAX_RUNNING_PER_SATELLITE,
            },
            MAX_QUEUED_BYTES,
        )
    }
}

impl<J> Admission<J> {
    pub fn new(max_running: usize, shares: Shares, max_queued_bytes: usize) -> Admission<J> {
        Admission {
            scheduler: Scheduler::new(shares),
            running: 0,
            max_running,
            queued_bytes: 0,
            max_queued_bytes,
        }
    }

    /// Queues `job` of `bytes` for `satellite`. When the queue is full,
    /// requests of the satellite with the longest line make room
    /// ([`Scheduler::evict_for`]); when none is longer than the newcomer's,
    /// the newcomer is refused. Both come back to be answered `busy`.
    pub fn offer(&mut self, satellite: &str, job: J, bytes: usize) -> Offer<J> {
        let mut evicted = Vec::new();
        while self.scheduler.is_full() || self.queued_bytes + bytes > self.max_queued_bytes {
            match self.scheduler.evict_for(satellite) {
                Some((_, (freed, old))) => {
                    self.queued_bytes -= freed;
                    evicted.push(old);
                }
                None => {
                    return Offer {
                        refused: Some((job, Refusal::Full)),
                        evicted,
                    };
                }
            }
        }
        let refused = match self.scheduler.push(satellite, (bytes, job)) {
            Ok(()) => {
                self.queued_bytes += bytes;
                None
            }
            Err(((_, job), refusal)) => Some((job, refusal)),
        };
        Offer { refused, evicted }
    }

    /// The next request to start, if one may.
    pub fn start_next(&mut self) -> Option<(String, J)> {
        if self.running >= self.max_running {
            return None;
        }
        let (satellite, (bytes, job)) = self.scheduler.start_next()?;
        self.running += 1;
        self.queued_bytes -= bytes;
        Some((satellite, job))
    }

    /// A request of `satellite` finished.
    pub fn done(&mut self, satellite: &str) {
        self.running = self.running.saturating_sub(1);
        self.scheduler.done(satellite);
    }

    /// Every waiting request, each satellite's oldest first (at shutdown,
    /// to be answered without running).
    pub fn drain(&mut self) -> Vec<J> {
        self.queued_bytes = 0;
        self.scheduler
            .take_all()
            .into_iter()
            .map(|(_, (_, job))| job)
            .collect()
    }

    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.scheduler.queued()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(a: &mut Admission<u32>, satellite: &str, job: u32, bytes: usize) {
        let offer = a.offer(satellite, job, bytes);
        assert!(
            offer.refused.is_none() && offer.evicted.is_empty(),
            "{offer:?}"
        );
    }

    fn admission() -> Admission<u32> {
        Admission::new(
            4,
            Shares {
                queue: 8,
                queue_per_satellite: 4,
                running_per_satellite: 2,
            },
            100,
        )
    }

    #[test]
    fn a_flood_of_satellites_takes_turns_with_a_real_one() {
        let mut a = admission();
        for n in 0..3 {
            queue(&mut a, &format!("fake-{n}"), n, 1);
            queue(&mut a, &format!("fake-{n}"), 10 + n, 1);
        }
        queue(&mut a, "kitchen", 99, 1);
        let started: Vec<u32> = std::iter::from_fn(|| a.start_next().map(|(_, j)| j)).collect();
        assert_eq!(
            started,
            [0, 1, 2, 99],
            "four may run; the kitchen is among them"
        );
        assert_eq!(a.running(), 4);
        a.done("fake-0");
        assert_eq!(
            a.start_next(),
            Some(("fake-0".into(), 10)),
            "round and round"
        );
    }

    #[test]
    fn a_burst_from_one_satellite_waits_behind_itself() {
        let mut a = admission();
        for n in 0..4 {
            queue(&mut a, "kitchen", n, 1);
        }
        assert_eq!(
            a.offer("kitchen", 4, 1).refused,
            Some((4, Refusal::SatelliteFull))
        );
        assert_eq!(a.start_next(), Some(("kitchen".into(), 0)));
        assert_eq!(a.start_next(), Some(("kitchen".into(), 1)));
        assert_eq!(a.start_next(), None, "two of the kitchen's run at once");
        queue(&mut a, "hall", 7, 1);
        assert_eq!(a.start_next(), Some(("hall".into(), 7)));
    }

    #[test]
    fn queued_payload_bytes_are_bounded_and_the_biggest_line_gives_way() {
        let mut a = admission();
        queue(&mut a, "kitchen", 0, 30);
        queue(&mut a, "kitchen", 1, 30);
        let offer = a.offer("kitchen", 2, 50);
        assert_eq!(offer.refused, Some((2, Refusal::Full)), "no line is longer");
        let offer = a.offer("hall", 3, 50);
        assert_eq!(
            (offer.refused, offer.evicted),
            (None, vec![1]),
            "the kitchen's newest gave way"
        );
    }

    #[test]
    fn a_full_queue_pushes_out_the_longest_line_for_a_newcomer() {
        let mut a = admission();
        for n in 0..4 {
            queue(&mut a, "fake-1", n, 1);
        }
        for n in 10..14 {
            queue(&mut a, "fake-2", n, 1);
        }
        let offer = a.offer("kitchen", 99, 1);
        assert_eq!(offer.refused, None);
        assert_eq!(offer.evicted.len(), 1, "one of a fake's four gave way");
        let offer = a.offer("fake-1", 5, 1);
        assert!(offer.refused.is_some() || offer.evicted.len() == 1);
    }

    #[test]
    fn at_shutdown_every_waiting_request_comes_back_to_be_answered() {
        let mut a = admission();
        queue(&mut a, "kitchen", 0, 1);
        queue(&mut a, "kitchen", 1, 1);
        queue(&mut a, "hall", 2, 1);
        queue(&mut a, "kitchen", 3, 1);
        a.start_next().unwrap();
        a.start_next().unwrap();
        let mut left = a.drain();
        left.sort();
        assert_eq!(left, [1, 3]);
        assert_eq!(a.queued(), 0);
    }
}
