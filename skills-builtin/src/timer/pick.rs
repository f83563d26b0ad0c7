//! Which timer a request means (SPEC §8.2): the one with its `label`; else
//! the only one; else the one whose set duration was spoken (`duration`);
//! else a question, `ambiguous_timer`: "Which timer: pasta or tea?".

use std::time::Duration;

use serde_json::{Value, json};

use crate::duration::{parse_duration, speak_duration};
use crate::{BuiltinError, ErrorCode, Intent, TimerView, capitalize, join_or};

/// The `label` arg, trimmed; blank is none.
pub(crate) fn label(intent: &Intent) -> Option<&str> {
    intent
        .args
        .get("label")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// The `duration` arg, parsed; a duration that means nothing is `bad_arg`.
pub(crate) fn duration(intent: &Intent) -> Result<Option<Duration>, BuiltinError> {
    match intent.args.get("duration").and_then(Value::as_str) {
        None => Ok(None),
        Some(text) => parse_duration(text)
            .map(Some)
            .map_err(|e| BuiltinError::invalid("/duration", e.to_string())),
    }
}

/// The timer `label` and `spoken` (its set duration) pick among `timers`.
/// `None` when the satellite has no timers at all (and no label was given).
pub(crate) fn pick(
    timers: Vec<TimerView>,
    label: Option<&str>,
    spoken: Option<Duration>,
) -> Result<Option<TimerView>, BuiltinError> {
    let mut chosen: Vec<TimerView> = match label {
        Some(label) => {
            let named: Vec<TimerView> = timers
                .into_iter()
                .filter(|t| {
                    t.label
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(label))
                })
                .collect();
            if named.is_empty() {
                return Err(no_such(label));
            }
            named
        }
        None if timers.is_empty() => return Ok(None),
        None => timers,
    };
    if let (true, Some(spoken)) = (chosen.len() > 1, spoken) {
        let same: Vec<TimerView> = chosen
            .iter()
            .filter(|t| same_seconds(t.total, spoken))
            .cloned()
            .collect();
        if !same.is_empty() {
            chosen = same;
        }
    }
    if chosen.len() == 1 {
        return Ok(chosen.pop());
    }
    Err(ambiguous(&chosen))
}

fn same_seconds(a: Duration, b: Duration) -> bool {
    a.as_millis().div_ceil(1000) == b.as_millis().div_ceil(1000)
}

/// "There's no tea timer.", `no_timer`.
pub(crate) fn no_such(label: &str) -> BuiltinError {
    BuiltinError::Refused {
        code: ErrorCode::NoTimer,
        message: format!("There's no {label} timer."),
    }
}

/// "You have no timers.", `no_timer`.
pub(crate) fn none() -> BuiltinError {
    BuiltinError::Refused {
        code: ErrorCode::NoTimer,
        message: "You have no timers.".to_string(),
    }
}

/// "Which timer: pasta or tea?", `ambiguous_timer`. Unlabelled timers are
/// told apart by their length, timers of one label by theirs as well.
fn ambiguous(timers: &[TimerView]) -> BuiltinError {
    let names: Vec<String> = timers
        .iter()
        .map(|t| {
            let twins = timers.iter().filter(|o| o.label == t.label).count() > 1;
            match &t.label {
                Some(label) if !twins => label.clone(),
                Some(label) => format!("the {label} for {}", speak_duration(t.total)),
                None => format!("the one for {}", speak_duration(t.total)),
            }
        })
        .collect();
    BuiltinError::Refused {
        code: ErrorCode::AmbiguousTimer,
        message: format!("Which timer: {}?", join_or(&names)),
    }
}

/// "pasta timer", "timer for 5 minutes".
pub(crate) fn name(t: &TimerView) -> String {
    match &t.label {
        Some(label) => format!("{label} timer"),
        None => format!("timer for {}", speak_duration(t.total)),
    }
}

