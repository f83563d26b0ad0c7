//! `system.cancel`: stop what the asking satellite has going.
//!
//! With no args it stops the satellite's playback (a ringing alarm included)
//! and its in-flight skill calls, the "stop!" a person shouts at a speaker,
//! and answers no to any question a sensitive skill is waiting on.
//! Timers are only cancelled when asked for by name, so a stray "stop" never
//! silently loses the pasta timer.

use serde_json::json;

use crate::confirm::DECLINED;
use crate::timer::cancel::{cancel_all, cancel_one, ids_of};
use crate::{BuiltinError, BuiltinSkill, Host, Intent, SkillReply};

#[derive(Debug)]
pub struct SystemCancel;

impl BuiltinSkill for SystemCancel {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../manifests/system.cancel.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let sat = intent.satellite.as_str();
        let label = intent
            .args
            .get("label")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|l| !l.is_empty());
        // "cancel the pasta timer" may arrive as just a label.
        let default_target = if label.is_some() { "timer" } else { "activity" };
        let target = intent
            .args
            .get("target")
            .and_then(|v| v.as_str())
            .unwrap_or(default_target);
        match target {
            // The same as `timer.cancel` with `all`, and without.
            "timers" => cancel_all(host, sat),
            "timer" => cancel_one(host, sat, label, None),
            "all" => {
                let stopped = host.stop_activity(sat, &intent.id);
                let timers = host.timers(sat);
                let ids: Vec<String> = timers.iter().map(|t| t.id.clone()).collect();
                let cancelled = host.cancel_timers(sat, &ids)?;
                let speech = if stopped.playbacks + stopped.calls + cancelled.len() == 0 {
                    if stopped.confirmations > 0 {
                        DECLINED.to_string()
                    } else {
                        "There's nothing to cancel.".to_string()
                    }
                } else if cancelled.is_empty() {
                    "Stopped.".to_string()
                } else {
                    format!("Stopped, and cancelled {}.", count_timers(cancelled.len()))
                };
                Ok(SkillReply::speech(speech).with_data(json!({
                    "playbacks": stopped.playbacks, "calls": stopped.calls,
                    "confirmations": stopped.confirmations, "timers": ids_of(&cancelled),
                })))
            }
            // "activity" and "playback": what is making noise or working now.
            _ => {
                let stopped = host.stop_activity(sat, &intent.id);
                let speech = if stopped.playbacks + stopped.calls > 0 {
                    "Stopped.".to_string()
                } else if stopped.confirmations > 0 {
                    // "Unlock the door?" "Cancel!"
                    DECLINED.to_string()
                } else {
                    match host.timers(sat).len() {
                        0 => "There's nothing to stop.".to_string(),
                        n => format!(
                            "There's nothing playing to stop. You have {} running; say \
                             \"cancel my timers\" to stop {}.",
                            count_timers(n),
                            if n == 1 { "it" } else { "them" }
                        ),
                    }
                };
                Ok(SkillReply::speech(speech).with_data(json!({
                    "playbacks": stopped.playbacks, "calls": stopped.calls,
                    "confirmations": stopped.confirmations, "timers": [],
                })))
            }
        }
    }
}

