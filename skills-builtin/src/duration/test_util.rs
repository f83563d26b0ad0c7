//! What the grammars' tests share: short names for durations and for asking the parser.

use std::time::Duration;

use super::{DurationError, parse_duration};

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn assert_parses(cases: &[(&str, Duration)]) {
    for &(text, want) in cases {
        assert_eq!(parse_duration(text), Ok(want), "parsing {text:?}");
    }
}

pub(super) fn error(text: &str) -> DurationError {
    match parse_duration(text) {
        Ok(d) => panic!("{text:?} parsed as {d:?}, expected an error"),
        Err(e) => e,
    }
}

pub(super) fn malformed_reason(text: &str) -> String {
    match error(text) {
        DurationError::Malformed { input, reason } => {
            assert_eq!(input, text.trim());
            reason
        }
        other => panic!("{text:?} gave {other:?}, expected Malformed"),
    }
}

/// Tiny xorshift so the random tests are reproducible without a dependency.
pub(super) struct XorShift(pub(super) u64);

impl XorShift {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
