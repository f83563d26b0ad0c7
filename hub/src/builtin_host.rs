//! The hub's side of the built-in skills' [`Host`] trait: each method is one
//! function of the [effects layer](crate::effects), acting for the skill,
//! satellite and protocol of one request. The effects layer asks the policy
//! gate and audits a denial, exactly as for a WebAssembly skill.

use std::cell::RefCell;
use std::time::Duration;

use hark_skills_builtin::duration::MAX_DURATION;
use hark_skills_builtin::{
    Answered, EffectError, ErrorCode, Host, PlaybackView, Stopped, Target, TimerChange, TimerView,
};

use crate::confirm::Question;
use crate::effects::{Denial, Effects, Refused, UpdateFailed};
use crate::timers::{StartError, Ticket, TimerStoreError, Update, UpdateError, now_ms};

/// What a person hears when the gate refuses one of a built-in's effects.
const DENIED_SPEECH: &str = "Sorry, I'm not allowed to do that here.";

/// The effects of one built-in request, seen through [`Host`].
#[derive(Debug)]
pub struct RequestHost {
    effects: RefCell<Effects>,
    /// The first effect the gate refused in this request.
    denied: RefCell<Option<Denial>>,
    /// The question `system.confirm` answered, and whether with yes.
    answered: RefCell<Option<(Question, bool)>>,
}

/// What a built-in request left behind, once its skill has returned.
#[derive(Debug)]
pub struct Finished {
    /// The newest timer change to wait for before replying.
    pub ticket: Option<Ticket>,
    /// The first effect the gate refused, if any (already audited).
    pub denied: Option<Denial>,
    /// A question answered (`system.confirm`), and whether with yes: the
    /// dispatcher runs or closes it.
    pub answered: Option<(Question, bool)>,
}

impl RequestHost {
    /// `effects` is [`Effects::for_builtin`] of the request.
    pub fn new(effects: Effects) -> RequestHost {
        RequestHost {
            effects: RefCell::new(effects),
            denied: RefCell::new(None),
            answered: RefCell::new(None),
        }
    }

    /// The end of the request: the summary of denials not audited one by
    /// one, the change to wait for, and the first denial.
    pub fn finish(self) -> Finished {
        let mut effects = self.effects.into_inner();
        effects.finish();
        Finished {
            ticket: effects.ticket(),
            denied: self.denied.into_inner(),
            answered: self.answered.into_inner(),
        }
    }

    /// Checks that a built-in asks for its own request's satellite: the
    /// effects act for that one only, whatever it passes.
    fn check(&self, satellite: &str) {
        debug_assert_eq!(
            satellite,
            self.effects.borrow().satellite(),
            "a built-in acts for its request's satellite only"
        );
    }

    /// Keeps the first denial, and turns it into the skill's error.
    fn denial(&self, denial: Denial) -> EffectError {
        let detail = format!("{} (rule {})", denial.reason, denial.rule);
        self.denied.borrow_mut().get_or_insert(denial);
        EffectError {
            code: ErrorCode::Denied,
            message: DENIED_SPEECH.to_string(),
            detail: Some(detail),
            pointer: None,
        }
    }

    /// Keeps a denial whose effect has no error to answer with.
    fn note(&self, refused: Refused<std::convert::Infallible>) {
        let Refused::Denied(denial) = refused;
        self.denial(denial);
    }
}

fn storage(e: &TimerStoreError) -> EffectError {
    EffectError {
        code: ErrorCode::Storage,
        message: "The timers could not be saved, so nothing was changed.".to_string(),
        detail: Some(e.to_string()),
        pointer: None,
    }
}

fn refused_update(e: &UpdateError) -> EffectError {
    let (code, message, pointer) = match e {
        UpdateError::NotFound { .. } => (ErrorCode::NoTimer, "That timer has already ended.", None),
        UpdateError::AlreadyPaused { .. } => {
            (ErrorCode::TimerState, "That timer is already paused.", None)
        }
        UpdateError::NotPaused { .. } => (
            ErrorCode::TimerState,
            "That timer is already running.",
            None,
        ),
        UpdateError::WouldEnd { .. } => (
            ErrorCode::BadArg,
            "That timer has less time left than that.",
            Some("/duration"),
        ),
        UpdateError::TooLong { .. } => (
            ErrorCode::BadArg,
            "That would make the timer longer than a timer can be.",
            Some("/duration"),
        ),
    };
    EffectError {
        code,
        message: message.to_string(),
        detail: Some(e.to_string()),
        pointer,
    }
}

