//! The built-in sounds, generated in code so the hub needs no asset files and
//! can render them at whatever rate the speaker runs (no resampling needed).

use std::f64::consts::TAU;
use std::sync::Arc;

use super::Clip;

/// Names accepted by [`builtin`] (and by `media::resolve` without a media dir).
pub const BUILTIN_SOUNDS: &[&str] = &["chime", "alarm"];

/// Length of [`chime`].
pub const CHIME_SECONDS: f64 = 0.8;
/// Length of [`alarm`].
pub const ALARM_SECONDS: f64 = 3.0;

// Rates outside this range are either useless or would make a few seconds of
// sound cost hundreds of megabytes; a bogus device rate must not do that.
const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 192_000;

/// A two-note rising bell (E5 then B5), about 0.8 s, mono.
pub fn chime(sample_rate: u32) -> Clip {
    let rate = sample_rate.clamp(MIN_RATE, MAX_RATE);
    let sr = f64::from(rate);
    let len = (CHIME_SECONDS * sr).round() as usize;
    let mut out = vec![0.0f64; len];

    // Inharmonic partials (those of a struck bar) are what make it sound like
    // a bell rather than an organ; the upper ones die away faster, as in metal.
    const PARTIALS: [(f64, f64, f64); 3] = [(1.0, 1.0, 4.5), (2.76, 0.25, 9.0), (5.40, 0.08, 16.0)];
    let notes = [(659.26, 0.0), (987.77, 0.16)];
    for (freq, start) in notes {
        let first = (start * sr).round() as usize;
        for (i, sample) in out.iter_mut().enumerate().skip(first) {
            let t = (i - first) as f64 / sr;
            let mut v = 0.0;
            for (ratio, amp, decay) in PARTIALS {
                let f = freq * ratio;
                // Partials above Nyquist would alias into harsh low tones at 8 kHz.
                if f < 0.45 * sr {
                    v += amp * (-t * decay).exp() * (TAU * f * t).sin();
                }
            }
            *sample += v * rise(t, 0.004);
        }
    }
    fade_out(&mut out, sr, 0.06);
    finish(out, rate, 0.7)
}

/// A kitchen-timer alarm: three rounds of four short 880 Hz beeps, 3 s, mono.
/// Callers that need it longer (until dismissed) play it again when it ends.
pub fn alarm(sample_rate: u32) -> Clip {
    let rate = sample_rate.clamp(MIN_RATE, MAX_RATE);
    let sr = f64::from(rate);
    let len = (ALARM_SECONDS * sr).round() as usize;
    let mut out = vec![0.0f64; len];

    const BEEP: f64 = 0.10;
    const GAP: f64 = 0.05;
    const ROUND: f64 = 1.0;
    const EDGE: f64 = 0.006;
    for round in 0..3 {
        for beep in 0..4 {
            let start = f64::from(round) * ROUND + f64::from(beep) * (BEEP + GAP);
            let first = (start * sr).round() as usize;
            let count = (BEEP * sr).round() as usize;
            for (j, sample) in out.iter_mut().skip(first).take(count).enumerate() {
                let t = j as f64 / sr;
                // The octave overtone makes the beep cut through on tiny speakers.
                let tone = (TAU * 880.0 * t).sin() + 0.25 * (TAU * 1760.0 * t).sin();
                *sample = tone * rise(t, EDGE) * rise(BEEP - t, EDGE);
            }
        }
    }
    finish(out, rate, 0.6)
}

/// The built-in sound called `name`, or `None` if there is none by that name.
pub fn builtin(name: &str, sample_rate: u32) -> Option<Clip> {
    match name {
        "chime" => Some(chime(sample_rate)),
        "alarm" => Some(alarm(sample_rate)),
        _ => None,
    }
}

/// Raised-cosine ramp from 0 to 1 over `width` seconds: a linear ramp still
/// has a corner that is audible as a soft click, this has none.
fn rise(t: f64, width: f64) -> f64 {
    if t <= 0.0 {
        0.0
    } else if t >= width {
        1.0
    } else {
        0.5 - 0.5 * (std::f64::consts::PI * t / width).cos()
    }
}

