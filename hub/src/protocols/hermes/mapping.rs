//! Hermes to the hub and back, without I/O: an [`NluIntent`] becomes the
//! [`Request`] the one dispatcher runs, and a [`Reply`] becomes the words
//! Rhasspy says.

use std::collections::BTreeMap;

use hark_skill_sdk::{ErrorBody, ErrorCode, Reply, Status};
use serde_json::{Map, Value};

use super::PROTOCOL;
use super::nlu::{NluIntent, Problem};
use crate::protocols::slots;
use crate::request::Request;

/// The skill a Rhasspy intent name asks for: `[hermes.intents]`, else the
/// name as is.
pub fn skill_for<'a>(intent_name: &'a str, intents: &'a BTreeMap<String, String>) -> &'a str {
    intents.get(intent_name).map_or(intent_name, String::as_str)
}

/// The Rhasspy intents that answer a question of a sensitive skill
/// (`hermes.confirm_yes`, `hermes.confirm_no`).
#[derive(Debug, Clone, Default)]
pub struct ConfirmIntents {
    pub yes: String,
    pub no: String,
}

/// The request for `nlu`, with request id `id`, from satellite `siteId`.
///
/// - The yes and no intents become `system.confirm` with `answer` yes or
///   no (their slots are ignored).
/// - `slots[]` become `args`, keyed by `slotName` (else `entity`), valued by
///   `value.value` as it is (numbers stay numbers). A slot named twice
///   becomes an array of its values, in order, for the skill's schema to
///   judge. A Snips duration (`{"kind": "Duration", "hours": 1, ...}`, which
///   has no `value` key) becomes an ISO 8601 string (`PT1H`).
/// - For `timer.set`, numeric slots named `days`, `hours`, `minutes`,
///   `seconds` (Rhasspy's usual timer sentences) become one `duration`
///   (`1h 30m`) when there is no `duration` slot.
pub fn request(
    nlu: &NluIntent,
    intents: &BTreeMap<String, String>,
    confirm: &ConfirmIntents,
    id: &str,
) -> Result<Request, Problem> {
    let answer = if nlu.intent_name == confirm.yes {
        Some("yes")
    } else if nlu.intent_name == confirm.no {
        Some("no")
    } else {
        None
    };
    if let Some(answer) = answer {
        let mut args = Map::new();
        args.insert("answer".into(), Value::String(answer.into()));
        return Ok(Request {
            id: id.to_string(),
            intent: crate::confirm::CONFIRM.to_string(),
            args,
            text: nlu.input.clone(),
            confidence: nlu.confidence_score,
            satellite: nlu.site_id.clone(),
            protocol: PROTOCOL,
        });
    }
    let skill = skill_for(&nlu.intent_name, intents);
    let mut pairs = Vec::with_capacity(nlu.slots.len());
    for (i, slot) in nlu.slots.iter().enumerate() {
        let value = slot_value(&slot.value).ok_or_else(|| {
            Problem::new(
                ErrorCode::BadArgs,
                format!("/slots/{i}/value"),
                "has no value key (and is not a Snips Duration)",
            )
        })?;
        pairs.push((slot.name().to_string(), value));
    }
    let args = slots::args_for(&nlu.intent_name, skill, pairs);
    Ok(Request {
        id: id.to_string(),
        intent: skill.to_string(),
        args,
        text: nlu.input.clone(),
        confidence: nlu.confidence_score,
        satellite: nlu.site_id.clone(),
        protocol: PROTOCOL,
    })
}

/// `value.value`, or a Snips `Duration` as ISO 8601.
pub fn slot_value(value: &Map<String, Value>) -> Option<Value> {
    if let Some(v) = value.get("value") {
        return Some(v.clone());
    }
    if value.get("kind").and_then(Value::as_str) == Some("Duration") {
        return Some(Value::String(snips_duration(value)));
    }
    None
}

