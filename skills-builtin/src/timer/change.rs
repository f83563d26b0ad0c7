//! `timer.pause`, `timer.resume`, `timer.add`, `timer.subtract`: change one
//! of the asking satellite's timers, running or paused. What cannot be done
//! (pausing a paused timer, taking off more than is left, growing a timer
//! past the longest one may set) is refused with a sentence that says why,
//! and changes nothing.

use std::time::Duration;

use super::pick::{self, data, name};
use crate::duration::{MAX_DURATION, parse_duration, speak_duration};
use crate::{
    BuiltinError, BuiltinSkill, ErrorCode, Host, Intent, SkillReply, TimerChange, TimerView,
    capitalize,
};

#[derive(Debug)]
pub struct TimerPause;

#[derive(Debug)]
pub struct TimerResume;

#[derive(Debug)]
pub struct TimerAdd;

#[derive(Debug)]
pub struct TimerSubtract;

impl BuiltinSkill for TimerPause {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.pause.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let timer = chosen(intent, host, pick::duration(intent)?)?;
        if timer.paused {
            return Err(state(format!("The {} is already paused.", name(&timer))));
        }
        let now = host.update_timer(&intent.satellite, &timer.id, TimerChange::Pause)?;
        let speech = format!(
            "Paused the {} with {} left.",
            name(&now),
            speak_duration(now.remaining)
        );
        Ok(SkillReply::speech(speech).with_data(data(&now)))
    }
}

impl BuiltinSkill for TimerResume {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.resume.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let timer = chosen(intent, host, pick::duration(intent)?)?;
        if !timer.paused {
            return Err(state(format!("The {} is already running.", name(&timer))));
        }
        let now = host.update_timer(&intent.satellite, &timer.id, TimerChange::Resume)?;
        let speech = format!(
            "Resumed the {}; it has {} left.",
            name(&now),
            speak_duration(now.remaining)
        );
        Ok(SkillReply::speech(speech).with_data(data(&now)))
    }
}

impl BuiltinSkill for TimerAdd {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.add.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let amount = amount(intent)?;
        // `duration` is the amount here, so it cannot also pick the timer.
        let timer = chosen(intent, host, None)?;
        if timer.total + amount > MAX_DURATION {
            return Err(BuiltinError::invalid(
                "/duration",
                format!(
                    "Adding {} would make the {} longer than {}, the longest a timer can be.",
                    speak_duration(amount),
                    name(&timer),
                    speak_duration(MAX_DURATION)
                ),
            ));
        }
        let now = host.update_timer(&intent.satellite, &timer.id, TimerChange::Add(amount))?;
        let speech = format!(
            "Added {} to the {}; it has {} left.",
            speak_duration(amount),
            name(&now),
            speak_duration(now.remaining)
        );
        Ok(SkillReply::speech(speech).with_data(data(&now)))
    }
}

impl BuiltinSkill for TimerSubtract {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.subtract.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let amount = amount(intent)?;
        let timer = chosen(intent, host, None)?;
        if timer.remaining < amount + Duration::from_secs(1) {
            return Err(BuiltinError::invalid(
                "/duration",
                format!(
                    "The {} has only {} left; I can't take {} off it. Cancel it instead?",
                    name(&timer),
                    speak_duration(timer.remaining),
                    speak_duration(amount)
                ),
            ));
        }
        let now = host.update_timer(&intent.satellite, &timer.id, TimerChange::Subtract(amount))?;
        let speech = format!(
            "Took {} off the {}; it has {} left.",
            speak_duration(amount),
            name(&now),
            speak_duration(now.remaining)
        );
        Ok(SkillReply::speech(speech).with_data(data(&now)))
    }
}

/// The timer the request means; none at all is `no_timer`.
fn chosen(
    intent: &Intent,
    host: &dyn Host,
    spoken: Option<Duration>,
) -> Result<TimerView, BuiltinError> {
    let timers = host.timers(&intent.satellite);
    pick::pick(timers, pick::label(intent), spoken)?.ok_or_else(pick::none)
}

/// The `duration` to add or take off: what `timer.set` accepts, so "-5m"
/// and "10 years" are refused at `/duration` with the parser's words.
fn amount(intent: &Intent) -> Result<Duration, BuiltinError> {
    let text = intent
        .args
        .get("duration")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    parse_duration(text).map_err(|e| BuiltinError::invalid("/duration", e.to_string()))
}