fn count_timers(n: usize) -> String {
    if n == 1 {
        "1 timer".to_string()
    } else {
        format!("{n} timers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;
    use crate::testing::{FakeHost, intent};
    use std::time::Duration;

    fn host_with_timers(labels: &[Option<&str>]) -> FakeHost {
        let host = FakeHost::default();
        for label in labels {
            host.start_timer("kitchen", *label, Duration::from_secs(300))
                .unwrap();
        }
        host.start_timer("hall", Some("tea"), Duration::from_secs(60))
            .unwrap();
        host
    }

    fn speech(host: &FakeHost, args: serde_json::Value) -> String {
        SystemCancel
            .handle(&intent("system.cancel", args), host)
            .unwrap()
            .speech
            .unwrap()
    }

    #[test]
    fn cancel_with_no_args_stops_playback_but_keeps_timers() {
        let host = host_with_timers(&[Some("pasta")]);
        host.play("kitchen", "chime", Target::Hub, 1.0).unwrap();
        assert_eq!(speech(&host, json!({})), "Stopped.");
        assert!(host.playing.borrow().is_empty());
        assert_eq!(host.timers("kitchen").len(), 1);
    }

    #[test]
    fn cancel_answers_no_to_a_waiting_question() {
        let host = FakeHost::default();
        host.asking
            .borrow_mut()
            .push(("kitchen".into(), "c-1".into()));
        assert_eq!(speech(&host, json!({})), DECLINED);
        assert!(host.asking.borrow().is_empty());
    }

    #[test]
    fn cancel_with_nothing_going_says_so_and_mentions_timers() {
        assert_eq!(
            speech(&FakeHost::default(), json!({})),
            "There's nothing to stop."
        );
        let host = host_with_timers(&[Some("pasta")]);
        let said = speech(&host, json!({}));
        assert!(said.contains("You have 1 timer running"), "{said}");
    }

    #[test]
    fn cancel_timers_cancels_only_this_satellites_timers() {
        let host = host_with_timers(&[Some("pasta"), None]);
        assert_eq!(
            speech(&host, json!({"target": "timers"})),
            "Cancelled 2 timers."
        );
        assert!(host.timers("kitchen").is_empty());
        assert_eq!(
            host.timers("hall").len(),
            1,
            "another satellite's timer survives"
        );
        assert_eq!(
            speech(&host, json!({"target": "timers"})),
            "You have no timers to cancel."
        );
    }

    #[test]
    fn cancel_one_timer_by_label() {
        let host = host_with_timers(&[Some("pasta"), Some("eggs")]);
        assert_eq!(
            speech(&host, json!({"target": "timer", "label": "Pasta"})),
            "Cancelled the pasta timer."
        );
        let left: Vec<_> = host
            .timers("kitchen")
            .into_iter()
            .map(|t| t.label)
            .collect();
        assert_eq!(left, [Some("eggs".to_string())]);
        assert_eq!(
            speech(&host, json!({"target": "timer", "label": "tea"})),
            "There's no tea timer.",
            "the hall's tea timer is not the kitchen's to cancel"
        );
    }

    #[test]
    fn cancel_one_timer_without_label_asks_which_when_there_are_several() {
        let host = host_with_timers(&[Some("pasta"), Some("eggs")]);
        let err = SystemCancel
            .handle(&intent("system.cancel", json!({"target": "timer"})), &host)
            .unwrap_err();
        assert_eq!(
            err,
            BuiltinError::Refused {
                code: crate::ErrorCode::AmbiguousTimer,
                message: "Which timer: pasta or eggs?".into()
            }
        );
        let host = host_with_timers(&[None]);
        assert_eq!(
            speech(&host, json!({"target": "timer"})),
            "Cancelled the timer for 5 minutes."
        );
    }

    #[test]
    fn cancel_all_stops_everything() {
        let host = host_with_timers(&[Some("pasta")]);
        host.play("kitchen", "alarm", Target::Hub, 1.0).unwrap();
        assert_eq!(
            speech(&host, json!({"target": "all"})),
            "Stopped, and cancelled 1 timer."
        );
        assert!(host.timers("kitchen").is_empty());
    }

    #[test]
    fn a_label_alone_means_that_timer() {
        let host = host_with_timers(&[Some("pasta"), Some("eggs")]);
        assert_eq!(
            speech(&host, json!({"label": "pasta"})),
            "Cancelled the pasta timer."
        );
    }

    #[test]
    fn a_blank_label_is_no_label() {
        let host = host_with_timers(&[Some("pasta")]);
        assert_eq!(
            speech(&host, json!({"target": "timer", "label": "  "})),
            "Cancelled the pasta timer."
        );
    }
}
