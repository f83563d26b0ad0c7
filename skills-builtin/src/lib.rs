//! Hark's compiled-in skills, and the [`Host`] trait the hub implements for them.
//!
//! A built-in skill is plain Rust: it reads an [`Intent`] whose `args` already
//! passed its manifest's schema, asks the [`Host`] for the effects it needs
//! (timers, sounds, stopping things) and answers with speech a person wants to
//! hear. Skills hold no state of their own; the hub owns timers and playback,
//! so a skill can be tested against a small in-memory host.
//!
//! Layout:
//! - [`duration`] — spoken and written durations, both ways
//! - [`timer`] — `timer.set`, and under it the rest of the timer vocabulary
//!   (`timer.status`, `timer.list`, `timer.pause`, `timer.resume`,
//!   `timer.add`, `timer.subtract`, `timer.cancel`) and the rule for which
//!   timer a request means
//! - [`cancel`] — `system.cancel`
//! - [`audio`] — `audio.play`

use std::time::Duration;

pub use hark_skill_sdk::{ErrorCode, Intent, Manifest, SkillReply};

pub mod audio;
pub mod cancel;
pub mod confirm;
pub mod duration;
pub mod timer;

/// A running timer as skills see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerView {
    pub id: String,
    pub label: Option<String>,
    pub total: Duration,
    /// Frozen while paused.
    pub remaining: Duration,
    pub paused: bool,
}

impl TimerView {
    /// `running` or `paused`, as data and events say it.
    pub fn state(&self) -> &'static str {
        if self.paused { "paused" } else { "running" }
    }
}

/// What [`Host::update_timer`] does to a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerChange {
    Pause,
    Resume,
    /// Adds to the time left (and to the total).
    Add(Duration),
    /// Takes off the time left (and the total); at least a second must stay.
    Subtract(Duration),
}

/// Where a sound plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The hub's own speaker.
    Hub,
    /// The asking satellite's speaker (the hub tells it to play).
    Satellite,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Hub => "hub",
            Target::Satellite => "satellite",
        }
    }
}

/// A playback that has started.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaybackView {
    pub id: String,
    pub sound: String,
    pub target: Target,
    pub duration: Duration,
}

/// What [`Host::stop_activity`] stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    pub playbacks: usize,
    pub calls: usize,
    /// Questions that were waiting for a yes (`system.confirm`), now answered no.
    pub confirmations: usize,
}

/// What became of a `system.confirm` answer ([`Host::answer_confirmation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Nothing of this satellite's was waiting under that token (or at all).
    Nothing,
    /// The call asked about will not run.
    Declined { token: String },
    /// The call asked about runs now; its reply is the answer.
    Confirmed { token: String },
}

/// A refusal or failure of one of the [`Host`]'s effects, in words a person
/// can act on. (A WebAssembly skill meets the SDK's `HostError` instead.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectError {
    pub code: ErrorCode,
    /// Safe to say aloud: no paths, no internals.
    pub message: String,
    /// The full story for the satellite's developer (`error.message`).
    pub detail: Option<String>,
    /// The argument at fault (a JSON pointer into the request) when the
    /// request asked for something unusable rather than the host failing.
    pub pointer: Option<&'static str>,
}

