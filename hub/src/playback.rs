//! Who is playing what: the hub's speaker (one clip at a time, owned by the
//! satellite that asked for it) and sounds the hub told satellites to play.
//! Every start and stop becomes a `playback_started` / `playback_stopped`
//! event for the owning satellite.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hark_skills_builtin::{HostError, PlaybackView, Target};
use serde_json::json;

use crate::audio::{self, AudioError, AudioOut, Clip, PlaybackEnd, PlaybackStopper};
use crate::events::{Event, Outbox, Protocol};
use crate::timers::{Ringer, Timer};

#[derive(Debug)]
struct HubPlayback {
    id: String,
    satellite: String,
    stopper: PlaybackStopper,
}

#[derive(Debug)]
struct SatellitePlayback {
    id: String,
    protocol: Protocol,
    sound: String,
    until: tokio::time::Instant,
}

#[derive(Debug, Default)]
struct State {
    hub: Option<HubPlayback>,
    satellites: HashMap<String, SatellitePlayback>,
}

#[derive(Debug)]
pub struct PlaybackService {
    out: AudioOut,
    media_dir: Option<PathBuf>,
    outbox: Outbox,
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl PlaybackService {
    pub fn new(out: AudioOut, media_dir: Option<PathBuf>, outbox: Outbox) -> Arc<PlaybackService> {
        Arc::new(PlaybackService {
            out,
            media_dir,
            outbox,
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        self.out.backend_name()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load(&self, sound: &str) -> Result<Clip, HostError> {
        audio::media::load(sound, self.media_dir.as_deref(), self.out.sample_rate())
            .map_err(host_error)
    }

    /// Starts `sound` for `satellite`; returns at once.
    pub fn play(
        self: &Arc<Self>,
        satellite: &str,
        protocol: Protocol,
        sound: &str,
        target: Target,
        volume: f32,
    ) -> Result<PlaybackView, HostError> {
        let clip = self.load(sound)?;
        let duration = clip.duration();
        let id = format!("p-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        // f32 -> JSON would print 0.800000011920929.
        let volume_json = (f64::from(volume) * 1000.0).round() / 1000.0;
        let started = json!({
            "event": "playback_started", "playback_id": id, "sound": sound,
            "target": target.as_str(), "volume": volume_json,
            "duration_ms": duration.as_millis() as u64,
        });
        match target {
            Target::Hub => self.play_on_hub(satellite, protocol, &id, sound, clip, volume),
            Target::Satellite => {
                let previous = self.lock().satellites.insert(
                    satellite.to_string(),
                    SatellitePlayback {
                        id: id.clone(),
                        protocol,
                        sound: sound.to_string(),
                        until: tokio::time::Instant::now() + duration,
                    },
                );
                let still_playing = |p: &SatellitePlayback| p.until > tokio::time::Instant::now();
                if let Some(previous) = previous.filter(still_playing) {
                    self.stopped_event(
                        satellite,
                        previous.protocol,
                        &previous.id,
                        &previous.sound,
                        "replaced",
                    );
                }
            }
        }
        self.outbox.event(Event::new(satellite, protocol, started));
        Ok(PlaybackView {
            id,
            sound: sound.to_string(),
            target,
            duration,
        })
    }

    fn play_on_hub(
        self: &Arc<Self>,
        satellite: &str,
        protocol: Protocol,
        id: &str,
        sound: &str,
        clip: Clip,
        volume: f32,
    ) {
        let mut playback = self.out.play(clip, volume);
        self.lock().hub = Some(HubPlayback {
            id: id.to_string(),
            satellite: satellite.to_string(),
            stopper: playback.stopper(),
        });
        let this = self.clone();
        let (satellite, id, sound) = (satellite.to_string(), id.to_string(), sound.to_string());
        tokio::spawn(async move {
            let end = playback.finished().await;
            {
                let mut state = this.lock();
                if state.hub.as_ref().is_some_and(|p| p.id == id) {
                    state.hub = None;
                }
            }
            let reason = match end {
                PlaybackEnd::Completed => "completed",
                PlaybackEnd::Stopped => "cancelled",
                PlaybackEnd::Replaced => "replaced",
                PlaybackEnd::Failed => "failed",
            };
            this.stopped_event(&satellite, protocol, &id, &sound, reason);
        });
    }

    fn stopped_event(
        &self,
        satellite: &str,
        protocol: Protocol,
        id: &str,
        sound: &str,
        reason: &str,
    ) {
        self.outbox.event(Event::new(
            satellite,
            protocol,
            json!({"event": "playback_stopped", "playback_id": id, "sound": sound, "reason": reason}),
        ));
    }

    /// Stops what `satellite` is playing, on the hub and on itself; returns
    /// how many playbacks it stopped.
    pub fn stop(&self, satellite: &str) -> usize {
        let mut state = self.lock();
        let mut stopped = 0;
        if state.hub.as_ref().is_some_and(|p| p.satellite == satellite) {
            if let Some(p) = state.hub.take() {
                // The watcher task sends playback_stopped when the sink confirms.
                p.stopper.stop();
                stopped += 1;
            }
        }
        if let Some(p) = state.satellites.remove(satellite) {
            if p.until > tokio::time::Instant::now() {
                self.stopped_event(satellite, p.protocol, &p.id, &p.sound, "cancelled");
                stopped += 1;
            }
        }
        stopped
    }

    /// How long a sound plays, without playing it.
    pub fn duration_of(&self, sound: &str) -> Result<Duration, HostError> {
        Ok(self.load(sound)?.duration())
    }
}

/// Audio errors name files and folders on the hub: fine for `error.message`,
/// not for a speaker in the living room. Speech gets a plain sentence.
fn host_error(e: AudioError) -> HostError {
    let detail = Some(e.to_string());
    let (code, message, pointer) = match &e {
        AudioError::MediaDirNotSet => (
            "bad_sound",
            "I can only play the chime and the alarm; no media folder is set up.".to_string(),
            Some("/sound"),
        ),
        AudioError::BadName { .. } => (
            "bad_sound",
            "I can't play a sound by that name.".to_string(),
            Some("/sound"),
        ),
        AudioError::NotFound { name, .. } => (
            "bad_sound",
            format!("I can't find a sound called {name}."),
            Some("/sound"),
        ),
        AudioError::OutsideMediaDir { .. } => (
            "bad_sound",
            "That sound is outside the media folder, so I won't play it.".to_string(),
            Some("/sound"),
        ),
        AudioError::MediaDir { .. } => (
            "bad_sound",
            "The media folder can't be used right now.".to_string(),
            Some("/sound"),
        ),
        AudioError::Read { .. } | AudioError::TooLarge { .. } | AudioError::InvalidWav { .. } => (
            "sound_unplayable",
            "That sound file can't be played.".to_string(),
            None,
        ),
        AudioError::NoAudioSupport | AudioError::Device { .. } => (
            "speaker",
            "The hub's speaker isn't working.".to_string(),
            None,
        ),
    };
    HostError {
        code,
        message,
        detail,
        pointer,
    }
}

/// Timers ring the alarm on the hub's speaker, owned by the timer's satellite
/// so that satellite's "stop" silences it.
#[derive(Debug)]
pub struct AlarmRinger(pub Arc<PlaybackService>);

impl Ringer for AlarmRinger {
    fn ring(&self, timer: &Timer) {
        if let Err(e) = self
            .0
            .play(&timer.satellite, timer.protocol, "alarm", Target::Hub, 1.0)
        {
            tracing::warn!("timer {} could not ring: {}", timer.id, e.message);
        }
    }
}
