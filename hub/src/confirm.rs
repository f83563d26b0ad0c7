//! Questions before sensitive calls (SPEC §8.1). A skill whose manifest says
//! `"confirm": true`, or that `[confirm] skills` lists, passes the gate and
//! its schema and then waits here as a [`Question`] while the satellite is
//! asked "Unlock the front door?". `system.confirm` from the same satellite
//! answers it: yes runs the call with the args it had when it asked, no
//! drops it; so do `system.cancel` and the timeout (`confirm.timeout_s`).
//!
//! The three audit records of one question name each other: the prompt
//! (the request's own record, status `confirm`, with the token), the answer
//! (the `system.confirm` request's record, naming the token and the
//! prompt's seq), and the outcome (the call's run, or a record with status
//! `declined`, `expired` or `cancelled`, naming both).
//!
//! Questions live in memory only: a restart drops them unanswered, and the
//! call never runs. That is the safe way round for a door lock. One task
//! ([`Confirmations::run`]) expires them all, so a flood of questions
//! costs a bounded table (4 per satellite, 1,024 in all), not a task each.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hark_skill_sdk::{Reply, Status};
use hark_skills_builtin::confirm::DECLINED;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::audit::{self, Audit};
use crate::config::ConfirmConfig;
use crate::events::Outbox;
use crate::policy::SkillInfo;
use crate::request::Request;

/// The built-in intent that answers a question.
pub const CONFIRM: &str = "system.confirm";

/// Skills that answer or stop questions, so never ask one.
pub const NEVER_ASKS: [&str; 2] = [CONFIRM, "system.cancel"];

/// Questions one satellite may have waiting; a newer one drops its oldest.
pub const MAX_PER_SATELLITE: usize = 4;

/// Questions the hub keeps waiting in all; beyond it a sensitive call is
/// answered `busy` until some are answered or expire.
pub const MAX_WAITING: usize = 1024;

/// A sensitive call waiting for its satellite's yes.
#[derive(Debug, Clone)]
pub struct Question {
    pub token: String,
    /// The call as it was asked, its args validated then.
    pub request: Request,
    /// The audit seq of the prompt.
    pub prompt_audit: Option<u64>,
    asked: Instant,
}

impl Question {
    /// What an answer or outcome record says of the question it closes.
    pub fn described(&self) -> String {
        match self.prompt_audit {
            Some(seq) => format!("question {} (prompt at audit {seq})", self.token),
            None => format!("question {}", self.token),
        }
    }
}

/// Why a question closed without its call running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The satellite said no.
    Declined,
    /// No answer within `confirm.timeout_s`.
    Expired,
    /// `system.cancel` from the satellite.
    Cancelled,
    /// The satellite asked more than [`MAX_PER_SATELLITE`] questions at once.
    Replaced,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Declined => "declined",
            Closed::Expired => "expired",
            Closed::Cancelled => "cancelled",
            Closed::Replaced => "replaced",
        }
    }
}

/// The hub has [`MAX_WAITING`] questions waiting already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

#[derive(Debug, Default)]
struct State {
    next: u64,
    waiting: usize,
    /// Each satellite's questions, oldest first.
    by_satellite: HashMap<String, VecDeque<Question>>,
}

/// The questions waiting for an answer, and what closes them.
#[derive(Debug)]
pub struct Confirmations {
    state: Mutex<State>,
    /// `[confirm] skills` (a reload may change it).
    listed: std::sync::RwLock<BTreeSet<String>>,
    timeout: Duration,
    audit: Arc<Audit>,
    outbox: Outbox,
    /// Wakes [`Confirmations::run`]: a question was asked.
    wake: Notify,
}

impl Confirmations {
    pub fn new(config: &ConfirmConfig, audit: Arc<Audit>, outbox: Outbox) -> Confirmations {
        Confirmations {
            state: Mutex::default(),
            listed: std::sync::RwLock::new(config.skills.clone()),
            timeout: config.timeout,
            audit,
            outbox,
            wake: Notify::new(),
        }
    }

    /// Whether `skill` asks before each call: its manifest says so, or the
    /// admin listed it. Never the skills that answer or stop questions.
    pub fn sensitive(&self, skill: &SkillInfo) -> bool {
        let listed = self.listed.read().unwrap_or_else(|e| e.into_inner());
        (skill.manifest.confirm || listed.contains(&skill.name))
            && !NEVER_ASKS.contains(&skill.name.as_str())
    }

    /// `[confirm] skills` as a reload read it; questions already asked wait on.
    pub fn set_listed(&self, skills: BTreeSet<String>) {
        *self.listed.write().unwrap_or_else(|e| e.into_inner()) = skills;
    }

