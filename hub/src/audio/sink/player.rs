//! The hub's speaker: which output plays, and one clip at a time across every clone.

use std::sync::atomic::AtomicBool;
#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

#[cfg(feature = "audio-cpal")]
use super::device;
use super::null::{NULL_SAMPLE_RATE, Warnings, keep_time};
use super::playback::{Control, Playback, PlaybackEnd};
use crate::audio::{AudioError, Clip};

/// Which output to use (config `audio.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioBackend {
    /// The speaker if one works, otherwise silently keep time (with one warning).
    #[default]
    Auto,
    /// The speaker, or an error from [`AudioOut::open`].
    Cpal,
    /// Never touch audio hardware.
    Null,
}

#[derive(Debug)]
pub(super) enum Output {
    Null,
    #[cfg(feature = "audio-cpal")]
    Cpal(device::Handle),
}

#[derive(Debug)]
struct Inner {
    output: Output,
    sample_rate: u32,
    #[cfg(test)]
    next_id: AtomicU64,
    /// The one playback allowed to be audible.
    current: Mutex<Option<Arc<Control>>>,
    warnings: Arc<Warnings>,
}

/// The hub's speaker. Cloning is cheap and clones share the speaker, so
/// "one clip at a time" holds across all of them.
#[derive(Debug, Clone)]
pub struct AudioOut {
    inner: Arc<Inner>,
}

impl AudioOut {
    /// Opens the output chosen by `backend`.
    ///
    /// `Auto` probes the default output device and its default configuration;
    /// if that fails it logs one warning saying why and that sounds will not be
    /// heard, and returns the null sink. `Cpal` returns that failure instead.
    /// `Null` touches no hardware. Without the `audio-cpal` feature, `Auto` is
    /// the null sink (logged at info) and `Cpal` is an error.
    ///
    /// Blocks briefly while probing; call it at startup.
    pub fn open(backend: AudioBackend) -> Result<AudioOut, AudioError> {
        match backend {
            AudioBackend::Null => Ok(AudioOut::null()),
            AudioBackend::Cpal => AudioOut::open_cpal(),
            AudioBackend::Auto => match AudioOut::open_cpal() {
                Ok(out) => Ok(out),
                Err(AudioError::NoAudioSupport) => {
                    tracing::info!(
                        "this build has no speaker support (no `audio-cpal` feature); sounds will not be heard"
                    );
                    Ok(AudioOut::null())
                }
                Err(AudioError::Device { what, reason }) => {
                    tracing::warn!(
                        "no usable speaker: {what} failed: {reason}; sounds will not be heard \
                         (timers and events still work). Set audio.backend = \"null\" to silence this warning"
                    );
                    Ok(AudioOut::null())
                }
                Err(other) => {
                    tracing::warn!("no usable speaker: {other}; sounds will not be heard");
                    Ok(AudioOut::null())
                }
            },
        }
    }

    /// A silent output that keeps each clip's real timing.
    pub fn null() -> AudioOut {
        AudioOut::with_output(Output::Null, NULL_SAMPLE_RATE, Arc::default())
    }

    pub(super) fn with_output(
        output: Output,
        sample_rate: u32,
        warnings: Arc<Warnings>,
    ) -> AudioOut {
        AudioOut {
            inner: Arc::new(Inner {
                output,
                sample_rate,
                #[cfg(test)]
                next_id: AtomicU64::new(0),
                current: Mutex::new(None),
                warnings,
            }),
        }
    }

    #[cfg(feature = "audio-cpal")]
    fn open_cpal() -> Result<AudioOut, AudioError> {
        let warnings = Arc::<Warnings>::default();
        let (handle, rate) = device::start(Arc::clone(&warnings))?;
        tracing::info!("sounds play on the default output device ({rate} Hz)");
        Ok(AudioOut::with_output(Output::Cpal(handle), rate, warnings))
    }

    #[cfg(not(feature = "audio-cpal"))]
    fn open_cpal() -> Result<AudioOut, AudioError> {
        Err(AudioError::NoAudioSupport)
    }

    /// "cpal" or "null".
    pub fn backend_name(&self) -> &'static str {
        match self.inner.output {
            Output::Null => "null",
            #[cfg(feature = "audio-cpal")]
            Output::Cpal(_) => "cpal",
        }
    }

    /// The rate to synthesize clips at: the device's default rate (null: 48 kHz).
    pub fn sample_rate(&self) -> u32 {
        self.inner.sample_rate
    }

    /// Starts playing `clip` now at `volume` (linear gain, clamped to 0..=1),
    /// ending whatever was playing with [`PlaybackEnd::Replaced`]. Returns at
    /// once. Must be called inside a tokio runtime, whose timer paces the null
    /// sink and any fallback; without one the playback ends as `Failed`.
    pub fn play(&self, clip: Clip, volume: f32) -> Playback {
        let control = Arc::new(Control {
            #[cfg(test)]
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            quiet: AtomicBool::new(false),
            end: watch::channel(None).0,
        });
        let previous = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Arc::clone(&control));
        if let Some(previous) = previous {
            previous.finish(PlaybackEnd::Replaced);
        }
        let volume = if volume.is_nan() {
            0.0
        } else {
            volume.clamp(0.0, 1.0)
        };
        let runtime = tokio::runtime::Handle::try_current().ok();

        match &self.inner.output {
            Output::Null => {
                // Silence is silence at any volume.
                let _ = volume;
                keep_time(
                    Arc::clone(&control),
                    clip.duration(),
                    PlaybackEnd::Completed,
                    runtime,
                    &self.inner.warnings,
                );
            }
            #[cfg(feature = "audio-cpal")]
            Output::Cpal(handle) => handle.play(device::Request {
                clip,
                volume,
                control: Arc::clone(&control),
                runtime,
            }),
        }
        let ended = control.end.subscribe();
        Playback { control, ended }
    }

    /// Stops whatever is playing (ends it as [`PlaybackEnd::Stopped`]).
    #[cfg(test)]
    pub fn stop_all(&self) {
        let current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(current) = current {
            current.finish(PlaybackEnd::Stopped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::sink::test_util::silence;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_second_play_replaces_the_first() {
        let out = AudioOut::null();
        let mut first = out.play(silence(10), 1.0);
        let mut second = out.clone().play(silence(1), 1.0);
        assert!(second.id() > first.id());
        assert_eq!(first.finished().await, PlaybackEnd::Replaced);
        assert_eq!(second.finished().await, PlaybackEnd::Completed);
        // Finishing late must not rewrite how the first one ended.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(first.end(), Some(PlaybackEnd::Replaced));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_all_stops_the_current_playback() {
        let out = AudioOut::null();
        let mut playback = out.play(silence(10), 1.0);
        out.stop_all();
        assert_eq!(playback.finished().await, PlaybackEnd::Stopped);
    }

    #[cfg(not(feature = "audio-cpal"))]
    #[test]
    fn without_cpal_support_auto_is_null_and_cpal_is_an_error() {
        assert_eq!(
            AudioOut::open(AudioBackend::Auto).unwrap().backend_name(),
            "null"
        );
        let error = AudioOut::open(AudioBackend::Cpal).unwrap_err();
        assert!(matches!(error, AudioError::NoAudioSupport));
        assert!(error.to_string().contains("audio-cpal"));
    }
}
