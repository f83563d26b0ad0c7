//! Rhasspy 2.5 satellites over the Snips/Rhasspy Hermes protocol
//! (`hermes.enabled`), served through the same dispatcher, policy gate and
//! audit log as the native protocol.
//!
//! An NluIntent on `hermes/intent/<name>` is decoded into a [`Request`]
//! ([`mapping`]) and run by the [`adapter`]; the answer goes back as
//! `hermes/dialogueManager/endSession` (or `hermes/tts/say` outside a
//! session). Later events come through the outbox to this protocol's route
//! ([`event_message`]): a finished timer is announced with `tts/say`; a sound
//! for a Hermes satellite is sent to it as `playBytes`.
//!
//! Layout:
//! - [`config`] — `[hermes]` in `hark.toml`
//! - [`topics`] — the fixed `hermes/...` topic names
//! - [`nlu`] — NluIntent and the answerable envelope of any message (read)
//! - [`answer`] — endSession, tts/say, playBytes, playFinished (write, and read back)
//! - [`mapping`] — NluIntent -> request, reply -> words to say
//! - [`adapter`] — the glue to the dispatcher and the outbox
//!
//! [`Request`]: crate::request::Request

use std::sync::Arc;
use std::time::Duration;

use hark_skill_sdk::{ErrorCode, Reply};
use hark_skills_builtin::EffectError;

use crate::audio::Clip;
use crate::events::{Event, Message, Outbox, Protocol, Route, SatelliteSound};
use crate::hub::HubError;

use super::Setup;

pub(crate) mod adapter;
pub(crate) mod answer;
pub(crate) mod config;
pub(crate) mod mapping;
pub mod nlu;
pub(crate) mod topics;

pub use adapter::{Adapter, Kind};

pub const PROTOCOL: Protocol = Protocol::new("hermes");

/// Built-in sounds sent to a Hermes satellite are synthesized at this rate
/// (files keep their own): small `playBytes`, and any satellite plays it.
pub const SATELLITE_SAMPLE_RATE: u32 = 22_050;

/// A Hermes satellite's playback counts as playing until its `playFinished`,
/// or until this long after the clip's length when none comes (a satellite
/// that went away, or queued the sound behind speech).
pub const FINISH_GRACE: Duration = Duration::from_secs(10);

/// Registers the Hermes route (a Hermes satellite's timer may ring after
/// `hermes.enabled` was turned off) and, when enabled, serves the Hermes topics.
pub fn start(setup: &Setup) -> Result<Option<Arc<dyn super::Adapter>>, HubError> {
    let max_payload = setup.config.mqtt.max_payload;
    setup.outbox.add_route(
        PROTOCOL,
        Arc::new(Events {
            play_bytes_limit: play_bytes_limit(max_payload),
        }),
    );
    let hermes = &setup.config.hermes;
    if !hermes.enabled {
        return Ok(None);
    }
    Ok(Some(Arc::new(Adapter::new(
        setup.dispatcher.clone(),
        setup.outbox.clone(),
        hermes,
        max_payload,
    ))))
}

/// Largest `playBytes` WAV the hub sends: the packet limit for
/// `max_payload` ([`crate::mqtt::packet_limit`]), less room for the topic,
/// so no broker the hub can start drops the hub for it.
pub fn play_bytes_limit(max_payload: usize) -> usize {
    crate::mqtt::packet_limit(max_payload) - 4096
}

/// The site a Hermes message speaks for, to share the hub's request permits
/// fairly among sites before the adapter reads the message in full:
/// `siteId`, `"default"` when absent (as in rhasspy-hermes), and one shared
/// key for payloads that are not JSON objects or too large to look into
/// (the adapter refuses those).
pub fn site_of(payload: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Site {
        #[serde(rename = "siteId")]
        site_id: Option<String>,
    }
    const LOOK_AT_MOST: usize = 1 << 20;
    if payload.len() > LOOK_AT_MOST {
        return "hermes:unreadable".into();
    }
    match serde_json::from_slice::<Site>(payload) {
        Ok(Site {
            site_id: Some(site),
        }) => site,
        Ok(Site { site_id: None }) => "default".into(),
        Err(_) => "hermes:unreadable".into(),
    }
}

/// A Hermes satellite's event as Hermes messages: `timer_finished` becomes
/// `tts/say` with the event's `speech` on the timer's site. The other events
/// have no Hermes counterpart and are not sent (`None`): a timer's start and
/// cancellation are already said in the endSession of the request that
/// caused them, and playback is carried by `playBytes` / `playFinished`.
pub fn event_message(event: &Event) -> Option<Message> {
    match event.kind() {
        "timer_finished" => {
            let text = event.body.get("speech")?.as_str()?;
            let id = event
                .body
                .get("timer_id")
                .and_then(|id| id.as_str())
                .unwrap_or("timer");
            Some(answer::TtsSay::new(text, &event.satellite, id).message())
        }
        _ => None,
    }
}

