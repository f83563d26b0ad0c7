//! `audio.play`: a built-in sound or a media file, on the hub or the satellite.

use serde_json::json;

use crate::{BuiltinError, BuiltinSkill, Host, Intent, SkillReply, Target};

/// Volume when the request does not say.
pub const DEFAULT_VOLUME: f64 = 0.8;

#[derive(Debug)]
pub struct AudioPlay;

impl BuiltinSkill for AudioPlay {
    fn manifest_json(&self) -> &'static str {
        include_str!("../../manifests/audio.play.json")
    }

    fn handle(&self, intent: &Intent, host: &dyn Host) -> Result<SkillReply, BuiltinError> {
        let sound = intent
            .args
            .get("sound")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let target = match intent.args.get("target").and_then(|v| v.as_str()) {
            Some("satellite") => Target::Satellite,
            _ => Target::Hub,
        };
        let volume = intent
            .args
            .get("volume")
            .and_then(|v| v.as_f64())
            .map_or(DEFAULT_VOLUME, |v| v.clamp(0.0, 1.0));
        let playback = host.play(&intent.satellite, sound, target, volume as f32)?;
        // The sound is the answer; speaking over it would be noise.
        Ok(SkillReply {
            speech: None,
            data: Some(json!({
                "playback_id": playback.id,
                "sound": playback.sound,
                "target": target.as_str(),
                "volume": volume,
                "duration_ms": playback.duration.as_millis() as u64,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use crate::testing::{FakeHost, intent};

    #[test]
    fn plays_on_the_hub_at_the_default_volume() {
        let host = FakeHost::default();
        let reply = AudioPlay
            .handle(&intent("audio.play", json!({"sound": "chime"})), &host)
            .unwrap();
        assert_eq!(reply.speech, None);
        assert_eq!(reply.data.unwrap()["target"], "hub");
        assert_eq!(
            host.played.borrow()[0],
            ("kitchen".into(), "chime".into(), Target::Hub, 0.8)
        );
    }

    #[test]
    fn plays_on_the_satellite_when_asked() {
        let host = FakeHost::default();
        let args = json!({"sound": "alarm", "target": "satellite", "volume": 0.25});
        AudioPlay
            .handle(&intent("audio.play", args), &host)
            .unwrap();
        assert_eq!(host.played.borrow()[0].2, Target::Satellite);
        assert_eq!(host.played.borrow()[0].3, 0.25);
    }

    #[test]
    fn a_sound_the_host_cannot_find_fails_with_its_reason() {
        let host = FakeHost::default();
        let err = AudioPlay
            .handle(
                &intent("audio.play", json!({"sound": "missing.wav"})),
                &host,
            )
            .unwrap_err();
        assert_eq!(
            err,
            BuiltinError::Failed {
                code: ErrorCode::SoundUnplayable,
                message: "There is no sound called missing.wav.".into(),
                detail: None,
            }
        );
    }
}
