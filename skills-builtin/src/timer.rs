//! `timer.set`: start a countdown on the asking satellite; the rest of the
//! timer vocabulary lives beside it.
//!
//! Layout:
//! - this file: `timer.set`
//! - `pick` — which timer a request means, and how timers are named and
//!   described in speech and data
//! - [`status`] — `timer.status`, `timer.list`
//! - [`change`] — `timer.pause`, `timer.resume`, `timer.add`, `timer.subtract`
//! - [`cancel`] — `timer.cancel` (and `system.cancel`'s timer targets)

use serde_json::json;

pub mod cancel;
pub mod change;
pub(crate) mod pick;
pub mod status;

use crate::duration::{parse_duration, speak_duration};
use crate::{BuiltinError, BuiltinSkill, Host, Intent, SkillReply, capitalize};

#[derive(Debug)]
pub struct TimerSet;

impl BuiltinSkill for TimerSet {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../manifests/timer.set.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        // The schema guarantees a string; what it says is ours to understand.
        let text = intent
            .args
            .get("duration")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let duration =
            parse_duration(text).map_err(|e| BuiltinError::invalid("/duration", e.to_string()))?;
        let label = intent
            .args
            .get("label")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|l| !l.is_empty());
        let timer = host.start_timer(&intent.satellite, label, duration)?;
        let spoken = speak_duration(duration);
        let speech = match &timer.label {
            Some(label) => format!("{} timer set for {spoken}.", capitalize(label)),
            None => format!("Timer set for {spoken}."),
        };
        Ok(SkillReply::speech(speech).with_data(json!({
            "timer_id": timer.id,
            "label": timer.label,
            "total_s": duration.as_millis().div_ceil(1000) as u64,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, intent};
    use std::time::Duration;

    #[test]
    fn a_labelled_timer_is_announced_by_its_label() {
        let host = FakeHost::default();
        let reply = TimerSet
            .handle(
                &intent("timer.set", json!({"duration": "5m", "label": "pasta"})),
                &host,
            )
            .unwrap();
        assert_eq!(
            reply.speech.as_deref(),
            Some("Pasta timer set for 5 minutes.")
        );
        assert_eq!(reply.data.unwrap()["timer_id"], "t-1");
        let timers = host.timers("kitchen");
        assert_eq!(timers[0].total, Duration::from_secs(300));
        assert_eq!(timers[0].label.as_deref(), Some("pasta"));
    }

    #[test]
    fn an_unlabelled_spoken_duration_is_understood() {
        let host = FakeHost::default();
        let reply = TimerSet
            .handle(
                &intent("timer.set", json!({"duration": "an hour and a half"})),
                &host,
            )
            .unwrap();
        assert_eq!(
            reply.speech.as_deref(),
            Some("Timer set for 1 hour and 30 minutes.")
        );
    }

    #[test]
    fn a_duration_it_cannot_understand_is_invalid_at_its_pointer() {
        let host = FakeHost::default();
        let err = TimerSet
            .handle(&intent("timer.set", json!({"duration": "5 blorps"})), &host)
            .unwrap_err();
        let BuiltinError::Invalid { pointer, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(pointer, "/duration");
        assert!(message.contains("blorps"), "{message}");
        assert!(host.timers("kitchen").is_empty());
    }
}
