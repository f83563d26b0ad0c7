//! The null sink: a playback that makes no sound but ends after the clip's real duration. A
//! failing speaker falls back to it, so whatever waits on a sound keeps its rhythm.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::playback::{Control, PlaybackEnd};

/// Sample rate reported by the null sink: the rate most USB and HDMI outputs
/// run at, so clips synthesized for it need no conversion if a speaker appears.
pub const NULL_SAMPLE_RATE: u32 = 48_000;

/// Remembers which warnings were already logged, so a broken speaker logs
/// once per distinct problem instead of once per sound.
#[derive(Debug, Default)]
pub(super) struct Warnings(Mutex<HashSet<String>>);

impl Warnings {
    /// True the first time `message` is seen.
    pub(super) fn first(&self, message: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded, in case some error message embeds an ever-changing detail.
        if seen.len() >= 64 {
            seen.clear();
        }
        seen.insert(message.to_owned())
    }
}

/// Ends `control` with `end` after `duration`, unless something ends it first.
/// This is the whole of the null sink, and the fallback when a speaker fails.
pub(super) fn keep_time(
    control: Arc<Control>,
    duration: Duration,
    end: PlaybackEnd,
    runtime: Option<tokio::runtime::Handle>,
    warnings: &Warnings,
) {
    let Some(runtime) = runtime else {
        let message =
            "AudioOut::play was called outside a tokio runtime, so the clip cannot be timed";
        if warnings.first(message) {
            tracing::warn!("{message}; it is reported as failed at once");
        }
        control.finish(PlaybackEnd::Failed);
        return;
    };
    runtime.spawn(async move {
        let mut ended = control.end.subscribe();
        tokio::select! {
            () = tokio::time::sleep(duration) => {
                control.finish(end);
            }
            _ = ended.wait_for(Option::is_some) => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::NULL_SAMPLE_RATE;
    use crate::audio::sink::test_util::silence;
    use crate::audio::{AudioBackend, AudioOut, Clip, PlaybackEnd, synth};

    #[tokio::test(start_paused = true)]
    async fn the_null_sink_completes_after_the_clips_duration() {
        let out = AudioOut::open(AudioBackend::Null).unwrap();
        assert_eq!(
            (out.backend_name(), out.sample_rate()),
            ("null", NULL_SAMPLE_RATE)
        );
        let playback = out.play(silence(2), 1.0);
        // Let the sink's timer start before moving the clock.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(1_999)).await;
        tokio::task::yield_now().await;
        assert_eq!(playback.end(), None);
        tokio::time::advance(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(playback.end(), Some(PlaybackEnd::Completed));
    }

    #[tokio::test(start_paused = true)]
    async fn finishing_takes_the_real_duration_of_a_builtin() {
        let out = AudioOut::null();
        let start = tokio::time::Instant::now();
        let mut playback = out.play(synth::alarm(out.sample_rate()), 0.8);
        assert_eq!(playback.finished().await, PlaybackEnd::Completed);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(3) && elapsed < Duration::from_millis(3_010),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_clip_completes_immediately() {
        let out = AudioOut::null();
        let mut playback = out.play(
            Clip {
                sample_rate: 0,
                channels: 0,
                samples: Arc::from([]),
            },
            f32::NAN,
        );
        assert_eq!(playback.finished().await, PlaybackEnd::Completed);
    }

    #[test]
    fn playing_outside_a_runtime_fails_instead_of_panicking() {
        let playback = AudioOut::null().play(silence(1), 1.0);
        assert_eq!(playback.end(), Some(PlaybackEnd::Failed));
    }
}
