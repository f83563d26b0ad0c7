//! The Hermes topics the hub reads and writes. They are fixed by Rhasspy
//! (always under `hermes/`), unlike the native ones, which follow `mqtt.prefix`.

/// NluIntent, one topic per intent name.
pub const INTENT_FILTER: &str = "hermes/intent/#";
/// What the NLU publishes when it understood nothing.
pub const NOT_RECOGNIZED: &str = "hermes/nlu/intentNotRecognized";
/// A satellite's audio server saying it finished a `playBytes`.
pub const PLAY_FINISHED_FILTER: &str = "hermes/audioServer/+/playFinished";
/// Where the hub ends a dialogue session with its answer.
pub const END_SESSION: &str = "hermes/dialogueManager/endSession";
/// Where the hub asks a question and keeps the session open for its answer.
pub const CONTINUE_SESSION: &str = "hermes/dialogueManager/continueSession";
/// Where the hub speaks outside a session.
pub const TTS_SAY: &str = "hermes/tts/say";

/// Everything the hub subscribes to when `hermes.enabled` is on.
pub const SUBSCRIPTIONS: [&str; 3] = [INTENT_FILTER, NOT_RECOGNIZED, PLAY_FINISHED_FILTER];

/// `hermes/audioServer/<siteId>/playBytes/<requestId>`.
pub fn play_bytes(site_id: &str, request_id: &str) -> String {
    format!("hermes/audioServer/{site_id}/playBytes/{request_id}")
}

/// What an incoming Hermes topic is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `hermes/intent/<name>`: the name as the topic gives it (the payload's
    /// `intent.intentName` is what counts).
    Intent { name: &'a str },
    /// `hermes/nlu/intentNotRecognized`.
    NotRecognized,
    /// `hermes/audioServer/<siteId>/playFinished`.
    PlayFinished { site_id: &'a str },
    /// Not a Hermes topic the hub serves.
    Other,
}

pub fn parse(topic: &str) -> Incoming<'_> {
    if let Some(name) = topic.strip_prefix("hermes/intent/") {
        return Incoming::Intent { name };
    }
    if topic == NOT_RECOGNIZED {
        return Incoming::NotRecognized;
    }
    if let Some(site_id) = topic
        .strip_prefix("hermes/audioServer/")
        .and_then(|rest| rest.strip_suffix("/playFinished"))
        .filter(|site| !site.is_empty() && !site.contains('/'))
    {
        return Incoming::PlayFinished { site_id };
    }
    Incoming::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_topics_are_recognized() {
        assert_eq!(
            parse("hermes/intent/SetTimer"),
            Incoming::Intent { name: "SetTimer" }
        );
        assert_eq!(
            parse("hermes/nlu/intentNotRecognized"),
            Incoming::NotRecognized
        );
        assert_eq!(
            parse("hermes/audioServer/kitchen/playFinished"),
            Incoming::PlayFinished { site_id: "kitchen" }
        );
    }

    #[test]
    fn other_topics_are_not_ours() {
        for topic in [
            "hermes/tts/say",
            "hermes/dialogueManager/endSession",
            "hermes/audioServer/kitchen/playBytes/p-1",
            "hermes/audioServer//playFinished",
            "hermes/audioServer/a/b/playFinished",
            "hark/intent/kitchen",
            "hermes/intentX",
        ] {
            assert_eq!(parse(topic), Incoming::Other, "{topic}");
        }
    }

    #[test]
    fn play_bytes_topics_name_site_and_request() {
        assert_eq!(
            play_bytes("kitchen", "p-3"),
            "hermes/audioServer/kitchen/playBytes/p-3"
        );
    }
}
