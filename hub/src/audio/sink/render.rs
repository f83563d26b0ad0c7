//! What the audio callback runs: the clip converted to the device's rate and channels on the
//! fly, a fade on stop, and a tail of silence before the stream may close.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cpal::{FromSample, Sample};

use super::playback::Control;
use crate::audio::Clip;

/// Silence played after a clip (or a stop) before closing the stream, so
/// the audio still buffered in the device is heard rather than cut off.
pub(super) const TAIL: Duration = Duration::from_millis(200);
/// A fade this long turns a stop into a soft end instead of a click.
const FADE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum Stage {
    Playing = 0,
    /// The clip's audio is over (ended or faded out); playing the tail.
    Tail = 1,
    /// Tail played: the stream can be closed.
    Done = 2,
}

/// What the stream's callbacks tell the audio thread. The real-time data
/// callback only touches the atomic, as it must never wait on a lock.
#[derive(Debug, Default)]
pub(super) struct Progress {
    stage: AtomicU8,
    /// Written once by cpal's error callback (not real-time).
    error: Mutex<Option<cpal::Error>>,
}

impl Progress {
    pub(super) fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Acquire) {
            0 => Stage::Playing,
            1 => Stage::Tail,
            _ => Stage::Done,
        }
    }

    fn advance(&self, stage: Stage) {
        self.stage.fetch_max(stage as u8, Ordering::AcqRel);
    }

    pub(super) fn record(&self, error: cpal::Error) {
        // Glitches and reroutes leave the stream playing; only errors that
        // end it matter here.
        if matches!(
            error.kind(),
            cpal::ErrorKind::Xrun
                | cpal::ErrorKind::DeviceChanged
                | cpal::ErrorKind::RealtimeDenied
        ) {
            return;
        }
        let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(error);
    }

    pub(super) fn take_error(&self) -> Option<cpal::Error> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The audio callback's state: converts the clip to the device's rate and
/// channel layout on the fly, so clips are never copied or resampled up front.
pub(super) struct Voice {
    samples: Arc<[f32]>,
    in_channels: usize,
    in_frames: usize,
    out_channels: usize,
    /// Source frames per device frame.
    step: f64,
    volume: f32,
    /// Device frames rendered so far; the source position is derived from
    /// it each frame, so rounding never accumulates over a long clip.
    rendered: u64,
    fade_frames: u32,
    /// Remaining fade frames once a stop was seen.
    fading: Option<u32>,
    tail_left: u64,
    control: Arc<Control>,
    pub(super) progress: Arc<Progress>,
}

impl Voice {
    pub(super) fn new(
        clip: &Clip,
        volume: f32,
        control: &Arc<Control>,
        config: &cpal::SupportedStreamConfig,
        progress: Arc<Progress>,
    ) -> Voice {
        let out_rate = config.sample_rate();
        let in_frames = if clip.sample_rate == 0 {
            0
        } else {
            clip.frames()
        };
        let frames_for = |d: Duration| (d.as_secs_f64() * f64::from(out_rate)).ceil() as u64;
        Voice {
            samples: Arc::clone(&clip.samples),
            in_channels: usize::from(clip.channels.max(1)),
            in_frames,
            out_channels: usize::from(config.channels()),
            step: f64::from(clip.sample_rate) / f64::from(out_rate),
            volume,
            rendered: 0,
            fade_frames: frames_for(FADE).max(1) as u32,
            fading: None,
            tail_left: frames_for(TAIL),
            control: Arc::clone(control),
            progress,
        }
    }

    pub(super) fn render<T: Sample + FromSample<f32>>(&mut self, out: &mut [T]) {
        if self.fading.is_none() && self.control.quiet.load(Ordering::Acquire) {
            self.fading = Some(self.fade_frames);
        }
        for frame in out.chunks_mut(self.out_channels) {
            let gain = match self.fading {
                None => 1.0,
                Some(0) => 0.0,
                Some(left) => {
                    self.fading = Some(left - 1);
                    left as f32 / self.fade_frames as f32
                }
            };
            let pos = self.rendered as f64 * self.step;
            let index = pos as usize;
            if gain == 0.0 || index >= self.in_frames {
                frame.fill(T::EQUILIBRIUM);
                self.progress.advance(Stage::Tail);
                self.tail_left = self.tail_left.saturating_sub(1);
                if self.tail_left == 0 {
                    self.progress.advance(Stage::Done);
                }
                continue;
            }
            self.rendered += 1;
            let frac = (pos - index as f64) as f32;
            let next = (index + 1).min(self.in_frames - 1);
            let volume = self.volume * gain;
            for (channel, sample) in frame.iter_mut().enumerate() {
                let a = self.source(index, channel);
                let b = self.source(next, channel);
                let value = ((a + (b - a) * frac) * volume).clamp(-1.0, 1.0);
                *sample = T::from_sample(value);
            }
        }
    }

