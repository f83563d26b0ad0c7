//! Which principal each client id belongs to: the gate's answer at CONNECT,
//! kept so that [`super::BrokerHandle::disconnect`] can find a principal's
//! connections, and so that a persistent session (its subscriptions, each
//! authorized for the principal that made it, and its queued messages) is
//! never resumed by another principal. No I/O: the broker adapter asks and
//! acts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::satellites::access::Principal;

#[derive(Debug, Default)]
pub(super) struct Clients {
    by_id: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    who: Principal,
    /// The last CONNECT asked to resume or keep a session.
    persistent: bool,
    /// When the gate admitted it.
    since: Instant,
}

/// Why a CONNECT the gate let in is refused all the same.
pub(super) const SESSION_OF_ANOTHER: &str = "the client id's session belongs to another login; connect with a clean session or another client id";

impl Clients {
    /// Records that `client_id` is now `who`'s. A client that asks to resume
    /// a session (`clean_start` false) kept for another principal is refused:
    /// the session's subscriptions were authorized for that other principal.
    /// A clean start discards the old session, so it may take the id over.
    pub(super) fn admit(
        &mut self,
        client_id: &str,
        who: &Principal,
        clean_start: bool,
        now: Instant,
    ) -> Result<(), &'static str> {
        if let Some(entry) = self.by_id.get(client_id)
            && entry.persistent
            && !clean_start
            && entry.who != *who
        {
            return Err(SESSION_OF_ANOTHER);
        }
        self.by_id.insert(
            client_id.to_string(),
            Entry {
                who: who.clone(),
                persistent: !clean_start,
                since: now,
            },
        );
        Ok(())
    }

    /// The client ids recorded for principals `which` picks, forgotten here
    /// (the caller closes them).
    pub(super) fn take(&mut self, which: &dyn Fn(&Principal) -> bool) -> Vec<String> {
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, e)| which(&e.who))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.by_id.remove(id);
        }
        ids
    }

    /// Client ids of clean sessions admitted at least `age` before `now`,
    /// which may be forgotten once their client is gone (nothing of theirs
    /// outlives the connection).
    pub(super) fn clean_ids(&self, now: Instant, age: Duration) -> Vec<String> {
        self.by_id
            .iter()
            .filter(|(_, e)| !e.persistent && now.duration_since(e.since) >= age)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(super) fn forget(&mut self, client_id: &str) {
        if self.by_id.get(client_id).is_some_and(|e| !e.persistent) {
            self.by_id.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    fn sat(id: &str) -> Principal {
        Principal::Satellite(id.into())
    }

    #[test]
    fn another_login_cannot_resume_a_satellites_session() {
        let mut clients = Clients::default();
        clients
            .admit("kitchen-1", &sat("kitchen"), false, t0())
            .unwrap();
        assert_eq!(
            clients.admit("kitchen-1", &sat("attic"), false, t0()),
            Err(SESSION_OF_ANOTHER)
        );
        // The owner may, and a clean start throws the session away first.
        clients
            .admit("kitchen-1", &sat("kitchen"), false, t0())
            .unwrap();
        clients
            .admit("kitchen-1", &sat("attic"), true, t0())
            .unwrap();
        clients
            .admit("kitchen-1", &sat("attic"), false, t0())
            .unwrap();
    }

    #[test]
    fn a_clean_session_binds_nothing() {
        let mut clients = Clients::default();
        clients
            .admit("cli-1", &Principal::Admin, true, t0())
            .unwrap();
        clients.admit("cli-1", &sat("attic"), false, t0()).unwrap();
    }

    #[test]
    fn take_returns_and_forgets_the_picked_principals_clients() {
        let mut clients = Clients::default();
        clients.admit("a", &sat("kitchen"), false, t0()).unwrap();
        clients.admit("b", &sat("kitchen"), true, t0()).unwrap();
        clients.admit("c", &Principal::Hub, false, t0()).unwrap();
        let mut ids = clients.take(&|p| *p == sat("kitchen"));
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
        assert!(clients.take(&|p| *p == sat("kitchen")).is_empty());
    }

    #[test]
    fn only_clean_sessions_old_enough_are_forgotten() {
        let mut clients = Clients::default();
        let then = t0();
        clients.admit("a", &sat("kitchen"), false, then).unwrap();
        clients.admit("b", &sat("kitchen"), true, then).unwrap();
        let minute = Duration::from_secs(60);
        assert!(clients.clean_ids(then, minute).is_empty());
        assert_eq!(clients.clean_ids(then + minute, minute), ["b"]);
        clients.forget("a");
        clients.forget("b");
        assert_eq!(clients.take(&|_| true), ["a"]);
    }
}