/// `{"kind": "Duration", "years", "quarters", "months", "weeks", "days",
/// "hours", "minutes", "seconds"}` as `P..Y..M..W..DT..H..M..S`. Years and
/// months stay in, so the timer refuses them with its own explanation.
fn snips_duration(value: &Map<String, Value>) -> String {
    let n = |key: &str| value.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let months = n("months") + 3.0 * n("quarters");
    let mut out = String::from("P");
    for (amount, unit) in [
        (n("years"), 'Y'),
        (months, 'M'),
        (n("weeks"), 'W'),
        (n("days"), 'D'),
    ] {
        if amount != 0.0 {
            out.push_str(&format!("{}{unit}", slots::number(amount)));
        }
    }
    let time: Vec<(f64, char)> = [(n("hours"), 'H'), (n("minutes"), 'M'), (n("seconds"), 'S')]
        .into_iter()
        .filter(|(amount, _)| *amount != 0.0)
        .collect();
    if !time.is_empty() {
        out.push('T');
        for (amount, unit) in time {
            out.push_str(&format!("{}{unit}", slots::number(amount)));
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    out
}

/// What Rhasspy should say for `reply`: the skill's speech when it has one,
/// else a sentence for a person in the room that says what went wrong and,
/// where it can, what to do. `None` for a success with nothing to say.
pub fn spoken(reply: &Reply) -> Option<String> {
    if let Some(speech) = &reply.speech {
        return Some(speech.clone());
    }
    let error = reply.error.as_ref()?;
    let text = match (reply.status, &error.code) {
        (_, ErrorCode::BadSatellite) => {
            "Sorry, Hark can't use this satellite's site ID. Rename the site using only letters, \
             digits, dashes and underscores."
                .to_string()
        }
        (_, ErrorCode::PayloadTooLarge) => {
            "Sorry, that request was too big for me to read.".to_string()
        }
        (_, ErrorCode::NotUtf8 | ErrorCode::NotJson | ErrorCode::NotObject) => {
            "Sorry, that request was garbled and I couldn't read it.".to_string()
        }
        (_, ErrorCode::MissingIntent | ErrorCode::BadIntent) => {
            "Sorry, I couldn't tell what you wanted me to do.".to_string()
        }
        (_, ErrorCode::BadId) => "Sorry, that request's session ID is too long for me.".to_string(),
        (_, ErrorCode::BadArgs | ErrorCode::BadText | ErrorCode::BadConfidence) => {
            "Sorry, what Rhasspy heard came to me garbled.".to_string()
        }
        (_, ErrorCode::Schema) => schema_speech(error),
        (_, ErrorCode::NotRecognized) => "Sorry, I didn't understand that.".to_string(),
        (Status::UnknownIntent, _) => match &reply.intent {
            Some(intent) => format!("Sorry, I can't handle {} yet.", words(intent)),
            None => "Sorry, I can't do that yet.".to_string(),
        },
        (Status::Denied, _) => "Sorry, I'm not allowed to do that here.".to_string(),
        (Status::Timeout, _) => "Sorry, that took too long, so I stopped it.".to_string(),
        (Status::Busy, ErrorCode::ShuttingDown) => {
            "Sorry, I'm restarting. Please ask again in a moment.".to_string()
        }
        (Status::Busy, _) => "Sorry, I'm busy right now. Please ask again in a moment.".to_string(),
        (Status::Error, _) => "Sorry, something went wrong while doing that.".to_string(),
        (Status::Invalid, _) => "Sorry, I couldn't do that with what I heard.".to_string(),
        (Status::Ok | Status::Confirm, _) => return None,
    };
    Some(text)
}

/// The first schema violation, in words: which slot, and what is wrong.
fn schema_speech(error: &ErrorBody) -> String {
    let Some(first) = error.details.first() else {
        return "Sorry, I couldn't do that with what I heard.".to_string();
    };
    let slot = first
        .pointer
        .strip_prefix("/args/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if first.message.starts_with("Required properties") {
        let missing: Vec<&str> = first.message.split('"').skip(1).step_by(2).collect();
        return match missing.as_slice() {
            [] => "Sorry, something I need for that is missing.".to_string(),
            names => format!("Sorry, I need the {} for that.", names.join(" and ")),
        };
    }
    if first.message.starts_with("unexpected argument") {
        return format!("Sorry, I can't use the {slot} slot here.");
    }
    if first.message.starts_with("must be ") {
        return format!(
            "Sorry, the {slot} has the wrong type: it {}.",
            first.message
        );
    }
    format!(
        "Sorry, the {slot} isn't right: {}.",
        first.message.trim_end_matches('.')
    )
}

/// `SetTimer` -> `set timer`, `timer.set` -> `timer set`: a name said aloud.
fn words(name: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if c == '.' || c == '_' || c == '-' {
            out.push(' ');
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            out.push(' ');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::hermes::nlu::{DEFAULT_SITE, Slot};
    use hark_skill_sdk::Violation;
    use serde_json::json;

    /// The request in the shape of a native payload, as the assertions spell it.
    fn native(request: Request) -> Value {
        assert_eq!(
            (request.satellite.as_str(), request.protocol),
            (DEFAULT_SITE, PROTOCOL)
        );
        json!({"id": request.id, "intent": request.intent, "args": request.args,
               "text": request.text, "confidence": request.confidence})
    }

    fn slot(name: &str, value: Value) -> Slot {
        Slot {
            entity: Some(name.to_string()),
            slot_name: Some(name.to_string()),
            value: json!({"kind": "Unknown", "value": value})
                .as_object()
                .unwrap()
                .clone(),
            raw_value: None,
        }
    }

    fn nlu(intent: &str, slots: Vec<Slot>) -> NluIntent {
        NluIntent {
            input: Some("what was said".into()),
            intent_name: intent.into(),
            confidence_score: Some(0.9),
            slots,
            site_id: DEFAULT_SITE.into(),
            session_id: Some("s-1".into()),
            custom_data: Value::Null,
        }
    }

    fn confirm() -> ConfirmIntents {
        ConfirmIntents {
            yes: "Yes".into(),
            no: "No".into(),
        }
    }

    #[test]
    fn the_yes_and_no_intents_answer_a_question() {
        for (name, answer) in [("Yes", "yes"), ("No", "no")] {
            let request = native(
                request(
                    &nlu(name, vec![slot("x", json!(1))]),
                    &intents(),
                    &confirm(),
                    "s-1",
                )
                .unwrap(),
            );
            assert_eq!(request["intent"], "system.confirm");
            assert_eq!(request["args"], json!({"answer": answer}));
        }
    }

    fn intents() -> BTreeMap<String, String> {
        BTreeMap::from([("SetTimer".to_string(), "timer.set".to_string())])
    }

    #[test]
    fn a_mapped_intent_with_slots_becomes_a_native_request() {
        let request = native(
            request(
                &nlu(
                    "SetTimer",
                    vec![
                        slot("duration", json!("five minutes")),
                        slot("label", json!("pasta")),
                    ],
                ),
                &intents(),
                &confirm(),
                "s-1",
            )
            .unwrap(),
        );
        assert_eq!(
            request,
            json!({"id": "s-1", "intent": "timer.set",
                   "args": {"duration": "five minutes", "label": "pasta"},
                   "text": "what was said", "confidence": 0.9})
        );
    }

    #[test]
    fn an_unmapped_intent_is_tried_as_is_and_numbers_stay_numbers() {
        let request = native(
            request(
                &nlu("audio.play", vec![slot("volume", json!(0.5))]),
                &intents(),
                &confirm(),
                "r",
            )
            .unwrap(),
        );
        assert_eq!(request["intent"], "audio.play");
        assert_eq!(request["args"]["volume"], json!(0.5));
    }

    #[test]
    fn a_slot_named_twice_becomes_an_array_in_order() {
        let request = native(
            request(
                &nlu(
                    "Colours",
                    vec![
                        slot("c", json!("red")),
                        slot("c", json!("green")),
                        slot("c", json!("blue")),
                    ],
                ),
                &intents(),
                &confirm(),
                "r",
            )
            .unwrap(),
        );
        assert_eq!(request["args"]["c"], json!(["red", "green", "blue"]));
        let single = request_of(vec![slot("c", json!(["a", "b"]))]);
        assert_eq!(
            single["args"]["c"],
            json!(["a", "b"]),
            "a slot's own array stays whole"
        );
        let mixed = request_of(vec![slot("c", json!(["a", "b"])), slot("c", json!("x"))]);
        assert_eq!(mixed["args"]["c"], json!([["a", "b"], "x"]));
    }

    fn request_of(slots: Vec<Slot>) -> Value {
        native(request(&nlu("X", slots), &intents(), &confirm(), "r").unwrap())
    }

    #[test]
    fn a_slot_value_without_a_value_key_is_refused_at_its_pointer() {
        let mut bad = slot("duration", json!(1));
        bad.value.remove("value");
        let problem = request(
            &nlu("SetTimer", vec![slot("label", json!("x")), bad]),
            &intents(),
            &confirm(),
            "r",
        )
        .unwrap_err();
        assert_eq!(
            (problem.code, problem.pointer.as_str()),
            (ErrorCode::BadArgs, "/slots/1/value")
        );
    }

    #[test]
    fn numeric_unit_slots_become_one_timer_duration() {
        let request = native(
            request(
                &nlu(
                    "SetTimer",
                    vec![
                        slot("hours", json!(1)),
                        slot("minutes", json!(30)),
                        slot("seconds", json!(0)),
                    ],
                ),
                &intents(),
                &confirm(),
                "r",
            )
            .unwrap(),
        );
        assert_eq!(request["args"], json!({"duration": "1h 30m"}));
        let fraction = request_of_timer(vec![slot("minutes", json!(2.5))]);
        assert_eq!(fraction["args"], json!({"duration": "2.5m"}));
        let zero = request_of_timer(vec![slot("minutes", json!(0))]);
        assert_eq!(
            zero["args"],
            json!({"duration": "0s"}),
            "the timer refuses zero itself"
        );
    }

    fn request_of_timer(slots: Vec<Slot>) -> Value {
        native(request(&nlu("SetTimer", slots), &intents(), &confirm(), "r").unwrap())
    }

    #[test]
    fn unit_slots_are_left_alone_when_a_duration_is_given_or_one_is_not_a_number() {
        let given = request_of_timer(vec![
            slot("duration", json!("5m")),
            slot("minutes", json!(3)),
        ]);
        assert_eq!(given["args"], json!({"duration": "5m", "minutes": 3}));
        let text = request_of_timer(vec![slot("minutes", json!("five"))]);
        assert_eq!(text["args"], json!({"minutes": "five"}));
        let other_skill = request_of(vec![slot("minutes", json!(3))]);
        assert_eq!(other_skill["args"], json!({"minutes": 3}), "only timer.set");
    }

    #[test]
    fn a_numeric_duration_slot_stays_a_number() {
        let request = request_of_timer(vec![slot("duration", json!(5))]);
        assert_eq!(request["args"]["duration"], json!(5));
    }

    #[test]
    fn a_snips_duration_becomes_iso_8601() {
        let value = |v: Value| v.as_object().unwrap().clone();
        let cases = [
            (
                json!({"kind": "Duration", "years": 0, "quarters": 0, "months": 0, "weeks": 0, "days": 0,
                    "hours": 1, "minutes": 30, "seconds": 0, "precision": "Exact"}),
                "PT1H30M",
            ),
            (
                json!({"kind": "Duration", "days": 2, "seconds": 5}),
                "P2DT5S",
            ),
            (
                json!({"kind": "Duration", "quarters": 1, "weeks": 1}),
                "P3M1W",
            ),
            (json!({"kind": "Duration"}), "PT0S"),
            (json!({"kind": "Duration", "minutes": 1.5}), "PT1.5M"),
        ];
        for (slot_value_json, iso) in cases {
            assert_eq!(
                slot_value(&value(slot_value_json.clone())),
                Some(json!(iso)),
                "{slot_value_json}"
            );
        }
        assert_eq!(slot_value(&value(json!({"kind": "Number"}))), None);
    }

    fn failed(status: Status, code: &str, details: Vec<Violation>) -> Reply {
        Reply {
            id: Some("s-1".into()),
            intent: Some("timer.set".into()),
            status,
            speech: None,
            data: None,
            error: Some(ErrorBody {
                code: ErrorCode::parse(code),
                message: "m".into(),
                details,
            }),
            audit: Some(1),
            elapsed_ms: Some(0.1),
            confirm: None,
        }
    }

    fn violation(pointer: &str, message: &str) -> Violation {
        Violation {
            pointer: pointer.into(),
            message: message.into(),
        }
    }

    #[test]
    fn every_status_gets_something_to_say() {
        for (status, code) in [
            (Status::Invalid, "bad_satellite"),
            (Status::Invalid, "payload_too_large"),
            (Status::Invalid, "not_json"),
            (Status::Invalid, "not_utf8"),
            (Status::Invalid, "missing_intent"),
            (Status::Invalid, "bad_args"),
            (Status::Invalid, "bad_id"),
            (Status::Invalid, "schema"),
            (Status::UnknownIntent, "unknown_intent"),
            (Status::UnknownIntent, "not_recognized"),
            (Status::Denied, "denied"),
            (Status::Denied, "not_loaded"),
            (Status::Timeout, "timeout"),
            (Status::Error, "trap"),
            (Status::Busy, "busy"),
            (Status::Busy, "shutting_down"),
        ] {
            let text = spoken(&failed(status, code, vec![])).unwrap();
            assert!(
                text.starts_with("Sorry, ") && text.ends_with('.'),
                "{code}: {text}"
            );
        }
    }

    #[test]
    fn the_skill_speech_wins_and_a_silent_success_says_nothing() {
        let mut reply = failed(Status::Invalid, "bad_arg", vec![]);
        reply.speech = Some("Which timer?".into());
        assert_eq!(spoken(&reply).as_deref(), Some("Which timer?"));
        let ok = Reply {
            status: Status::Ok,
            error: None,
            ..failed(Status::Ok, "", vec![])
        };
        assert_eq!(spoken(&ok), None);
    }

    #[test]
    fn an_unknown_intent_is_named_in_words() {
        let mut reply = failed(Status::UnknownIntent, "unknown_intent", vec![]);
        reply.intent = Some("GetWeatherForecast".into());
        assert_eq!(
            spoken(&reply).unwrap(),
            "Sorry, I can't handle get weather forecast yet."
        );
        reply.intent = Some("timer.sett".into());
        assert_eq!(
            spoken(&reply).unwrap(),
            "Sorry, I can't handle timer sett yet."
        );
    }

    #[test]
    fn schema_violations_name_the_slot() {
        let cases = [
            (
                violation("/args/duration", "must be a string, not an integer"),
                "Sorry, the duration has the wrong type: it must be a string, not an integer.",
            ),
            (
                violation("/args", "Required properties \"duration\" are missing"),
                "Sorry, I need the duration for that.",
            ),
            (
                violation(
                    "/args/colour",
                    "unexpected argument; this skill takes duration, label",
                ),
                "Sorry, I can't use the colour slot here.",
            ),
            (
                violation("/args/volume", "9 > maximum 1"),
                "Sorry, the volume isn't right: 9 > maximum 1.",
            ),
        ];
        for (v, said) in cases {
            assert_eq!(
                spoken(&failed(Status::Invalid, "schema", vec![v])).unwrap(),
                said
            );
        }
    }
}
