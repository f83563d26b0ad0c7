//! One clip being played: its handles, how it ended, and the state they share with whatever
//! produces its sound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Why a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackEnd {
    /// Played to the end (or, on the null sink, its duration passed).
    Completed,
    /// [`Playback::stop`] or a [`PlaybackStopper`] ended it.
    Stopped,
    /// Another [`AudioOut::play`](super::AudioOut::play) took over the speaker.
    Replaced,
    /// The speaker failed, so the clip was not heard. Still reported only once
    /// the clip's duration has passed, so callers pacing on it keep their rhythm
    /// (an alarm that repeats until dismissed does not spin).
    Failed,
}

/// Shared by a playback's handles and whatever is producing its sound.
#[derive(Debug)]
pub(super) struct Control {
    /// Only tests tell playbacks apart.
    #[cfg(test)]
    pub(super) id: u64,
    /// Read by the real-time audio callback, which must not lock.
    pub(super) quiet: AtomicBool,
    pub(super) end: watch::Sender<Option<PlaybackEnd>>,
}

impl Control {
    /// Records how the playback ended; the first caller wins, so a stop that
    /// races with natural completion reports whichever really happened first.
    pub(super) fn finish(&self, end: PlaybackEnd) -> bool {
        self.quiet.store(true, Ordering::Release);
        self.end.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(end);
                true
            } else {
                false
            }
        })
    }

    pub(super) fn ended(&self) -> Option<PlaybackEnd> {
        *self.end.borrow()
    }
}

/// One clip being played. Dropping it does not stop the sound (fire and
/// forget is the common case); call [`Playback::stop`] for that.
#[derive(Debug)]
pub struct Playback {
    pub(super) control: Arc<Control>,
    pub(super) ended: watch::Receiver<Option<PlaybackEnd>>,
}

impl Playback {
    /// Unique per [`AudioOut`](super::AudioOut), increasing with each `play`.
    #[cfg(test)]
    pub fn id(&self) -> u64 {
        self.control.id
    }

    /// Ends the playback promptly (a few milliseconds of fade on a speaker).
    /// Does nothing if it already ended.
    pub fn stop(&self) {
        self.control.finish(PlaybackEnd::Stopped);
    }

    /// How it ended, or `None` while it is still playing.
    pub fn end(&self) -> Option<PlaybackEnd> {
        self.control.ended()
    }

    /// Waits until the clip completed, was stopped or replaced, or failed.
    /// Cancel-safe, and returns the same answer if awaited again.
    pub async fn finished(&mut self) -> PlaybackEnd {
        match self.ended.wait_for(Option::is_some).await {
            Ok(end) => end.unwrap_or(PlaybackEnd::Failed),
            // Unreachable while `self` holds the sender, but never hang on it.
            Err(_) => PlaybackEnd::Failed,
        }
    }

    /// A handle that can stop this playback from elsewhere (a cancel command).
    pub fn stopper(&self) -> PlaybackStopper {
        PlaybackStopper {
            control: Arc::clone(&self.control),
        }
    }
}

/// Cheap, cloneable handle that can only stop one playback.
#[derive(Debug, Clone)]
pub struct PlaybackStopper {
    control: Arc<Control>,
}

impl PlaybackStopper {
    #[cfg(test)]
    pub fn id(&self) -> u64 {
        self.control.id
    }

    /// Same as [`Playback::stop`].
    pub fn stop(&self) {
        self.control.finish(PlaybackEnd::Stopped);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::audio::sink::test_util::silence;
    use crate::audio::{AudioOut, PlaybackEnd};

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_playback_at_once_as_stopped() {
        let out = AudioOut::null();
        let mut playback = out.play(silence(60), 1.0);
        let start = tokio::time::Instant::now();
        playback.stop();
        playback.stop();
        assert_eq!(playback.finished().await, PlaybackEnd::Stopped);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Stopping must not turn into a completion later.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(playback.end(), Some(PlaybackEnd::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopper_from_elsewhere_stops_it() {
        let out = AudioOut::null();
        let mut playback = out.play(silence(60), 1.0);
        let stopper = playback.stopper();
        assert_eq!(stopper.id(), playback.id());
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.clone().stop();
        });
        assert_eq!(playback.finished().await, PlaybackEnd::Stopped);
        cancel.await.unwrap();
    }
}