impl Host for RequestHost {
    fn start_timer(
        &self,
        satellite: &str,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<TimerView, EffectError> {
        self.check(satellite);
        let result = self.effects.borrow_mut().start_timer(label, duration);
        match result {
            Ok(timer) => Ok(timer.view(now_ms())),
            Err(Refused::Denied(denial)) => Err(self.denial(denial)),
            Err(Refused::Failed(StartError::Timer(e))) => Err(EffectError {
                code: ErrorCode::TooManyTimers,
                message: e.to_string(),
                detail: None,
                pointer: None,
            }),
            Err(Refused::Failed(StartError::Store(e))) => Err(storage(&e)),
        }
    }

    fn timers(&self, satellite: &str) -> Vec<TimerView> {
        self.check(satellite);
        let result = self.effects.borrow_mut().timers();
        result.unwrap_or_else(|refused| {
            self.note(refused);
            Vec::new()
        })
    }

    fn cancel_timers(
        &self,
        satellite: &str,
        ids: &[String],
    ) -> Result<Vec<TimerView>, EffectError> {
        self.check(satellite);
        let result = self.effects.borrow_mut().cancel_timers(ids);
        match result {
            Ok(gone) => {
                let now = now_ms();
                Ok(gone.iter().map(|t| t.view(now)).collect())
            }
            Err(Refused::Denied(denial)) => Err(self.denial(denial)),
            Err(Refused::Failed(e)) => Err(storage(&e)),
        }
    }

    fn update_timer(
        &self,
        satellite: &str,
        id: &str,
        change: TimerChange,
    ) -> Result<TimerView, EffectError> {
        self.check(satellite);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let update = match change {
            TimerChange::Pause => Update::Pause,
            TimerChange::Resume => Update::Resume,
            TimerChange::Add(d) => Update::Shift(ms(d)),
            TimerChange::Subtract(d) => Update::Shift(-ms(d)),
        };
        let result = self
            .effects
            .borrow_mut()
            .update_timer(id, update, MAX_DURATION);
        match result {
            Ok(timer) => Ok(timer.view(now_ms())),
            Err(Refused::Denied(denial)) => Err(self.denial(denial)),
            Err(Refused::Failed(UpdateFailed::Store(e))) => Err(storage(&e)),
            // The skill checks these first and words them better; the
            // table has the last word when a change came in between.
            Err(Refused::Failed(UpdateFailed::Timer(e))) => Err(refused_update(&e)),
        }
    }

    fn play(
        &self,
        satellite: &str,
        sound: &str,
        target: Target,
        volume: f32,
    ) -> Result<PlaybackView, EffectError> {
        self.check(satellite);
        let result = self.effects.borrow_mut().play(sound, target, volume);
        match result {
            Ok(view) => Ok(view),
            Err(Refused::Denied(denial)) => Err(self.denial(denial)),
            Err(Refused::Failed(e)) => Err(e),
        }
    }

    fn stop_activity(&self, satellite: &str, request_id: &str) -> Stopped {
        self.check(satellite);
        let mut effects = self.effects.borrow_mut();
        debug_assert_eq!(request_id, effects.request_id());
        let playbacks = effects.stop_playback();
        let calls = effects.stop_calls();
        let confirmations = effects.cancel_questions();
        drop(effects);
        Stopped {
            playbacks: playbacks.unwrap_or_else(|refused| {
                self.note(refused);
                0
            }),
            calls,
            confirmations,
        }
    }

    fn answer_confirmation(&self, satellite: &str, token: Option<&str>, yes: bool) -> Answered {
        self.check(satellite);
        let Some(question) = self.effects.borrow_mut().take_question(token) else {
            return Answered::Nothing;
        };
        let token = question.token.clone();
        *self.answered.borrow_mut() = Some((question, yes));
        if yes {
            Answered::Confirmed { token }
        } else {
            Answered::Declined { token }
        }
    }
}
