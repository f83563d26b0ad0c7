//! What the hub writes to Rhasspy: `endSession` (the answer inside a dialogue
//! session) and `tts/say` (speech outside one), plus the `playFinished` it
//! reads back after a `playBytes`.
//!
//! Field names and `null`s exactly as rhasspy-hermes writes them, so its
//! `DialogueEndSession` / `TtsSay` / `AudioPlayFinished` read them back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::Message;

use super::topics;

/// `hermes/dialogueManager/endSession`: ends the session, saying `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndSession {
    pub session_id: String,
    /// `null`: end without speaking (`audio.play`: the sound is the answer).
    pub text: Option<String>,
    /// The request's `customData`, given back as it came.
    #[serde(default)]
    pub custom_data: Value,
}

impl EndSession {
    pub fn message(&self) -> Message {
        Message {
            topic: topics::END_SESSION.to_string(),
            payload: serde_json::to_vec(self).expect("endSession serializes"),
            retain: false,
        }
    }
}

/// `hermes/dialogueManager/continueSession`: says `text` (a question) and
/// keeps the session open for one of `intentFilter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinueSession {
    pub session_id: String,
    pub text: String,
    pub intent_filter: Vec<String>,
    #[serde(default)]
    pub custom_data: Value,
    pub send_intent_not_recognized: bool,
}

impl ContinueSession {
    pub fn message(&self) -> Message {
        Message {
            topic: topics::CONTINUE_SESSION.to_string(),
            payload: serde_json::to_vec(self).expect("continueSession serializes"),
            retain: false,
        }
    }
}

/// `hermes/tts/say`: speak `text` on `siteId`, outside any session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TtsSay {
    pub text: String,
    pub site_id: String,
    /// Comes back in `hermes/tts/sayFinished`.
    pub id: Option<String>,
    /// Always `null`: the hub speaks this way only outside a session.
    pub session_id: Option<String>,
}

impl TtsSay {
    pub fn new(text: &str, site_id: &str, id: &str) -> TtsSay {
        TtsSay {
            text: text.to_string(),
            site_id: site_id.to_string(),
            id: Some(id.to_string()),
            session_id: None,
        }
    }

    pub fn message(&self) -> Message {
        Message {
            topic: topics::TTS_SAY.to_string(),
            payload: serde_json::to_vec(self).expect("tts/say serializes"),
            retain: false,
        }
    }
}

/// `hermes/audioServer/<siteId>/playFinished`: `{"id": requestId, "sessionId"}`
/// (the site is in the topic; a `siteId` field, if present, is ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayFinished {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
}

impl PlayFinished {
    pub fn parse(payload: &[u8]) -> Result<PlayFinished, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// `hermes/audioServer/<siteId>/playBytes/<requestId>` carrying a WAV file.
pub fn play_bytes(site_id: &str, request_id: &str, wav: Vec<u8>) -> Message {
    Message {
        topic: topics::play_bytes(site_id, request_id),
        payload: wav,
        retain: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn end_session_is_written_with_rhasspy_field_names_and_nulls() {
        let end = EndSession {
            session_id: "s-1".into(),
            text: None,
            custom_data: Value::Null,
        };
        let written: Value = serde_json::from_slice(&end.message().payload).unwrap();
        assert_eq!(
            written,
            json!({"sessionId": "s-1", "text": null, "customData": null})
        );
        assert_eq!(end.message().topic, "hermes/dialogueManager/endSession");
    }

    #[test]
    fn end_session_round_trips_with_its_custom_data() {
        let end = EndSession {
            session_id: "s-1".into(),
            text: Some("Timer set for 5 minutes.".into()),
            custom_data: json!("{\"from\": \"test\"}"),
        };
        let back: EndSession = serde_json::from_slice(&end.message().payload).unwrap();
        assert_eq!(back, end);
    }

    #[test]
    fn tts_say_names_its_site_and_has_no_session() {
        let say = TtsSay::new("Your pasta timer is done.", "kitchen", "t-3");
        let written: Value = serde_json::from_slice(&say.message().payload).unwrap();
        assert_eq!(
            written,
            json!({"text": "Your pasta timer is done.", "siteId": "kitchen", "id": "t-3", "sessionId": null})
        );
        let back: TtsSay = serde_json::from_slice(&say.message().payload).unwrap();
        assert_eq!(back, say);
        assert_eq!(say.message().topic, "hermes/tts/say");
    }

    #[test]
    fn play_finished_reads_what_rhasspy_hermes_writes() {
        // AudioPlayFinished(id="p-1").to_json()
        let finished = PlayFinished::parse(br#"{"id": "p-1", "sessionId": null}"#).unwrap();
        assert_eq!(finished.id.as_deref(), Some("p-1"));
        let with_site = PlayFinished::parse(br#"{"id": "p-2", "siteId": "kitchen"}"#).unwrap();
        assert_eq!(with_site.id.as_deref(), Some("p-2"));
        assert!(PlayFinished::parse(b"{").is_err());
    }

    #[test]
    fn play_bytes_goes_to_the_site_and_request_topic_unchanged() {
        let m = play_bytes("kitchen", "p-4", b"RIFF....".to_vec());
        assert_eq!(m.topic, "hermes/audioServer/kitchen/playBytes/p-4");
        assert_eq!(m.payload, b"RIFF....");
    }
}
