//! What the speaker's tests share.

use crate::audio::Clip;

pub(super) fn silence(seconds: u32) -> Clip {
    Clip {
        sample_rate: 1_000,
        channels: 1,
        samples: vec![0.0; 1_000 * seconds as usize].into(),
    }
}
