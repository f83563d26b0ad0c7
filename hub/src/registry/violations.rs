//! How a failed `args` validation reads for a person: one violation per
//! problem, each at its JSON pointer into the request, in plain words.

use hark_skill_sdk::Violation;
use serde_json::Value;

/// Turns one jsonschema-valid error into violations a person can act on:
/// "Invalid type." gains what was expected and what came, and one
/// "Additional properties" error becomes one violation per unexpected key,
/// each at its own pointer.
pub(super) fn explain(e: jsonschema_valid::ValidationError) -> Vec<Violation> {
    let at = format!("/args{}", pointer(&e.instance_path));
    let schema = e.schema.as_ref();
    if e.msg == "Invalid type." {
        let expected = match schema.and_then(|s| s.get("type")) {
            Some(Value::String(t)) => article(t),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .map(article)
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "another type".to_string(),
        };
        let found = e.instance.as_ref().map_or("something else", json_kind);
        return vec![Violation {
            pointer: at,
            message: format!("must be {expected}, not {found}"),
        }];
    }
    if e.msg.starts_with("Additional properties are not allowed") {
        let allowed: Vec<&str> = schema
            .and_then(|s| s.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(instance)) = &e.instance {
            let extras: Vec<Violation> = instance
                .keys()
                .filter(|k| !allowed.contains(&k.as_str()))
                .map(|k| Violation {
                    pointer: format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    message: if allowed.is_empty() {
                        "unexpected argument; this skill takes none".to_string()
                    } else {
                        format!(
                            "unexpected argument; this skill takes {}",
                            allowed.join(", ")
                        )
                    },
                })
                .collect();
            if !extras.is_empty() {
                return extras;
            }
        }
    }
    vec![Violation {
        pointer: at,
        message: e.msg,
    }]
}

fn article(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".to_string(),
        _ => format!("a {t}"),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// jsonschema-valid keeps paths innermost-first; a JSON pointer is outermost-first.
pub(super) fn pointer(reversed_path: &[String]) -> String {
    reversed_path
        .iter()
        .rev()
        .map(|part| format!("/{}", part.replace('~', "~0").replace('/', "~1")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::ArgsSchema;
    use super::*;

    fn schema(v: Value) -> ArgsSchema {
        ArgsSchema::compile(v).unwrap()
    }

    #[test]
    fn every_violation_is_reported_with_its_pointer() {
        let s = schema(serde_json::json!({
            "type": "object",
            "properties": {"duration": {"type": "string"}, "n": {"type": "integer", "maximum": 3}},
            "required": ["duration"], "additionalProperties": false
        }));
        assert!(s.validate(&serde_json::json!({"duration": "5m"})).is_ok());
        let mut v = s
            .validate(&serde_json::json!({"duration": 5, "n": 9, "x": 1}))
            .unwrap_err();
        v.sort_by(|a, b| a.pointer.cmp(&b.pointer));
        let found: Vec<(&str, &str)> = v
            .iter()
            .map(|v| (v.pointer.as_str(), v.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("/args/duration", "must be a string, not an integer"),
                ("/args/n", "9 > maximum 3"),
                (
                    "/args/x",
                    "unexpected argument; this skill takes duration, n"
                ),
            ]
        );
    }

    #[test]
    fn a_schema_that_is_not_a_schema_is_refused() {
        let err = ArgsSchema::compile(serde_json::json!({"type": "strnig"})).unwrap_err();
        assert!(err.contains("/type"), "{err}");
    }

    #[test]
    fn pointers_escape_slashes_and_tildes() {
        assert_eq!(pointer(&["b/c".into(), "a~".into()]), "/a~0/b~1c");
    }
}
