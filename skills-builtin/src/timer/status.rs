//! `timer.status` and `timer.list`: what the asking satellite's timers
//! have left, said and as data.

use serde_json::json;

use super::pick::{self, data, left};
use crate::{BuiltinError, BuiltinSkill, Host, Intent, SkillReply, TimerView};

#[derive(Debug)]
pub struct TimerStatus;

impl BuiltinSkill for TimerStatus {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.status.json")
    }

    /// One timer when the request names one (or there is only one); every
    /// timer when it names none.
    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let label = pick::label(intent);
        let spoken = pick::duration(intent)?;
        let timers = host.timers(&intent.satellite);
        if label.is_none() && spoken.is_none() && timers.len() > 1 {
            return Ok(all(&timers));
        }
        match pick::pick(timers, label, spoken) {
            Ok(Some(timer)) => {
                Ok(SkillReply::speech(left(&timer)).with_data(json!({"timers": [data(&timer)]})))
            }
            Ok(None) => Ok(all(&[])),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug)]
pub struct TimerList;

impl BuiltinSkill for TimerList {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../../manifests/timer.list.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        Ok(all(&host.timers(&intent.satellite)))
    }
}

/// "You have 2 timers. The pasta timer has 3 minutes left. The tea timer
/// is paused with 1 minute left.", with `data.timers`.
fn all(timers: &[TimerView]) -> SkillReply {
    let speech = match timers {
        [] => "You have no timers.".to_string(),
        [one] => left(one),
        many => {
            let each: Vec<String> = many.iter().map(left).collect();
            format!("You have {} timers. {}", many.len(), each.join(" "))
        }
    };
    let list: Vec<_> = timers.iter().map(data).collect();
    SkillReply::speech(speech).with_data(json!({"timers": list}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, intent};
    use crate::{ErrorCode, TimerChange};
    use std::time::Duration;

    fn host() -> FakeHost {
        let host = FakeHost::default();
        host.start_timer("kitchen", Some("pasta"), Duration::from_secs(192))
            .unwrap();
        host
    }

    #[test]
    fn status_of_the_only_timer_speaks_its_remaining_time() {
        let host = host();
        let reply = TimerStatus
            .handle(&intent("timer.status", json!({})), &host)
            .unwrap();
        assert_eq!(
            reply.speech.as_deref(),
            Some("The pasta timer has 3 minutes and 12 seconds left.")
        );
        let timers = &reply.data.unwrap()["timers"];
        assert_eq!(
            timers,
            &json!([{"id": "t-1", "label": "pasta", "total_s": 192, "remaining_s": 192, "state": "running"}])
        );
    }

    #[test]
    fn status_without_a_label_lists_all_and_with_one_speaks_of_it() {
        let host = host();
        let tea = host
            .start_timer("kitchen", Some("tea"), Duration::from_secs(60))
            .unwrap();
        host.update_timer("kitchen", &tea.id, TimerChange::Pause)
            .unwrap();
        let reply = TimerStatus
            .handle(&intent("timer.status", json!({})), &host)
            .unwrap();
        assert_eq!(
            reply.speech.as_deref(),
            Some(
                "You have 2 timers. The pasta timer has 3 minutes and 12 seconds left. \
                 The tea timer is paused with 1 minute left."
            )
        );
        let reply = TimerStatus
            .handle(&intent("timer.status", json!({"label": "tea"})), &host)
            .unwrap();
        assert_eq!(
            reply.speech.as_deref(),
            Some("The tea timer is paused with 1 minute left.")
        );
    }

    #[test]
    fn status_of_an_unknown_label_or_no_timers_says_so() {
        let err = TimerStatus
            .handle(&intent("timer.status", json!({"label": "tea"})), &host())
            .unwrap_err();
        assert!(
            matches!(&err, BuiltinError::Refused { code: ErrorCode::NoTimer, message } if message == "There's no tea timer."),
            "{err:?}"
        );
        let reply = TimerStatus
            .handle(&intent("timer.status", json!({})), &FakeHost::default())
            .unwrap();
        assert_eq!(reply.speech.as_deref(), Some("You have no timers."));
    }

    #[test]
    fn list_gives_every_timer_as_data() {
        let host = host();
        host.start_timer("kitchen", None, Duration::from_secs(60))
            .unwrap();
        host.start_timer("hall", None, Duration::from_secs(60))
            .unwrap();
        let reply = TimerList
            .handle(&intent("timer.list", json!({})), &host)
            .unwrap();
        let timers = reply.data.unwrap()["timers"].clone();
        assert_eq!(
            timers.as_array().unwrap().len(),
            2,
            "the hall's is not listed"
        );
        assert_eq!(timers[1]["label"], serde_json::Value::Null);
        assert_eq!(timers[1]["state"], "running");
        let empty = TimerList
            .handle(&intent("timer.list", json!({})), &FakeHost::default())
            .unwrap();
        assert_eq!(empty.data.unwrap()["timers"], json!([]));
    }
}