/// The effects the hub offers built-in skills. Every method acts on behalf of
/// one satellite and never blocks for long.
pub trait Host {
    fn start_timer(
        &self,
        satellite: &str,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<TimerView, EffectError>;
    /// The satellite's timers, soonest first.
    fn timers(&self, satellite: &str) -> Vec<TimerView>;
    /// Cancels the given timers of this satellite; returns those it cancelled.
    fn cancel_timers(&self, satellite: &str, ids: &[String])
    -> Result<Vec<TimerView>, EffectError>;
    /// Pauses, resumes or shifts the satellite's timer `id`; returns it as it
    /// is now. A change that cannot be made (pausing a paused timer, taking
    /// off more than is left) changes nothing and says why.
    fn update_timer(
        &self,
        satellite: &str,
        id: &str,
        change: TimerChange,
    ) -> Result<TimerView, EffectError>;
    fn play(
        &self,
        satellite: &str,
        sound: &str,
        target: Target,
        volume: f32,
    ) -> Result<PlaybackView, EffectError>;
    /// Stops the satellite's playback and its in-flight skill calls other than
    /// `request_id` (the cancel request itself).
    fn stop_activity(&self, satellite: &str, request_id: &str) -> Stopped;
    /// Answers the satellite's question waiting for a yes (a sensitive
    /// call): the one of `token`, else its newest.
    fn answer_confirmation(&self, satellite: &str, token: Option<&str>, yes: bool) -> Answered;
}

/// Why a built-in skill did not succeed. (A WebAssembly skill answers the
/// SDK's `SkillError` instead.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuiltinError {
    /// An argument passed the schema but means nothing usable ("5 blorps").
    Invalid { pointer: String, message: String },
    /// The request cannot be done as asked, for a reason the person should
    /// hear or a question they should answer ("Which timer: pasta or tea?"):
    /// the code's status (`invalid`), with `message` as the speech.
    Refused { code: ErrorCode, message: String },
    /// The skill could not do it (too many timers, a broken sound file).
    /// `message` can be said aloud; `detail`, when present, is the full
    /// story for `error.message`.
    Failed {
        code: ErrorCode,
        message: String,
        detail: Option<String>,
    },
}

impl BuiltinError {
    pub fn invalid(pointer: &str, message: impl Into<String>) -> BuiltinError {
        BuiltinError::Invalid {
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            BuiltinError::Invalid { message, .. }
            | BuiltinError::Refused { message, .. }
            | BuiltinError::Failed { message, .. } => message,
        }
    }
}

impl From<EffectError> for BuiltinError {
    fn from(e: EffectError) -> BuiltinError {
        match e.pointer {
            Some(pointer) => BuiltinError::Invalid {
                pointer: pointer.to_string(),
                message: e.message,
            },
            None if e.code.status() == hark_skill_sdk::Status::Invalid => BuiltinError::Refused {
                code: e.code,
                message: e.message,
            },
            None => BuiltinError::Failed {
                code: e.code,
                message: e.message,
                detail: e.detail,
            },
        }
    }
}

/// A compiled-in skill.
pub trait BuiltinSkill: Send + Sync {
    /// The skill's manifest, as JSON text from `manifests/`.
    fn manifest_json(&self) -> &'static str;
    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError>;
}

/// Every built-in skill.
pub fn all() -> Vec<Box<dyn BuiltinSkill>> {
    vec![
        Box::new(timer::TimerSet),
        Box::new(timer::status::TimerStatus),
        Box::new(timer::status::TimerList),
        Box::new(timer::change::TimerPause),
        Box::new(timer::change::TimerResume),
        Box::new(timer::change::TimerAdd),
        Box::new(timer::change::TimerSubtract),
        Box::new(timer::cancel::TimerCancel),
        Box::new(cancel::SystemCancel),
        Box::new(confirm::SystemConfirm),
        Box::new(audio::AudioPlay),
    ]
}

