//! Slots (Hermes) and entities (Wyoming) to `args`, the same way for every
//! adapter in front of an intent recognizer: a name given twice becomes an
//! array of its values, and for the timer skills numeric `days` / `hours` /
//! `minutes` / `seconds` become one `duration`, as recognizers' timer
//! sentences fill them. Home Assistant's timer intents name the timer
//! `name` (our `label`), say which timer by the duration it was set for
//! (`start_hours`, `start_minutes`, `start_seconds`, our `duration` where
//! that is not the amount to add or take off), add an `area` (the satellite
//! already says where), and say "all" only in the intent's name
//! (`HassCancelAllTimers`).

use serde_json::{Map, Value};

/// `(name, value)` pairs as `args`: values as they are (numbers stay
/// numbers); a name given twice becomes an array of its values, in order.
pub fn args(pairs: Vec<(String, Value)>) -> Map<String, Value> {
    let mut by_name: Vec<(String, Vec<Value>)> = Vec::new();
    for (name, value) in pairs {
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => by_name.push((name, vec![value])),
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            let value = if values.len() == 1 {
                values.remove(0)
            } else {
                Value::Array(values)
            };
            (name, value)
        })
        .collect()
}

/// Recognizer intent names that mean every timer, when mapped to `timer.cancel`.
const CANCEL_ALL_NAMES: [&str; 2] = ["HassCancelAllTimers", "CancelAllTimers"];

/// `(name, value)` pairs of the recognizer's intent `intent` as the `args`
/// of `skill`: [`args`], and for the timer skills the unit slots composed
/// into a `duration` and Home Assistant's timer slots as ours.
pub fn args_for(intent: &str, skill: &str, pairs: Vec<(String, Value)>) -> Map<String, Value> {
    let mut args = args(pairs);
    let Some(verb) = skill.strip_prefix("timer.") else {
        return args;
    };
    if !args.contains_key("label")
        && let Some(name) = args.remove("name")
    {
        args.insert("label".into(), name);
    }
    args.remove("area");
    compose_duration(&mut args, "");
    match verb {
        // `duration` is the amount: the timer is picked by label only.
        "set" | "add" | "subtract" => {
            for (name, _) in UNIT_SLOTS {
                args.remove(&format!("start_{name}"));
            }
        }
        _ => compose_duration(&mut args, "start_"),
    }
    if verb == "cancel" && CANCEL_ALL_NAMES.contains(&intent) {
        args.insert("all".into(), Value::Bool(true));
    }
    args
}

/// `5` rather than `5.0`; fractions as they are.
pub fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Unit slots, in the order a duration is spoken.
const UNIT_SLOTS: [(&str, &str); 4] = [
    ("days", "d"),
    ("hours", "h"),
    ("minutes", "m"),
    ("seconds", "s"),
];

/// Numeric unit slots (named `<prefix><unit>`) as one `duration` (`1h
/// 30m`), when there is no `duration` and every unit slot is a plain
/// number: anything else goes to the schema as it is, which names the slot
/// that is wrong.
pub fn compose_duration(args: &mut Map<String, Value>, prefix: &str) {
    if args.contains_key("duration") {
        return;
    }
    let names: Vec<(String, &str)> = UNIT_SLOTS
        .iter()
        .map(|(name, unit)| (format!("{prefix}{name}"), *unit))
        .collect();
    let units: Vec<(&str, f64)> = names
        .iter()
        .filter_map(|(name, unit)| Some((*unit, args.get(name)?.as_f64()?)))
        .collect();
    let present = names
        .iter()
        .filter(|(name, _)| args.contains_key(name))
        .count();
    if units.is_empty() || units.len() != present {
        return;
    }
    let nonzero: Vec<String> = units
        .iter()
        .filter(|(_, amount)| *amount != 0.0)
        .map(|(unit, amount)| format!("{}{unit}", number(*amount)))
        .collect();
    let duration = if nonzero.is_empty() {
        "0s".to_string()
    } else {
        nonzero.join(" ")
    };
    for (name, _) in &names {
        args.remove(name);
    }
    args.insert("duration".into(), Value::String(duration));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(items: &[(&str, Value)]) -> Vec<(String, Value)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn a_name_given_twice_becomes_an_array_and_one_array_stays_whole() {
        let got = args(pairs(&[
            ("c", json!("red")),
            ("n", json!(2)),
            ("c", json!("green")),
        ]));
        assert_eq!(Value::Object(got), json!({"c": ["red", "green"], "n": 2}));
        let whole = args(pairs(&[("c", json!(["a", "b"]))]));
        assert_eq!(whole["c"], json!(["a", "b"]));
    }

    #[test]
    fn unit_slots_become_one_duration_only_when_all_are_numbers() {
        let mut a = args(pairs(&[("hours", json!(1)), ("minutes", json!(30))]));
        compose_duration(&mut a, "");
        assert_eq!(Value::Object(a), json!({"duration": "1h 30m"}));
        let mut text = args(pairs(&[("minutes", json!("five"))]));
        compose_duration(&mut text, "");
        assert_eq!(Value::Object(text), json!({"minutes": "five"}));
    }

    #[test]
    fn home_assistants_timer_slots_become_ours() {
        let got = |intent: &str, skill: &str, items: &[(&str, Value)]| {
            Value::Object(args_for(intent, skill, pairs(items)))
        };
        assert_eq!(
            got(
                "HassIncreaseTimer",
                "timer.add",
                &[
                    ("minutes", json!(5)),
                    ("name", json!("pasta")),
                    ("start_minutes", json!(10)),
                    ("area", json!("kitchen"))
                ]
            ),
            json!({"duration": "5m", "label": "pasta"})
        );
        assert_eq!(
            got(
                "HassPauseTimer",
                "timer.pause",
                &[("start_minutes", json!(10))]
            ),
            json!({"duration": "10m"})
        );
        assert_eq!(
            got(
                "HassCancelAllTimers",
                "timer.cancel",
                &[("area", json!("kitchen"))]
            ),
            json!({"all": true})
        );
        assert_eq!(
            got("HassCancelTimer", "timer.cancel", &[("name", json!("tea"))]),
            json!({"label": "tea"})
        );
        assert_eq!(
            got(
                "Lights",
                "lights",
                &[("name", json!("lamp")), ("area", json!("hall"))]
            ),
            json!({"name": "lamp", "area": "hall"}),
            "only the timer skills' slots are renamed"
        );
    }
}