    /// How long a question waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `request` waiting for its satellite's yes; returns the token
    /// of its question. Call [`Confirmations::asked`] once the prompt is
    /// audited.
    pub fn ask(self: &Arc<Self>, request: Request) -> Result<String, Full> {
        let mut state = self.state();
        if state.waiting >= MAX_WAITING {
            return Err(Full);
        }
        state.next += 1;
        let token = format!("c-{}", state.next);
        let question = Question {
            token: token.clone(),
            request,
            prompt_audit: None,
            asked: Instant::now(),
        };
        let queue = state
            .by_satellite
            .entry(question.request.satellite.clone())
            .or_default();
        queue.push_back(question);
        let replaced = (queue.len() > MAX_PER_SATELLITE)
            .then(|| queue.pop_front())
            .flatten();
        if replaced.is_none() {
            state.waiting += 1;
        }
        drop(state);
        if let Some(old) = replaced {
            self.close(&old, Closed::Replaced, None);
        }
        Ok(token)
    }

    /// Notes where the prompt of `token` was audited; from now on
    /// [`Confirmations::run`] closes it as expired once `confirm.timeout_s`
    /// has passed unanswered.
    pub fn asked(&self, token: &str, prompt_audit: Option<u64>) {
        for question in self.state().by_satellite.values_mut().flatten() {
            if question.token == token {
                question.prompt_audit = prompt_audit;
            }
        }
        self.wake.notify_one();
    }