/// Upper-cases the first letter, for speech that starts with a label.
pub(crate) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// "a", "a or b", "a, b or c".
pub(crate) fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// An in-memory [`Host`] for the skills' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    pub struct FakeHost {
        pub timers: RefCell<Vec<(String, TimerView)>>,
        pub played: RefCell<Vec<(String, String, Target, f32)>>,
        pub playing: RefCell<Vec<String>>,
        pub calls: RefCell<usize>,
        /// Questions waiting: (satellite, token).
        pub asking: RefCell<Vec<(String, String)>>,
    }

    impl Host for FakeHost {
        fn start_timer(
            &self,
            satellite: &str,
            label: Option<&str>,
            duration: Duration,
        ) -> Result<TimerView, EffectError> {
            let mut timers = self.timers.borrow_mut();
            let view = TimerView {
                id: format!("t-{}", timers.len() + 1),
                label: label.map(str::to_string),
                total: duration,
                remaining: duration,
                paused: false,
            };
            timers.push((satellite.to_string(), view.clone()));
            Ok(view)
        }
        fn timers(&self, satellite: &str) -> Vec<TimerView> {
            self.timers
                .borrow()
                .iter()
                .filter(|(s, _)| s == satellite)
                .map(|(_, t)| t.clone())
                .collect()
        }
        fn cancel_timers(
            &self,
            satellite: &str,
            ids: &[String],
        ) -> Result<Vec<TimerView>, EffectError> {
            let mut timers = self.timers.borrow_mut();
            let (gone, kept) = timers
                .drain(..)
                .partition(|(s, t)| s == satellite && ids.contains(&t.id));
            *timers = kept;
            Ok(gone
                .into_iter()
                .map(|(_, t): (String, TimerView)| t)
                .collect())
        }
        fn update_timer(
            &self,
            satellite: &str,
            id: &str,
            change: TimerChange,
        ) -> Result<TimerView, EffectError> {
            let refuse = |code, message: &str| EffectError {
                code,
                message: message.to_string(),
                detail: None,
                pointer: None,
            };
            let mut timers = self.timers.borrow_mut();
            let Some((_, t)) = timers
                .iter_mut()
                .find(|(s, t)| s == satellite && t.id == id)
            else {
                return Err(refuse(ErrorCode::NoTimer, "no such timer"));
            };
            match change {
                TimerChange::Pause if t.paused => {
                    return Err(refuse(ErrorCode::TimerState, "already paused"));
                }
                TimerChange::Resume if !t.paused => {
                    return Err(refuse(ErrorCode::TimerState, "already running"));
                }
                TimerChange::Pause => t.paused = true,
                TimerChange::Resume => t.paused = false,
                TimerChange::Add(d) => {
                    t.remaining += d;
                    t.total += d;
                }
                TimerChange::Subtract(d) => {
                    if t.remaining < d + Duration::from_secs(1) {
                        return Err(refuse(ErrorCode::BadArg, "too much"));
                    }
                    t.remaining -= d;
                    t.total = t.total.saturating_sub(d).max(t.remaining);
                }
            }
            Ok(t.clone())
        }
        fn play(
            &self,
            satellite: &str,
            sound: &str,
            target: Target,
            volume: f32,
        ) -> Result<PlaybackView, EffectError> {
            if sound == "missing.wav" {
                return Err(EffectError {
                    code: ErrorCode::SoundUnplayable,
                    message: "There is no sound called missing.wav.".into(),
                    detail: None,
                    pointer: None,
                });
            }
            self.played
                .borrow_mut()
                .push((satellite.into(), sound.into(), target, volume));
            self.playing.borrow_mut().push(satellite.into());
            Ok(PlaybackView {
                id: "p-1".into(),
                sound: sound.into(),
                target,
                duration: Duration::from_millis(800),
            })
        }
        fn stop_activity(&self, satellite: &str, _request_id: &str) -> Stopped {
            let mut playing = self.playing.borrow_mut();
            let before = playing.len();
            playing.retain(|s| s != satellite);
            let mut asking = self.asking.borrow_mut();
            let waiting = asking.len();
            asking.retain(|(s, _)| s != satellite);
            Stopped {
                playbacks: before - playing.len(),
                calls: *self.calls.borrow(),
                confirmations: waiting - asking.len(),
            }
        }
        fn answer_confirmation(&self, satellite: &str, token: Option<&str>, yes: bool) -> Answered {
            let mut asking = self.asking.borrow_mut();
            let Some(at) = asking
                .iter()
                .rposition(|(s, t)| s == satellite && token.is_none_or(|token| token == t))
            else {
                return Answered::Nothing;
            };
            let (_, token) = asking.remove(at);
            if yes {
                Answered::Confirmed { token }
            } else {
                Answered::Declined { token }
            }
        }
    }

    pub fn intent(name: &str, args: serde_json::Value) -> Intent {
        Intent {
            id: "r-1".into(),
            intent: name.into(),
            args: args.as_object().cloned().unwrap_or_default(),
            text: None,
            confidence: None,
            satellite: "kitchen".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_manifest_is_valid_and_named_after_its_file() {
        for skill in all() {
            let m = Manifest::from_json(skill.manifest_json()).unwrap();
            assert_eq!(m.problems(), Vec::new(), "{}", m.name);
            assert!(!m.trusted, "{} must run in the paranoid tier", m.name);
        }
    }

    #[test]
    fn words_join_like_speech() {
        let w = |v: &[&str]| join_or(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(w(&[]), "");
        assert_eq!(w(&["pasta"]), "pasta");
        assert_eq!(w(&["pasta", "eggs"]), "pasta or eggs");
        assert_eq!(w(&["pasta", "eggs", "tea"]), "pasta, eggs or tea");
    }
}
