//! Who is playing what: the hub's speaker (one clip at a time, owned by the
//! satellite that asked for it) and sounds the hub told satellites to play.
//! Every start and stop becomes a `playback_started` / `playback_stopped`
//! event for the owning satellite. A satellite whose protocol carries sounds
//! ([`SatelliteSound::Sent`], Hermes's `playBytes`) is sent the sound itself
//! and reports when it is done ([`PlaybackService::finished`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hark_skills_builtin::{EffectError, ErrorCode, PlaybackView, Target};
use serde_json::json;

use crate::audio::{self, AudioError, AudioOut, Clip, PlaybackEnd, PlaybackStopper};
use crate::events::{Event, Outbox, Protocol, SatelliteSound};
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
    /// The hub sent the sound; the satellite says when it is done.
    sent: bool,
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

    fn load(&self, sound: &str) -> Result<Clip, EffectError> {
        self.load_at(sound, self.out.sample_rate())
    }

    /// Built-ins are synthesized at `sample_rate`; files keep their own.
    fn load_at(&self, sound: &str, sample_rate: u32) -> Result<Clip, EffectError> {
        audio::media::load(sound, self.media_dir.as_deref(), sample_rate).map_err(effect_error)
    }

    /// Starts `sound` for `satellite`; returns at once.
    pub fn play(
        self: &Arc<Self>,
        satellite: &str,
        protocol: Protocol,
        sound: &str,
        target: Target,
        volume: f32,
    ) -> Result<PlaybackView, EffectError> {
        self.start(satellite, protocol, sound, target, volume, None)
    }

    /// Rings the alarm on the hub's speaker for `satellite`, over and over,
    /// until the satellite stops it (`system.cancel`), another sound takes
    /// the speaker, or `ring_for` has passed (`audio.alarm_max_s`).
    pub fn ring(
        self: &Arc<Self>,
        satellite: &str,
        protocol: Protocol,
        ring_for: Duration,
    ) -> Result<PlaybackView, EffectError> {
        self.start(
            satellite,
            protocol,
            "alarm",
            Target::Hub,
            1.0,
            Some(ring_for),
        )
    }

    fn start(
        self: &Arc<Self>,
        satellite: &str,
        protocol: Protocol,
        sound: &str,
        target: Target,
        volume: f32,
        ring_for: Option<Duration>,
    ) -> Result<PlaybackView, EffectError> {
        let route = self.outbox.route(protocol);
        let sent = match (target, route.as_ref().map(|r| r.satellite_sound())) {
            (Target::Satellite, Some(SatelliteSound::Sent { sample_rate, grace })) => {
                Some((sample_rate, grace))
            }
            _ => None,
        };
        let clip = match sent {
            Some((sample_rate, _)) => self.load_at(sound, sample_rate)?,
            None => self.load(sound)?,
        };
        let duration = clip.duration();
        let id = format!("p-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        // f32 -> JSON would print 0.800000011920929.
        let volume_json = (f64::from(volume) * 1000.0).round() / 1000.0;
        let mut started = json!({
            "event": "playback_started", "playback_id": id, "sound": sound,
            "target": target.as_str(), "volume": volume_json,
            "duration_ms": duration.as_millis() as u64,
        });
        if let Some(ring_for) = ring_for {
            // Until stopped: at most this long.
            started["duration_ms"] = json!(ring_for.as_millis() as u64);
            started["repeat"] = json!(true);
        }
        match target {
            Target::Hub => {
                self.play_on_hub(satellite, protocol, &id, sound, clip, volume, ring_for)
            }
            Target::Satellite => {
                let mut until = tokio::time::Instant::now() + duration;
                if let (Some((_, grace)), Some(route)) = (sent, &route) {
                    route.send_sound(satellite, &id, sound, &clip, &self.outbox)?;
                    until += grace;
                }
                let previous = self.lock().satellites.insert(
                    satellite.to_string(),
                    SatellitePlayback {
                        id: id.clone(),
                        protocol,
                        sound: sound.to_string(),
                        until,
                        sent: sent.is_some(),
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

    /// Plays `clip` on the hub's speaker; with `ring_for`, again each time
    /// it ends, until stopped or replaced, cut off once `ring_for` has passed.
    #[allow(clippy::too_many_arguments)]
    fn play_on_hub(
        self: &Arc<Self>,
        satellite: &str,
        protocol: Protocol,
        id: &str,
        sound: &str,
        clip: Clip,
        volume: f32,
        ring_for: Option<Duration>,
    ) {
        let again = ring_for.map(|_| clip.clone());
        let mut playback = self.out.play(clip, volume);
        self.lock().hub = Some(HubPlayback {
            id: id.to_string(),
            satellite: satellite.to_string(),
            stopper: playback.stopper(),
        });
        let this = self.clone();
        let (satellite, id, sound) = (satellite.to_string(), id.to_string(), sound.to_string());
        let deadline = ring_for.map(|d| tokio::time::Instant::now() + d);
        tokio::spawn(async move {
            let end = loop {
                let end = match deadline {
                    None => playback.finished().await,
                    Some(deadline) => {
                        let stopper = playback.stopper();
                        tokio::select! {
                            end = playback.finished() => end,
                            _ = tokio::time::sleep_until(deadline) => {
                                stopper.stop();
                                playback.finished().await;
                                // It rang as long as it may: that is its end.
                                break PlaybackEnd::Completed;
                            }
                        }
                    }
                };
                let (PlaybackEnd::Completed, Some(clip)) = (end, &again) else {
                    break end;
                };
                // Ring again, unless it was stopped or replaced meanwhile
                // (then the speaker is no longer this playback's).
                let mut state = this.lock();
                match state.hub.as_mut().filter(|p| p.id == id) {
                    Some(current) => {
                        playback = this.out.play(clip.clone(), volume);
                        current.stopper = playback.stopper();
                    }
                    None => break end,
                }
            };
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
        if state.hub.as_ref().is_some_and(|p| p.satellite == satellite)
            && let Some(p) = state.hub.take()
        {
            // The watcher task sends playback_stopped when the sink confirms.
            p.stopper.stop();
            stopped += 1;
        }
        if let Some(p) = state.satellites.remove(satellite)
            && p.until > tokio::time::Instant::now()
        {
            self.stopped_event(satellite, p.protocol, &p.id, &p.sound, "cancelled");
            stopped += 1;
        }
        stopped
    }

    /// A satellite reported (Hermes: `playFinished`) that it played the
    /// sound the hub sent it as playback `id` to the end. Returns whether
    /// that was the satellite's current playback (which is then over).
    pub fn finished(&self, satellite: &str, id: &str) -> bool {
        let mut state = self.lock();
        let current = state
            .satellites
            .get(satellite)
            .is_some_and(|p| p.id == id && p.sent);
        if !current {
            return false;
        }
        if let Some(p) = state.satellites.remove(satellite) {
            drop(state);
            self.stopped_event(satellite, p.protocol, &p.id, &p.sound, "completed");
        }
        true
    }

    /// How long a sound plays, without playing it.
    pub fn duration_of(&self, sound: &str) -> Result<Duration, EffectError> {
        Ok(self.load(sound)?.duration())
    }
}

/// Audio errors name files and folders on the hub: fine for `error.message`,
/// not for a speaker in the living room. Speech gets a plain sentence.
fn effect_error(e: AudioError) -> EffectError {
    let detail = Some(e.to_string());
    let (code, message, pointer) = match &e {
        AudioError::MediaDirNotSet => (
            ErrorCode::BadSound,
            "I can only play the chime and the alarm; no media folder is set up.".to_string(),
            Some("/sound"),
        ),
        AudioError::BadName { .. } => (
            ErrorCode::BadSound,
            "I can't play a sound by that name.".to_string(),
            Some("/sound"),
        ),
        AudioError::NotFound { name, .. } => (
            ErrorCode::BadSound,
            format!("I can't find a sound called {name}."),
            Some("/sound"),
        ),
        AudioError::OutsideMediaDir { .. } => (
            ErrorCode::BadSound,
            "That sound is outside the media folder, so I won't play it.".to_string(),
            Some("/sound"),
        ),
        AudioError::MediaDir { .. } => (
            ErrorCode::BadSound,
            "The media folder can't be used right now.".to_string(),
            Some("/sound"),
        ),
        AudioError::Read { .. } | AudioError::TooLarge { .. } | AudioError::InvalidWav { .. } => (
            ErrorCode::SoundUnplayable,
            "That sound file can't be played.".to_string(),
            None,
        ),
        AudioError::NoAudioSupport | AudioError::Device { .. } => (
            ErrorCode::Speaker,
            "The hub's speaker isn't working.".to_string(),
            None,
        ),
    };
    EffectError {
        code,
        message,
        detail,
        pointer,
    }
}

/// Timers ring the alarm on the hub's speaker, owned by the timer's satellite
/// so that satellite's "stop" silences it.
/// Rings a finished timer's alarm on the hub's speaker until the satellite
/// stops it, at most `ring_for` (`audio.alarm_max_s`).
#[derive(Debug)]
pub struct AlarmRinger {
    pub playback: Arc<PlaybackService>,
    pub ring_for: Duration,
}

impl Ringer for AlarmRinger {
    fn ring(&self, timer: &Timer) {
        if let Err(e) = self
            .playback
            .ring(&timer.satellite, timer.protocol, self.ring_for)
        {
            tracing::warn!("timer {} could not ring: {}", timer.id, e.message);
        }
    }
}