    /// Closes questions as they expire, until the task is dropped: one task
    /// for all of them, asleep while none waits.
    pub async fn run(self: Arc<Self>) {
        loop {
            let notified = self.wake.notified();
            let now = Instant::now();
            let mut expired = Vec::new();
            let mut next: Option<Instant> = None;
            {
                let mut state = self.state();
                let State {
                    by_satellite,
                    waiting,
                    ..
                } = &mut *state;
                by_satellite.retain(|_, queue| {
                    queue.retain(|q| {
                        let due = q.asked + self.timeout;
                        if due <= now {
                            expired.push(q.clone());
                            *waiting -= 1;
                            false
                        } else {
                            next = Some(next.map_or(due, |n| n.min(due)));
                            true
                        }
                    });
                    !queue.is_empty()
                });
            }
            for question in &expired {
                self.close(question, Closed::Expired, None);
            }
            match next {
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Takes the satellite's question of `token` (else its newest) for its
    /// answer, if it has one still in time.
    pub fn take(&self, satellite: &str, token: Option<&str>) -> Option<Question> {
        let timeout = self.timeout;
        self.remove(|q| {
            q.request.satellite == satellite
                && token.is_none_or(|t| t == q.token)
                && q.asked.elapsed() < timeout
        })
    }

    /// Closes every question of the satellite as cancelled; returns how many.
    pub fn cancel(&self, satellite: &str) -> usize {
        let gone: Vec<Question> = {
            let mut state = self.state();
            let gone: Vec<Question> = state
                .by_satellite
                .remove(satellite)
                .map(Vec::from)
                .unwrap_or_default();
            state.waiting -= gone.len();
            gone
        };
        for question in &gone {
            self.close(question, Closed::Cancelled, None);
        }
        gone.len()
    }

    /// Questions waiting now.
    pub fn len(&self) -> usize {
        self.state().waiting
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest question that `matches`, taken out.
    fn remove(&self, matches: impl Fn(&Question) -> bool) -> Option<Question> {
        let mut state = self.state();
        let (satellite, at) = state.by_satellite.iter().find_map(|(satellite, queue)| {
            queue
                .iter()
                .rposition(&matches)
                .map(|at| (satellite.clone(), at))
        })?;
        let queue = state.by_satellite.get_mut(&satellite)?;
        let question = queue.remove(at)?;
        if queue.is_empty() {
            state.by_satellite.remove(&satellite);
        }
        state.waiting -= 1;
        Some(question)
    }

    /// Audits a question closed without its call running and, unless its
    /// satellite is being answered already (`answer_audit`: a `no`, whose
    /// own reply says so), tells the satellite: a reply with the asking
    /// request's id, "Okay, I won't."
    pub fn close(
        &self,
        question: &Question,
        why: Closed,
        answer_audit: Option<u64>,
    ) -> Option<u64> {
        let request = &question.request;
        let mut message = format!("not run: {}, {}", why.as_str(), question.described());
        if let Some(seq) = answer_audit {
            message.push_str(&format!("; answered at audit {seq}"));
        }
        let seq = self.audit.record(&audit::Record {
            kind: audit::Kind::Request,
            satellite: Some(request.satellite.clone()),
            request_id: Some(request.id.clone()),
            intent: Some(request.intent.clone()),
            skill: Some(request.intent.clone()),
            status: Some(why.as_str().into()),
            message: Some(message),
            ..Default::default()
        });
        tracing::info!(satellite = %request.satellite, token = %question.token,
            skill = %request.intent, "question closed: {}", why.as_str());
        if why != Closed::Declined {
            self.outbox.reply(
                request.protocol,
                &request.satellite,
                &declined_reply(question, why, seq),
            );
        }
        seq
    }
}

/// The reply that closes a question without running its call.
pub fn declined_reply(question: &Question, why: Closed, audit: Option<u64>) -> Reply {
    Reply {
        id: Some(question.request.id.clone()),
        intent: Some(question.request.intent.clone()),
        status: Status::Ok,
        // Only an expired question is news to the person: a cancel says
        // so in its own reply, and a replaced one is being asked again.
        speech: (why == Closed::Expired).then(|| DECLINED.to_string()),
        data: Some(json!({"token": question.token, "outcome": why.as_str()})),
        error: None,
        audit,
        elapsed_ms: None,
        confirm: None,
    }
}

/// The question a sensitive call asks: the manifest's `confirm_prompt`
/// with each `{arg}` replaced by that arg's value, else one made of the
/// first clause of the skill's description (or of its name).
pub fn prompt(
    template: Option<&str>,
    description: &str,
    name: &str,
    args: &serde_json::Map<String, Value>,
) -> String {
    let Some(template) = template else {
        // The description's first clause: "Start a countdown timer on the
        // asking satellite; it rings..." asks about starting the timer.
        let what = description.split(['.', ';']).next().unwrap_or("").trim();
        return if what.is_empty() {
            format!("Should I run {name}?")
        } else {
            format!("{what}: should I go ahead?")
        };
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match args.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => out.push_str(name),
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Protocol;

    fn args(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn prompts_fill_their_placeholders_and_fall_back_to_the_description() {
        let a = args(json!({"door": "front door", "minutes": 5}));
        assert_eq!(
            prompt(
                Some("Unlock the {door} for {minutes} minutes?"),
                "",
                "lock",
                &a
            ),
            "Unlock the front door for 5 minutes?"
        );
        assert_eq!(prompt(Some("Open {gate}?"), "", "gate", &a), "Open gate?");
        assert_eq!(
            prompt(None, "Unlocks a door.", "lock", &a),
            "Unlocks a door: should I go ahead?"
        );
        assert_eq!(
            prompt(None, "Unlock a door; it locks again by itself.", "lock", &a),
            "Unlock a door: should I go ahead?"
        );
        assert_eq!(prompt(None, " ", "lock", &a), "Should I run lock?");
    }

    fn request(satellite: &str, id: &str) -> Request {
        Request {
            id: id.into(),
            intent: "lock".into(),
            args: Default::default(),
            text: None,
            confidence: None,
            satellite: satellite.into(),
            protocol: Protocol::NATIVE,
        }
    }

    /// A scratch folder for the audit log, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn confirmations(timeout: Duration) -> (Arc<Confirmations>, Scratch) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hark-confirm-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let log = crate::audit::AuditLog::open(&dir.join("audit.jsonl")).unwrap();
        let (outbox, _rx) = Outbox::channel(2048);
        let config = ConfirmConfig {
            timeout,
            ..ConfirmConfig::default()
        };
        let c = Confirmations::new(&config, Audit::new(log), outbox);
        (Arc::new(c), Scratch(dir))
    }

    #[test]
    fn a_question_is_answered_only_by_its_satellite_and_only_once() {
        let (c, _dir) = confirmations(Duration::from_secs(10));
        let t1 = c.ask(request("kitchen", "r-1")).unwrap();
        let t2 = c.ask(request("hall", "r-2")).unwrap();
        assert!(c.take("hall", Some(&t1)).is_none(), "not the hall's");
        assert_eq!(c.take("kitchen", None).unwrap().token, t1);
        assert!(c.take("kitchen", Some(&t1)).is_none(), "answered already");
        assert_eq!(c.take("hall", Some(&t2)).unwrap().request.id, "r-2");
        assert!(c.is_empty());
    }

    #[test]
    fn a_fifth_question_drops_the_oldest_and_the_hub_caps_them_all() {
        let (c, _dir) = confirmations(Duration::from_secs(10));
        let tokens: Vec<String> = (0..=MAX_PER_SATELLITE)
            .map(|i| c.ask(request("kitchen", &format!("r-{i}"))).unwrap())
            .collect();
        assert_eq!(c.len(), MAX_PER_SATELLITE);
        assert!(c.take("kitchen", Some(&tokens[0])).is_none());
        assert!(c.take("kitchen", Some(&tokens[1])).is_some());
        assert_eq!(c.cancel("kitchen"), MAX_PER_SATELLITE - 1);
        for i in 0..MAX_WAITING {
            c.ask(request(&format!("s{}", i / MAX_PER_SATELLITE), "r"))
                .unwrap();
        }
        assert_eq!(c.ask(request("late", "r")), Err(Full));
    }

    #[test]
    fn an_expired_question_cannot_be_answered() {
        let (c, _dir) = confirmations(Duration::from_millis(1));
        c.ask(request("kitchen", "r-1")).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.take("kitchen", None).is_none());
    }
}
