//! `timer.cancel`: cancel one of the asking satellite's timers, picked as
//! SPEC §8.2 says, or all of them with `all`. `system.cancel`'s `timer` and
//! `timers` targets are this skill under another name.
//!
//! Cancelling a timer that is not there is not an error: what was asked for
//! (no tea timer) already holds, and the reply says so.

use serde_json::{Value, json};

use super::pick::{self, name};
use crate::{BuiltinError, BuiltinSkill, Host, Intent, SkillReply, TimerView};

#[derive(Debug)]
pub struct TimerCancel;

impl BuiltinSkill for TimerCancel {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.cancel.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        if intent.args.get("all").and_then(Value::as_bool) == Some(true) {
            return cancel_all(host, &intent.satellite);
        }
        cancel_one(
            host,
            &intent.satellite,
            pick::label(intent),
            pick::duration(intent)?,
        )
    }
}

/// Cancels every timer of the satellite.
pub(crate) fn cancel_all(host: &dyn Host, sat: &str) -> Result<SkillReply, BuiltinError> {
    let ids: Vec<String> = host.timers(sat).into_iter().map(|t| t.id).collect();
    let cancelled = host.cancel_timers(sat, &ids)?;
    let speech = match cancelled.len() {
        0 => "You have no timers to cancel.".to_string(),
        1 => format!("Cancelled your {}.", name(&cancelled[0])),
        n => format!("Cancelled {n} timers."),
    };
    Ok(SkillReply::speech(speech).with_data(json!({"timers": ids_of(&cancelled)})))
}

/// Cancels the timer `label` and `spoken` pick.
pub(crate) fn cancel_one(
    host: &dyn Host,
    sat: &str,
    label: Option<&str>,
    spoken: Option<std::time::Duration>,
) -> Result<SkillReply, BuiltinError> {
    let nothing = |speech: String| Ok(SkillReply::speech(speech).with_data(json!({"timers": []})));
    let timer = match pick::pick(host.timers(sat), label, spoken) {
        Ok(Some(timer)) => timer,
        Ok(None) => return nothing("You have no timers to cancel.".to_string()),
        Err(BuiltinError::Refused {
            code: crate::ErrorCode::NoTimer,
            message,
        }) => return nothing(message),
        Err(e) => return Err(e),
    };
    let cancelled = host.cancel_timers(sat, std::slice::from_ref(&timer.id))?;
    let speech = match cancelled.first() {
        Some(one) => format!("Cancelled the {}.", name(one)),
        // Rang or was cancelled in between.
        None => format!("The {} has already ended.", name(&timer)),
    };
    Ok(SkillReply::speech(speech).with_data(json!({"timers": ids_of(&cancelled)})))
}

pub(crate) fn ids_of(timers: &[TimerView]) -> Vec<&str> {
    timers.iter().map(|t| t.id.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::testing::{FakeHost, intent};
    use std::time::Duration;

    fn host(labels: &[(&str, u64)]) -> FakeHost {
        let host = FakeHost::default();
        for (label, secs) in labels {
            host.start_timer("kitchen", Some(label), Duration::from_secs(*secs))
                .unwrap();
        }
        host
    }

    fn run(host: &FakeHost, args: Value) -> Result<SkillReply, BuiltinError> {
        TimerCancel.handle(&intent("timer.cancel", args), host)
    }

    #[test]
    fn two_timers_and_no_label_is_the_ambiguous_timer_question() {
        let host = host(&[("pasta", 600), ("tea", 180)]);
        let err = run(&host, json!({})).unwrap_err();
        assert_eq!(
            err,
            BuiltinError::Refused {
                code: ErrorCode::AmbiguousTimer,
                message: "Which timer: pasta or tea?".into()
            }
        );
        assert_eq!(host.timers("kitchen").len(), 2, "nothing cancelled");
    }

    #[test]
    fn a_label_or_the_spoken_duration_or_all_says_which() {
        let host = host(&[("pasta", 600), ("tea", 180), ("eggs", 420)]);
        let said = |args| run(&host, args).unwrap().speech.unwrap();
        assert_eq!(
            said(json!({"label": "pasta"})),
            "Cancelled the pasta timer."
        );
        assert_eq!(said(json!({"duration": "3m"})), "Cancelled the tea timer.");
        assert_eq!(said(json!({"label": "pasta"})), "There's no pasta timer.");
        assert_eq!(said(json!({"all": true})), "Cancelled your eggs timer.");
        assert_eq!(said(json!({})), "You have no timers to cancel.");
    }
}
