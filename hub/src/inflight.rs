//! Skill calls in flight, per satellite, so `system.cancel` can stop the
//! asking satellite's running calls and shutdown can wait for them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Raised once to ask a call to stop; the sandbox checks it between fuel
/// slices, built-in runs race against [`CancelFlag::cancelled`].
#[derive(Debug, Default)]
pub struct CancelFlag {
    raised: AtomicBool,
    notify: Notify,
}

impl CancelFlag {
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct Entry {
    satellite: String,
    request_id: String,
    flag: Arc<CancelFlag>,
}

#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
    idle: Notify,
}

/// Removes its call from the table when dropped, however the call ended.
#[derive(Debug)]
pub struct CallGuard {
    id: u64,
    table: Arc<InFlight>,
    pub flag: Arc<CancelFlag>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let mut calls = self.table.lock();
        calls.remove(&self.id);
        if calls.is_empty() {
            self.table.idle.notify_waiters();
        }
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(self: &Arc<Self>, satellite: &str, request_id: &str) -> CallGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let flag = Arc::new(CancelFlag::default());
        self.lock().insert(
            id,
            Entry {
                satellite: satellite.to_string(),
                request_id: request_id.to_string(),
                flag: flag.clone(),
            },
        );
        CallGuard {
            id,
            table: self.clone(),
            flag,
        }
    }

    /// Asks every call of `satellite` except `except_request` to stop;
    /// returns how many were asked.
    pub fn cancel_satellite(&self, satellite: &str, except_request: &str) -> usize {
        let calls = self.lock();
        let mut n = 0;
        for entry in calls.values() {
            if entry.satellite == satellite
                && entry.request_id != except_request
                && !entry.flag.is_raised()
            {
                entry.flag.raise();
                n += 1;
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Resolves when no call is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reaches_only_the_satellites_other_calls() {
        let table = Arc::new(InFlight::default());
        let a = table.register("kitchen", "r-1");
        let b = table.register("kitchen", "r-2");
        let c = table.register("hall", "r-1");
        assert_eq!(table.cancel_satellite("kitchen", "r-2"), 1);
        assert!(a.flag.is_raised());
        assert!(
            !b.flag.is_raised(),
            "the cancel request does not cancel itself"
        );
        assert!(!c.flag.is_raised(), "another satellite's call runs on");
        assert_eq!(table.cancel_satellite("kitchen", "r-2"), 0, "already asked");
        drop((a, b, c));
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_call_ends() {
        let table = Arc::new(InFlight::default());
        let call = table.register("kitchen", "r-1");
        let waiter = tokio::spawn({
            let table = table.clone();
            async move { table.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(call);
        waiter.await.unwrap();
    }
}
