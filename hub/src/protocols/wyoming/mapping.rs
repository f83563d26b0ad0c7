//! Wyoming to the hub and back, without I/O: an `intent` event becomes the
//! [`Request`] the one dispatcher runs, a [`Reply`] becomes `handled` or
//! `not-handled`, a refusal an `error`, and `describe` is answered by `info`.

use std::collections::BTreeMap;

use hark_skill_sdk::{ErrorCode, Reply, Status};
use serde_json::{Map, Value, json};

use super::PROTOCOL;
use super::event::Event;
use crate::protocols::native::topics::check_satellite_id;
use crate::protocols::slots;
use crate::registry::Registry;
use crate::request::{Failure, Known, Rejected, Request, kind_of};

/// The skill a Wyoming intent name asks for: `[wyoming.intents]`, else the
/// name as is.
pub fn skill_for<'a>(name: &'a str, intents: &'a BTreeMap<String, String>) -> &'a str {
    intents.get(name).map_or(name, String::as_str)
}

/// Who is asking, as far as the connection tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    /// `wyoming.satellite` of the listener, when set: it wins.
    pub fixed: Option<String>,
    /// From the peer's address (`wyoming-192-168-1-20`), when nothing better.
    pub peer: String,
}

impl Asker {
    /// The satellite a request with this `context` comes from: the
    /// listener's, else the context's valid `satellite_id`, else the peer's.
    pub fn satellite(&self, context: Option<&Value>) -> String {
        if let Some(fixed) = &self.fixed {
            return fixed.clone();
        }
        context
            .and_then(|c| c.get("satellite_id"))
            .and_then(Value::as_str)
            .filter(|id| check_satellite_id(id).is_ok())
            .map_or_else(|| self.peer.clone(), str::to_string)
    }
}

/// A satellite id for a peer address: `wyoming-` and the IP with its dots
/// and colons as dashes.
pub fn peer_satellite(peer: std::net::SocketAddr) -> String {
    let ip = peer.ip().to_canonical().to_string();
    let id: String = format!("wyoming-{ip}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    id.chars().take(64).collect()
}

/// The request for an `intent` event's `data`, with request id `id`.
///
/// - `name` is the intent: `[wyoming.intents]` maps it to a skill, else it
///   is tried as is.
/// - `entities[]` (`{"name", "value"}`) become `args`, values as they are; a
///   name given twice becomes an array. For `timer.set`, numeric `days`,
///   `hours`, `minutes`, `seconds` become one `duration`.
/// - `context.satellite_id` may name the satellite (see [`Asker`]).
pub fn request(
    data: &Map<String, Value>,
    intents: &BTreeMap<String, String>,
    asker: &Asker,
    id: &str,
) -> Result<Request, Box<Rejected>> {
    let satellite = asker.satellite(data.get("context"));
    let mut known = Known::new(&satellite, PROTOCOL);
    known.id = Some(id.to_string());
    let reject = |known: &Known, code, pointer: &str, message: String| {
        Box::new(Rejected {
            known: known.clone(),
            failure: Failure::invalid_at(code, pointer, message),
        })
    };
    let name = match data.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name,
        Some(Value::String(_)) => {
            return Err(reject(
                &known,
                ErrorCode::BadIntent,
                "/name",
                "is empty".into(),
            ));
        }
        None | Some(Value::Null) => {
            return Err(reject(
                &known,
                ErrorCode::MissingIntent,
                "/name",
                "is required: the intent's name".into(),
            ));
        }
        Some(other) => {
            return Err(reject(
                &known,
                ErrorCode::BadIntent,
                "/name",
                format!("must be a string, not {}", kind_of(other)),
            ));
        }
    };
    let skill = skill_for(name, intents);
    known.intent = Some(skill.to_string());
    let entities = match data.get("entities") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(entities)) => entities,
        Some(other) => {
            return Err(reject(
                &known,
                ErrorCode::BadArgs,
                "/entities",
                format!("must be an array, not {}", kind_of(other)),
            ));
        }
    };
    let mut pairs = Vec::with_capacity(entities.len());
    for (i, entity) in entities.iter().enumerate() {
        let Some(entity) = entity.as_object() else {
            return Err(reject(
                &known,
                ErrorCode::BadArgs,
                &format!("/entities/{i}"),
                format!("must be an object, not {}", kind_of(entity)),
            ));
        };
        let Some(name) = entity.get("name").and_then(Value::as_str) else {
            return Err(reject(
                &known,
                ErrorCode::BadArgs,
                &format!("/entities/{i}/name"),
                "is required: a string".into(),
            ));
        };
        let value = entity.get("value").cloned().unwrap_or(Value::Null);
        pairs.push((name.to_string(), value));
    }
    let args = slots::args_for(name, skill, pairs);
    Ok(Request {
        id: id.to_string(),
        intent: skill.to_string(),
        args,
        text: None,
        confidence: None,
        satellite,
        protocol: PROTOCOL,
    })
}

/// The answer to a request: `handled` with the skill's speech when it
/// succeeded, `not-handled` with words saying why when it did not.
pub fn answer(reply: &Reply) -> Event {
    let text = spoken(reply);
    let kind = if reply.status == Status::Ok {
        "handled"
    } else {
        "not-handled"
    };
    Event::new(kind, text.map_or(json!({}), |text| json!({"text": text})))
}