fn state(message: String) -> BuiltinError {
    BuiltinError::Refused {
        code: ErrorCode::TimerState,
        message: capitalize(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, intent};
    use serde_json::json;

    fn host() -> FakeHost {
        let host = FakeHost::default();
        host.start_timer("kitchen", Some("pasta"), Duration::from_secs(600))
            .unwrap();
        host
    }

    fn run(
        skill: &dyn BuiltinSkill,
        name: &str,
        args: serde_json::Value,
        host: &FakeHost,
    ) -> Result<SkillReply, BuiltinError> {
        skill.handle(&intent(name, args), host)
    }

    fn speech(reply: Result<SkillReply, BuiltinError>) -> String {
        reply.unwrap().speech.unwrap()
    }

    fn refusal(reply: Result<SkillReply, BuiltinError>) -> (String, String) {
        match reply.unwrap_err() {
            BuiltinError::Refused { code, message } => (code.to_string(), message),
            BuiltinError::Invalid { pointer, message } => (pointer, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pause_then_resume_the_only_timer() {
        let host = host();
        assert_eq!(
            speech(run(&TimerPause, "timer.pause", json!({}), &host)),
            "Paused the pasta timer with 10 minutes left."
        );
        assert!(host.timers("kitchen")[0].paused);
        assert_eq!(
            refusal(run(
                &TimerPause,
                "timer.pause",
                json!({"label": "pasta"}),
                &host
            )),
            (
                "timer_state".into(),
                "The pasta timer is already paused.".into()
            )
        );
        let reply = run(&TimerResume, "timer.resume", json!({}), &host).unwrap();
        assert_eq!(
            reply.speech.as_deref(),
            Some("Resumed the pasta timer; it has 10 minutes left.")
        );
        assert_eq!(reply.data.unwrap()["state"], "running");
        assert_eq!(
            refusal(run(&TimerResume, "timer.resume", json!({}), &host)),
            (
                "timer_state".into(),
                "The pasta timer is already running.".into()
            )
        );
    }

    #[test]
    fn add_and_subtract_say_what_is_left() {
        let host = host();
        assert_eq!(
            speech(run(
                &TimerAdd,
                "timer.add",
                json!({"duration": "5 minutes"}),
                &host
            )),
            "Added 5 minutes to the pasta timer; it has 15 minutes left."
        );
        assert_eq!(
            speech(run(
                &TimerSubtract,
                "timer.subtract",
                json!({"duration": "90s", "label": "Pasta"}),
                &host
            )),
            "Took 1 minute and 30 seconds off the pasta timer; it has 13 minutes and 30 seconds left."
        );
        assert_eq!(
            host.timers("kitchen")[0].remaining,
            Duration::from_secs(810)
        );
    }

    #[test]
    fn bad_amounts_are_refused_at_duration_and_change_nothing() {
        let host = host();
        for (args, says) in [
            (json!({"duration": "-5m"}), "negative"),
            (json!({"duration": "10 years"}), "year"),
            (json!({"duration": "7 days"}), "longer than 7 days"),
        ] {
            let (pointer, message) = refusal(run(&TimerAdd, "timer.add", args.clone(), &host));
            assert_eq!(pointer, "/duration", "{args}");
            assert!(message.to_lowercase().contains(says), "{args}: {message}");
        }
        let (pointer, message) = refusal(run(
            &TimerSubtract,
            "timer.subtract",
            json!({"duration": "10m"}),
            &host,
        ));
        assert_eq!(pointer, "/duration");
        assert_eq!(
            message,
            "The pasta timer has only 10 minutes left; I can't take 10 minutes off it. Cancel it instead?"
        );
        let left = &host.timers("kitchen")[0];
        assert_eq!(
            (left.remaining, left.paused),
            (Duration::from_secs(600), false)
        );
    }

    #[test]
    fn an_unknown_label_or_no_timer_at_all_is_no_timer() {
        let host = host();
        assert_eq!(
            refusal(run(
                &TimerPause,
                "timer.pause",
                json!({"label": "tea"}),
                &host
            )),
            ("no_timer".into(), "There's no tea timer.".into())
        );
        assert_eq!(
            refusal(run(
                &TimerAdd,
                "timer.add",
                json!({"duration": "1m"}),
                &FakeHost::default()
            )),
            ("no_timer".into(), "You have no timers.".into())
        );
    }

    #[test]
    fn with_two_timers_pause_asks_which_unless_the_duration_tells() {
        let host = host();
        host.start_timer("kitchen", Some("tea"), Duration::from_secs(180))
            .unwrap();
        assert_eq!(
            refusal(run(&TimerPause, "timer.pause", json!({}), &host)),
            (
                "ambiguous_timer".into(),
                "Which timer: pasta or tea?".into()
            )
        );
        assert_eq!(
            speech(run(
                &TimerPause,
                "timer.pause",
                json!({"duration": "3 minutes"}),
                &host
            )),
            "Paused the tea timer with 3 minutes left."
        );
    }
}
