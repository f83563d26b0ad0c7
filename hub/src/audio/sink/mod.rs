//! Playing one clip at a time on the hub's speaker, or pretending to.
//!
//! Everything that waits on a sound (timers, "ding then listen") must behave
//! the same whether or not a speaker works, so every way a playback can go
//! wrong still ends it after the clip's real duration rather than at once or
//! never.
//!
//! Layout:
//! - `player`: [`AudioOut`], the speaker: which output plays, one clip at a time
//! - `playback`: [`Playback`] and [`PlaybackStopper`], one clip's handles, and [`PlaybackEnd`]
//! - `null`: the null sink, which keeps a clip's time without sound; also the fallback
//! - `device`: the cpal (ALSA) output thread (feature `audio-cpal`)
//! - `render`: the audio callback: rate and channel conversion, fade, tail (feature `audio-cpal`)

#[cfg(feature = "audio-cpal")]
mod device;
mod null;
mod playback;
mod player;
#[cfg(feature = "audio-cpal")]
mod render;
#[cfg(test)]
mod test_util;

pub use playback::{PlaybackEnd, PlaybackStopper};
pub use player::{AudioBackend, AudioOut};