/// What to say for `reply`: as Hermes says it, less the words about
/// Rhasspy.
fn spoken(reply: &Reply) -> Option<String> {
    if reply.speech.is_none()
        && let Some(error) = &reply.error
        && matches!(
            error.code,
            ErrorCode::BadArgs | ErrorCode::BadText | ErrorCode::BadConfidence
        )
    {
        return Some("Sorry, that request came to me garbled.".to_string());
    }
    crate::protocols::hermes::mapping::spoken(reply)
}

/// `error {text, code}`: an event the hub could not read or take.
pub fn error(reply: &Reply) -> Event {
    let (text, code) = match &reply.error {
        Some(error) => (error.message.clone(), error.code.to_string()),
        None => (
            "the event was refused".to_string(),
            ErrorCode::BadEvent.to_string(),
        ),
    };
    Event::new("error", json!({"text": text, "code": code}))
}

/// `info`: one `handle` program, Hark, whose models are the intent names
/// it answers — each enabled skill, and each `[wyoming.intents]` name that
/// maps to one.
pub fn info(registry: &Registry, intents: &BTreeMap<String, String>) -> Event {
    let attribution = json!({"name": "Hark", "url": env!("CARGO_PKG_REPOSITORY")});
    let model = |name: &str, description: String| {
        json!({"name": name, "attribution": attribution, "installed": true,
               "description": description, "version": Value::Null, "languages": ["en"]})
    };
    let mut models = Vec::new();
    for (name, skill) in intents {
        if let Some(s) = registry.get(skill).filter(|s| s.enabled()) {
            models.push(model(
                name,
                format!("{skill}: {}", s.info.manifest.description),
            ));
        }
    }
    for skill in registry.iter().filter(|s| s.enabled()) {
        models.push(model(skill.name(), skill.info.manifest.description.clone()));
    }
    let program = json!({
        "name": "hark",
        "attribution": attribution,
        "installed": true,
        "description": "Hark voice-assistant hub: runs intents through its policy gate and audit log",
        "version": env!("CARGO_PKG_VERSION"),
        "models": models,
        "supports_handled_streaming": false,
    });
    Event::new(
        "info",
        json!({"asr": [], "tts": [], "handle": [program], "intent": [], "wake": [],
               "mic": [], "snd": []}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker() -> Asker {
        Asker {
            fixed: None,
            peer: "wyoming-127-0-0-1".into(),
        }
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn entities_become_args_and_mapped_names_their_skill() {
        let intents = BTreeMap::from([("HassStartTimer".to_string(), "timer.set".to_string())]);
        let r = request(
            &data(json!({"name": "HassStartTimer",
                         "entities": [{"name": "minutes", "value": 5}, {"name": "label", "value": "tea"}],
                         "context": {"satellite_id": "kitchen"}})),
            &intents,
            &asker(),
            "wyoming-1",
        )
        .unwrap();
        assert_eq!(r.intent, "timer.set");
        assert_eq!(
            Value::Object(r.args),
            json!({"duration": "5m", "label": "tea"})
        );
        assert_eq!((r.satellite.as_str(), r.protocol), ("kitchen", PROTOCOL));
    }

    #[test]
    fn the_listener_satellite_wins_and_a_bad_context_id_falls_back_to_the_peer() {
        let fixed = Asker {
            fixed: Some("den".into()),
            ..asker()
        };
        let ctx = json!({"satellite_id": "kitchen"});
        assert_eq!(fixed.satellite(Some(&ctx)), "den");
        assert_eq!(
            asker().satellite(Some(&json!({"satellite_id": "a b"}))),
            "wyoming-127-0-0-1"
        );
        assert_eq!(asker().satellite(None), "wyoming-127-0-0-1");
        assert_eq!(peer_satellite("[::1]:5".parse().unwrap()), "wyoming---1");
        assert_eq!(
            peer_satellite("192.168.1.20:5".parse().unwrap()),
            "wyoming-192-168-1-20"
        );
    }

    #[test]
    fn bad_intent_data_is_refused_at_its_pointer() {
        let cases = [
            (json!({}), ErrorCode::MissingIntent, "/name"),
            (json!({"name": 3}), ErrorCode::BadIntent, "/name"),
            (
                json!({"name": "x", "entities": {}}),
                ErrorCode::BadArgs,
                "/entities",
            ),
            (
                json!({"name": "x", "entities": [1]}),
                ErrorCode::BadArgs,
                "/entities/0",
            ),
            (
                json!({"name": "x", "entities": [{"value": 1}]}),
                ErrorCode::BadArgs,
                "/entities/0/name",
            ),
        ];
        for (d, code, pointer) in cases {
            let rejected =
                request(&data(d.clone()), &BTreeMap::new(), &asker(), "w-1").unwrap_err();
            assert_eq!(rejected.failure.code, code, "{d}");
            assert_eq!(rejected.failure.details[0].pointer, pointer, "{d}");
            assert_eq!(rejected.known.id.as_deref(), Some("w-1"));
        }
    }
}
