//! Sounds for the hub's own speaker.
//!
//! The built-in sounds (chime, alarm) are synthesized in code so the hub ships
//! no assets; other sounds are WAV files from the configured media directory,
//! resolved so that a request can never read outside it and decoded so that a
//! hostile file cannot panic the hub or make it allocate what the header claims.
//! Playback is one clip at a time, cancellable, through cpal (ALSA) or a silent
//! null sink that keeps the clip's real timing when there is no speaker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub mod media;
pub mod sink;
pub mod synth;
pub mod wav;

pub use sink::{AudioBackend, AudioOut, PlaybackEnd, PlaybackStopper};

/// A decoded or synthesized sound, ready to play.
#[derive(Debug, Clone)]
pub struct Clip {
    pub sample_rate: u32,
    pub channels: u16,
    /// Interleaved frames, each sample in -1.0..=1.0.
    pub samples: Arc<[f32]>,
}

impl Clip {
    /// Number of whole frames (one sample per channel).
    pub fn frames(&self) -> usize {
        match self.channels {
            0 => 0,
            ch => self.samples.len() / usize::from(ch),
        }
    }

    /// How long the clip plays at its own sample rate (zero for a malformed clip
    /// with no channels or a 0 Hz rate, so callers never divide by zero).
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        let nanos = self.frames() as u128 * 1_000_000_000 / u128::from(self.sample_rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Everything that can go wrong finding, decoding or playing a sound. The
/// messages are shown to users, so each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error(
        "audio.media_dir is not set, so only the built-in sounds chime and alarm can play; \
         set audio.media_dir to a folder of .wav files to play others"
    )]
    MediaDirNotSet,

    #[error(
        "the sound name {name:?} is not allowed: {reason}; use \"chime\", \"alarm\", \
         or the name of a .wav file inside audio.media_dir (for example \"doorbell.wav\" or \"birds/robin.wav\")"
    )]
    BadName { name: String, reason: &'static str },

    #[error(
        "there is no sound file {name:?} in audio.media_dir ({}); check the spelling or copy the .wav file there",
        .media_dir.display()
    )]
    NotFound { name: String, media_dir: PathBuf },

    #[error(
        "the sound {name:?} points outside audio.media_dir (through a symbolic link); \
         copy the file into the media folder instead of linking to it"
    )]
    OutsideMediaDir { name: String },

    #[error(
        "audio.media_dir ({}) cannot be used: {reason}; point it at an existing folder the hub can read",
        .path.display()
    )]
    MediaDir { path: PathBuf, reason: String },

    // Not named `source`: the message already includes it, and a `source` field
    // would make error-chain printers repeat it.
    #[error("the sound file {} cannot be read: {error}; check that the hub may read it", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error(
        "the sound file {} is {size} bytes, more than the {max}-byte limit; \
         use a shorter clip or a lower sample rate",
        .path.display()
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },

    #[error(
        "{} is not a WAV file Hark can play: {reason}; convert it to 16-bit PCM WAV \
         (for example `ffmpeg -i input -c:a pcm_s16le output.wav`)",
        describe_origin(.path.as_deref())
    )]
    InvalidWav {
        path: Option<PathBuf>,
        reason: String,
    },

    #[error(
        "this build of Hark has no speaker support (it was built without the `audio-cpal` feature); \
         set audio.backend to \"auto\" or \"null\", or rebuild with the feature"
    )]
    NoAudioSupport,

    #[error(
        "cannot use the speaker: {what} failed: {reason}; check that a sound card or USB speaker is connected \
         and that the hub's user is in the `audio` group, or set audio.backend to \"auto\" or \"null\""
    )]
    Device { what: &'static str, reason: String },
}

fn describe_origin(path: Option<&std::path::Path>) -> String {
    match path {
        Some(path) => format!("the sound file {}", path.display()),
        None => "the sound data".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_counts_frames_not_samples() {
        let clip = Clip {
            sample_rate: 8000,
            channels: 2,
            samples: vec![0.0; 16000].into(),
        };
        assert_eq!(clip.duration(), Duration::from_secs(1));
    }

    #[test]
    fn malformed_clips_have_zero_duration_instead_of_panicking() {
        let no_channels = Clip {
            sample_rate: 8000,
            channels: 0,
            samples: vec![0.0; 8].into(),
        };
        let no_rate = Clip {
            sample_rate: 0,
            channels: 1,
            samples: vec![0.0; 8].into(),
        };
        assert_eq!(no_channels.duration(), Duration::ZERO);
        assert_eq!(no_rate.duration(), Duration::ZERO);
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = AudioError::MediaDirNotSet.to_string();
        assert!(msg.contains(
            "audio.media_dir is not set, so only the built-in sounds chime and alarm can play"
        ));
        let msg = AudioError::InvalidWav {
            path: None,
            reason: "no data chunk".into(),
        }
        .to_string();
        assert!(
            msg.contains("no data chunk") && msg.contains("convert"),
            "{msg}"
        );
    }
}