/// "The pasta timer has 3 minutes and 12 seconds left." / "The pasta
/// timer is paused with 3 minutes left."
pub(crate) fn left(t: &TimerView) -> String {
    let name = capitalize(&format!("the {}", name(t)));
    let remaining = speak_duration(t.remaining);
    if t.paused {
        format!("{name} is paused with {remaining} left.")
    } else {
        format!("{name} has {remaining} left.")
    }
}

/// A timer as data: id, label, total_s, remaining_s, state.
pub(crate) fn data(t: &TimerView) -> Value {
    json!({
        "id": t.id,
        "label": t.label,
        "total_s": t.total.as_millis().div_ceil(1000) as u64,
        "remaining_s": t.remaining.as_millis().div_ceil(1000) as u64,
        "state": t.state(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(id: &str, label: Option<&str>, mins: u64) -> TimerView {
        TimerView {
            id: id.into(),
            label: label.map(str::to_string),
            total: Duration::from_secs(mins * 60),
            remaining: Duration::from_secs(mins * 60 - 10),
            paused: false,
        }
    }

    fn refused(e: BuiltinError) -> (ErrorCode, String) {
        match e {
            BuiltinError::Refused { code, message } => (code, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_label_picks_its_timer_whatever_its_case() {
        let timers = vec![timer("t-1", Some("pasta"), 5), timer("t-2", Some("tea"), 3)];
        let got = pick(timers, Some("Tea"), None).unwrap().unwrap();
        assert_eq!(got.id, "t-2");
    }

    #[test]
    fn an_unknown_label_is_no_timer() {
        let timers = vec![timer("t-1", Some("pasta"), 5)];
        let (code, message) = refused(pick(timers, Some("tea"), None).unwrap_err());
        assert_eq!(code, ErrorCode::NoTimer);
        assert_eq!(message, "There's no tea timer.");
    }

    #[test]
    fn the_only_timer_needs_no_label_and_none_is_none() {
        let got = pick(vec![timer("t-1", None, 5)], None, None).unwrap();
        assert_eq!(got.unwrap().id, "t-1");
        assert_eq!(pick(Vec::new(), None, None).unwrap(), None);
    }

    #[test]
    fn the_spoken_duration_picks_among_several() {
        let timers = vec![
            timer("t-1", Some("pasta"), 10),
            timer("t-2", Some("tea"), 3),
        ];
        let got = pick(timers, None, Some(Duration::from_secs(180))).unwrap();
        assert_eq!(got.unwrap().id, "t-2");
    }

    #[test]
    fn several_timers_and_nothing_to_tell_them_apart_is_a_question() {
        let timers = vec![
            timer("t-1", Some("pasta"), 10),
            timer("t-2", Some("tea"), 3),
        ];
        let (code, message) = refused(pick(timers.clone(), None, None).unwrap_err());
        assert_eq!(code, ErrorCode::AmbiguousTimer);
        assert_eq!(message, "Which timer: pasta or tea?");
        let (_, message) = refused(pick(timers, None, Some(Duration::from_secs(60))).unwrap_err());
        assert_eq!(
            message, "Which timer: pasta or tea?",
            "no timer of 1 minute"
        );

        let timers = vec![
            timer("t-1", Some("pasta"), 10),
            timer("t-2", Some("pasta"), 3),
            timer("t-3", None, 5),
        ];
        let (_, message) = refused(pick(timers, None, None).unwrap_err());
        assert_eq!(
            message,
            "Which timer: the pasta for 10 minutes, the pasta for 3 minutes or the one for 5 minutes?"
        );
    }

    #[test]
    fn remaining_time_is_said_like_a_person_would() {
        let mut t = timer("t-1", Some("pasta"), 5);
        t.remaining = Duration::from_secs(192);
        assert_eq!(
            left(&t),
            "The pasta timer has 3 minutes and 12 seconds left."
        );
        t.paused = true;
        assert_eq!(
            left(&t),
            "The pasta timer is paused with 3 minutes and 12 seconds left."
        );
        t.label = None;
        assert_eq!(
            left(&t),
            "The timer for 5 minutes is paused with 3 minutes and 12 seconds left."
        );
    }
}