    /// The source sample for device channel `channel`: mono feeds every
    /// channel, a mono device gets the average of all source channels,
    /// otherwise channels map one to one and extra device channels are silent.
    fn source(&self, frame: usize, channel: usize) -> f32 {
        let base = frame * self.in_channels;
        if self.in_channels == 1 {
            self.samples[base]
        } else if self.out_channels == 1 {
            self.samples[base..base + self.in_channels]
                .iter()
                .sum::<f32>()
                / self.in_channels as f32
        } else if channel < self.in_channels {
            self.samples[base + channel]
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::PlaybackEnd;
    use cpal::SampleFormat;

    fn voice(clip: Clip, out_rate: u32, out_channels: u16, volume: f32) -> (Voice, Arc<Control>) {
        let control = Arc::new(Control {
            id: 1,
            quiet: Default::default(),
            end: tokio::sync::watch::channel(None).0,
        });
        let config = cpal::SupportedStreamConfig::new(
            out_channels,
            out_rate,
            cpal::SupportedBufferSize::Unknown,
            SampleFormat::F32,
        );
        (
            Voice::new(&clip, volume, &control, &config, Arc::default()),
            control,
        )
    }

    fn clip(rate: u32, channels: u16, samples: &[f32]) -> Clip {
        Clip {
            sample_rate: rate,
            channels,
            samples: samples.into(),
        }
    }

    #[test]
    fn mono_is_copied_to_every_device_channel_with_volume_applied() {
        let (mut v, _) = voice(clip(48_000, 1, &[0.5, -0.5]), 48_000, 2, 0.5);
        let mut out = [9.0f32; 6];
        v.render(&mut out);
        assert_eq!(out, [0.25, 0.25, -0.25, -0.25, 0.0, 0.0]);
    }

    #[test]
    fn stereo_is_averaged_for_a_mono_device() {
        let (mut v, _) = voice(clip(48_000, 2, &[1.0, 0.0, 0.2, 0.4]), 48_000, 1, 1.0);
        let mut out = [9.0f32; 3];
        v.render(&mut out);
        assert!(
            (out[0] - 0.5).abs() < 1e-6 && (out[1] - 0.3).abs() < 1e-6 && out[2] == 0.0,
            "{out:?}"
        );
    }

    #[test]
    fn extra_device_channels_are_silent_and_extra_source_channels_dropped() {
        let (mut v, _) = voice(clip(48_000, 2, &[0.1, 0.2]), 48_000, 4, 1.0);
        let mut out = [9.0f32; 4];
        v.render(&mut out);
        assert_eq!(out, [0.1, 0.2, 0.0, 0.0]);
        let (mut v, _) = voice(clip(48_000, 3, &[0.1, 0.2, 0.3]), 48_000, 2, 1.0);
        let mut out = [9.0f32; 2];
        v.render(&mut out);
        assert_eq!(out, [0.1, 0.2]);
    }

    #[test]
    fn rates_are_converted_by_linear_interpolation() {
        let (mut v, _) = voice(clip(24_000, 1, &[0.0, 1.0, 0.0]), 48_000, 1, 1.0);
        let mut out = [9.0f32; 6];
        v.render(&mut out);
        assert_eq!(out, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]);
    }

    #[test]
    fn integer_devices_get_converted_samples() {
        let (mut v, _) = voice(clip(48_000, 1, &[1.0, -1.0, 0.0]), 48_000, 1, 1.0);
        let mut out = [0i16; 3];
        v.render(&mut out);
        assert_eq!(out, [i16::MAX, i16::MIN, 0]);
        let (mut v, _) = voice(clip(48_000, 1, &[0.0]), 48_000, 1, 1.0);
        let mut out = [0u16; 2];
        v.render(&mut out);
        assert_eq!(out, [32_768, 32_768]);
    }

    #[test]
    fn the_end_is_signalled_only_after_the_tail_of_silence() {
        let (mut v, _) = voice(clip(1_000, 1, &[0.5; 10]), 1_000, 1, 1.0);
        let mut out = [0.0f32; 10];
        v.render(&mut out);
        assert_eq!(v.progress.stage(), Stage::Playing);
        let mut tail = vec![1.0f32; 200];
        v.render(&mut tail);
        assert!(tail.iter().all(|s| *s == 0.0));
        assert_eq!(v.progress.stage(), Stage::Done);
    }

    #[test]
    fn a_stop_fades_out_instead_of_cutting() {
        let (mut v, control) = voice(clip(1_000, 1, &[1.0; 1_000]), 1_000, 1, 1.0);
        let mut out = [0.0f32; 10];
        v.render(&mut out);
        control.finish(PlaybackEnd::Stopped);
        let mut out = [9.0f32; 10];
        v.render(&mut out);
        assert!(out[0] > 0.5 && out[0] <= 1.0, "{out:?}");
        assert!(out.windows(2).all(|w| w[1] <= w[0]), "{out:?}");
        assert_eq!(out[9], 0.0);
        assert_eq!(v.progress.stage(), Stage::Tail);
    }

    #[test]
    fn an_empty_or_malformed_clip_just_plays_the_tail() {
        let (mut v, _) = voice(clip(0, 0, &[]), 1_000, 2, 1.0);
        let mut out = vec![9.0f32; 400];
        v.render(&mut out);
        assert!(out.iter().all(|s| *s == 0.0));
        assert_eq!(v.progress.stage(), Stage::Done);
    }
}
