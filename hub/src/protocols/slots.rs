//! Slots (Hermes) and entities (Wyoming) to `args`, the same way for every
//! adapter in front of an intent recognizer: a name given twice becomes an
//! array of its values, and for `timer.set` numeric `days` / `hours` /
//! `minutes` / `seconds` become one `duration`, as recognizers' timer
//! sentences fill them.

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

/// `(name, value)` pairs as the `args` of `skill`: [`args`], and for
/// `timer.set` the unit slots composed into a `duration`.
pub fn args_for(skill: &str, pairs: Vec<(String, Value)>) -> Map<String, Value> {
    let mut args = args(pairs);
    if skill == "timer.set" {
        compose_duration(&mut args);
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

/// Numeric unit slots as one `duration` (`1h 30m`), when there is no
/// `duration` and every unit slot is a plain number: anything else goes to
/// the schema as it is, which names the slot that is wrong.
pub fn compose_duration(args: &mut Map<String, Value>) {
    if args.contains_key("duration") {
        return;
    }
    let units: Vec<(&str, f64)> = UNIT_SLOTS
        .iter()
        .filter_map(|(name, unit)| Some((*unit, args.get(*name)?.as_f64()?)))
        .collect();
    let present = UNIT_SLOTS
        .iter()
        .filter(|(name, _)| args.contains_key(*name))
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
    for (name, _) in UNIT_SLOTS {
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
        compose_duration(&mut a);
        assert_eq!(Value::Object(a), json!({"duration": "1h 30m"}));
        let mut text = args(pairs(&[("minutes", json!("five"))]));
        compose_duration(&mut text);
        assert_eq!(Value::Object(text), json!({"minutes": "five"}));
    }
}