/// How Hermes satellites get events and sounds.
#[derive(Debug)]
struct Events {
    /// Largest WAV sent in one `playBytes`.
    play_bytes_limit: usize,
}

impl Route for Events {
    fn event(&self, event: &Event, outbox: &Outbox) {
        match event_message(event) {
            Some(message) => outbox.publish_event(&event.satellite, message),
            None => tracing::debug!(satellite = %event.satellite, event = event.kind(),
                "no Hermes form for this event; not sent"),
        }
    }

    /// The late answer to a request (a question that expired): ends its
    /// session, saying the reply's words; outside a session, `tts/say`s them.
    fn reply(&self, satellite: &str, reply: &Reply, outbox: &Outbox) {
        let text = mapping::spoken(reply);
        let Some(id) = reply.id.as_deref() else {
            return;
        };
        let message = if id.starts_with(adapter::SESSIONLESS_PREFIX) {
            match text {
                Some(text) => answer::TtsSay::new(&text, satellite, id).message(),
                None => return,
            }
        } else {
            answer::EndSession {
                session_id: id.to_string(),
                text,
                custom_data: serde_json::Value::Null,
            }
            .message()
        };
        outbox.publish_event(satellite, message);
    }

    fn satellite_sound(&self) -> SatelliteSound {
        SatelliteSound::Sent {
            sample_rate: SATELLITE_SAMPLE_RATE,
            grace: FINISH_GRACE,
        }
    }

    /// Sends the clip as a WAV file on
    /// `hermes/audioServer/<site>/playBytes/<playback id>`.
    fn send_sound(
        &self,
        satellite: &str,
        id: &str,
        sound: &str,
        clip: &Clip,
        outbox: &Outbox,
    ) -> Result<(), EffectError> {
        let wav = crate::audio::wav::encode_pcm16(clip);
        if wav.len() > self.play_bytes_limit {
            return Err(EffectError {
                code: ErrorCode::SoundUnplayable,
                message: "That sound is too long to send to this satellite.".to_string(),
                detail: Some(format!(
                    "{sound} is {} bytes as a 16-bit WAV file; one playBytes message carries at \
                     most {} bytes (32 x mqtt.max_payload, at least 2 MiB)",
                    wav.len(),
                    self.play_bytes_limit
                )),
                pointer: None,
            });
        }
        outbox
            .try_send(answer::play_bytes(satellite, id, wav))
            .map_err(|_| EffectError {
                code: ErrorCode::Speaker,
                message: "The satellite can't be reached right now.".to_string(),
                detail: Some("the hub's outgoing queue is full; playBytes was not sent".into()),
                pointer: None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_finished_timer_is_said_on_its_site() {
        let event = Event::new(
            "kitchen",
            PROTOCOL,
            json!({"event": "timer_finished", "timer_id": "t-3", "label": "pasta", "total_s": 300,
                   "remaining_s": 0, "speech": "Your pasta timer is done."}),
        );
        let message = event_message(&event).unwrap();
        assert_eq!(message.topic, "hermes/tts/say");
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            body,
            json!({"text": "Your pasta timer is done.", "siteId": "kitchen", "id": "t-3", "sessionId": null})
        );
    }

    #[test]
    fn events_without_a_hermes_counterpart_are_not_sent() {
        for kind in [
            "timer_started",
            "timer_cancelled",
            "playback_started",
            "playback_stopped",
        ] {
            let event = Event::new("kitchen", PROTOCOL, json!({"event": kind, "speech": "x"}));
            assert_eq!(event_message(&event), None, "{kind}");
        }
    }

    #[test]
    fn the_site_is_read_for_fair_shares() {
        assert_eq!(
            site_of(br#"{"input":"x","siteId":"kitchen","slots":[]}"#),
            "kitchen"
        );
        assert_eq!(site_of(br#"{"input":"x"}"#), "default");
        assert_eq!(site_of(b"[1,2]"), "hermes:unreadable");
        assert_eq!(site_of(b"\xff"), "hermes:unreadable");
    }

    #[test]
    fn the_play_bytes_limit_follows_the_embedded_broker() {
        assert_eq!(play_bytes_limit(65_536), 2 * 1024 * 1024 - 4096);
        assert_eq!(play_bytes_limit(1 << 20), 32 * (1 << 20) - 4096);
    }
}