/// Brings the tail to exactly zero so the clip never ends on a step.
fn fade_out(samples: &mut [f64], sr: f64, width: f64) {
    let len = samples.len();
    let n = ((width * sr).round() as usize).min(len);
    for (k, sample) in samples[len - n..].iter_mut().enumerate() {
        let remaining = (n - 1 - k) as f64 / sr;
        *sample *= rise(remaining, width);
    }
}

/// Scales to `peak` so every built-in sound has a predictable loudness.
fn finish(samples: Vec<f64>, rate: u32, peak: f64) -> Clip {
    let max = samples.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gain = if max > 0.0 { peak / max } else { 0.0 };
    let samples: Arc<[f32]> = samples.iter().map(|v| (v * gain) as f32).collect();
    Clip {
        sample_rate: rate,
        channels: 1,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATES: [u32; 4] = [8_000, 22_050, 44_100, 48_000];

    fn all_clips() -> Vec<(String, Clip)> {
        let mut clips = Vec::new();
        for rate in RATES {
            for name in BUILTIN_SOUNDS {
                clips.push((
                    format!("{name}@{rate}"),
                    builtin(name, rate).expect("listed sound exists"),
                ));
            }
        }
        clips
    }

    #[test]
    fn every_builtin_is_a_non_empty_mono_clip_at_the_requested_rate() {
        for rate in RATES {
            for name in BUILTIN_SOUNDS {
                let clip = builtin(name, rate).unwrap();
                assert_eq!(clip.sample_rate, rate, "{name}");
                assert_eq!(clip.channels, 1, "{name}");
                assert!(!clip.samples.is_empty(), "{name}");
                assert!(
                    clip.samples.iter().any(|s| s.abs() > 0.3),
                    "{name} is audible"
                );
            }
        }
    }

    #[test]
    fn samples_stay_within_full_scale() {
        for (name, clip) in all_clips() {
            assert!(
                clip.samples
                    .iter()
                    .all(|s| s.is_finite() && (-1.0..=1.0).contains(s)),
                "{name}"
            );
        }
    }

    #[test]
    fn clips_start_and_end_in_silence_so_they_do_not_click() {
        for (name, clip) in all_clips() {
            let ms = clip.sample_rate as usize / 1000;
            let peak = |s: &[f32]| s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert_eq!(clip.samples[0], 0.0, "{name}");
            // The attack ramps up over a few ms; half a millisecond in it is still quiet.
            let head = peak(&clip.samples[..ms / 2]);
            let tail = peak(&clip.samples[clip.samples.len() - ms..]);
            assert!(head < 0.05, "{name} starts at {head}");
            assert!(tail < 0.01, "{name} ends at {tail}");
        }
    }

    #[test]
    fn no_clip_jumps_abruptly_between_neighbouring_samples() {
        for (name, clip) in all_clips()
            .into_iter()
            .filter(|(_, c)| c.sample_rate >= 44_100)
        {
            let worst = clip
                .samples
                .windows(2)
                .fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()));
            assert!(worst < 0.25, "{name} jumps by {worst}");
        }
    }

    #[test]
    fn durations_are_as_documented() {
        let close = |d: Duration, secs: f64| (d.as_secs_f64() - secs).abs() < 0.001;
        for rate in RATES {
            assert!(close(chime(rate).duration(), CHIME_SECONDS));
            assert!(close(alarm(rate).duration(), ALARM_SECONDS));
        }
    }

    #[test]
    fn the_alarm_has_twelve_separate_beeps() {
        let clip = alarm(8_000);
        let loud: Vec<bool> = clip
            .samples
            .chunks(80)
            .map(|c| c.iter().any(|s| s.abs() > 0.1))
            .collect();
        let onsets = loud.windows(2).filter(|w| !w[0] && w[1]).count() + usize::from(loud[0]);
        assert_eq!(onsets, 12);
    }

    #[test]
    fn absurd_rates_are_clamped_instead_of_allocating_or_dividing_by_zero() {
        assert_eq!(chime(0).sample_rate, MIN_RATE);
        assert_eq!(alarm(u32::MAX).sample_rate, MAX_RATE);
    }

    #[test]
    fn unknown_names_are_not_builtins() {
        assert!(builtin("doorbell", 48_000).is_none());
        assert!(builtin("Chime", 48_000).is_none());
    }
}
