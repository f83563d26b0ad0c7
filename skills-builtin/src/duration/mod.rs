//! Timer durations as people and satellites send them (`90s`, `1h30m`, `PT5M`, `05:00`,
//! "an hour and a half") are parsed here, and said back in words for speech or compactly for logs.
//!
//! Layout:
//! - this file: [`parse_duration`], which picks the grammar, and the range a timer must fit
//! - `error`: [`DurationError`], the messages users read or hear
//! - `clock`: `05:00`, `1:30:00`
//! - `iso`: ISO 8601, `PT5M`
//! - `tokens`, `words`: compact `1h30m` and spoken "an hour and a half", which one tokenizer
//!   and one reducer serve
//! - `amount`: exact amounts and units, and reading a decimal number
//! - `speak`: [`speak_duration`], a duration said back (and, for tests, `format_compact`)

use std::time::Duration;

mod amount;
mod clock;
mod error;
mod iso;
mod speak;
#[cfg(test)]
mod test_util;
mod tokens;
mod words;

pub use error::DurationError;
#[cfg(test)]
pub use speak::format_compact;
pub use speak::speak_duration;

use clock::parse_clock;
use error::negative;
use iso::{looks_iso, parse_iso};
use words::Parser;

/// Longest timer accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a timer duration: compact (`1h30m`, `1.5h`, `500ms`), ISO 8601 (`PT1H30M`, `P1DT2H`),
/// clock (`1:30:00`, `05:00`) or spoken English ("twenty-five minutes", "half an hour",
/// "2 hours and 15 minutes"), case-insensitively, ignoring a leading "for".
///
/// The result is between one second and [`MAX_DURATION`], both included.
///
/// # Errors
///
/// A [`DurationError`] whose message tells the user what was wrong: nothing given, zero, under a
/// second, over [`MAX_DURATION`], negative, a number without a unit, an unknown or repeated unit,
/// months or years, or text that is not a duration at all.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let input = text.trim();
    // Speech-to-text tends to end an utterance with a full stop.
    let cleaned = input.trim_end_matches(['.', '!', '?']).trim_end();
    let body = strip_leading_for(cleaned);
    if body.is_empty() {
        return Err(DurationError::Empty);
    }
    let nanos = if body.contains(':') {
        parse_clock(body, input)?
    } else if looks_iso(body) {
        if body.starts_with('-') {
            return Err(negative(input));
        }
        parse_iso(body, input)?
    } else {
        Parser::new(input, body)?.sum()?
    };
    check_range(nanos, input)
}

fn strip_leading_for(text: &str) -> &str {
    let Some(head) = text.get(..3) else {
        return text;
    };
    let rest = &text[3..];
    if head.eq_ignore_ascii_case("for")
        && (rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        rest.trim_start()
    } else {
        text
    }
}

fn check_range(nanos: u128, input: &str) -> Result<Duration, DurationError> {
    if nanos == 0 {
        Err(DurationError::Zero)
    } else if nanos < Duration::from_secs(1).as_nanos() {
        Err(DurationError::TooShort {
            input: input.to_string(),
        })
    } else if nanos > MAX_DURATION.as_nanos() {
        Err(DurationError::TooLong {
            input: input.to_string(),
        })
    } else {
        let nanos = u64::try_from(nanos).map_err(|_| DurationError::TooLong {
            input: input.to_string(),
        })?;
        Ok(Duration::from_nanos(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_util::{XorShift, assert_parses, error, secs};

    #[test]
    fn case_and_surrounding_whitespace_are_ignored() {
        assert_parses(&[
            ("  90S ", secs(90)),
            ("1H30M", secs(5_400)),
            ("\t5 Minutes\n", secs(300)),
            ("An Hour And A Half", secs(5_400)),
            ("pt5m", secs(300)),
            ("FOR 5 MINUTES", secs(300)),
        ]);
    }

    #[test]
    fn a_leading_for_and_trailing_punctuation_are_ignored() {
        assert_parses(&[
            ("for 5 minutes", secs(300)),
            ("For an hour", secs(3_600)),
            ("for PT5M", secs(300)),
            ("5 minutes.", secs(300)),
            ("ten minutes!", secs(600)),
            ("for five minutes?", secs(300)),
        ]);
        assert_eq!(
            error("5 minutes for"),
            DurationError::Malformed {
                input: "5 minutes for".into(),
                reason: "unexpected \"for\"".into()
            }
        );
        assert_eq!(
            error("fort minutes"),
            DurationError::Malformed {
                input: "fort minutes".into(),
                reason: "unexpected \"fort\"".into()
            }
        );
    }

    #[test]
    fn empty_input_is_refused() {
        for text in ["", "   ", "\n\t", "for", "for  ", "."] {
            assert_eq!(error(text), DurationError::Empty, "{text:?}");
        }
    }

    #[test]
    fn zero_durations_are_refused() {
        for text in [
            "0s",
            "0m",
            "0h0m",
            "zero minutes",
            "PT0M",
            "P0D",
            "0:00",
            "0.0 seconds",
        ] {
            assert_eq!(error(text), DurationError::Zero, "{text:?}");
        }
        assert_eq!(
            error("0s").to_string(),
            "a timer needs a duration above zero"
        );
    }

    #[test]
    fn timers_under_a_second_are_too_short() {
        for text in [
            "500ms",
            "0.5s",
            "999 milliseconds",
            "half a second",
            "PT0.1S",
            "0.0000000001s",
            "0.0000001ms",
        ] {
            assert_eq!(
                error(text),
                DurationError::TooShort {
                    input: text.to_string()
                },
                "{text:?}"
            );
        }
        assert_eq!(
            error("500ms").to_string(),
            "\"500ms\" is too short: a timer needs at least 1 second"
        );
    }

    #[test]
    fn exactly_the_limits_are_accepted() {
        assert_parses(&[
            ("1s", secs(1)),
            ("1000ms", secs(1)),
            ("7 days", MAX_DURATION),
            ("1w", MAX_DURATION),
            ("168:00:00", MAX_DURATION),
        ]);
    }

    #[test]
    fn timers_over_seven_days_are_too_long() {
        for text in [
            "8 days",
            "7d1s",
            "169h",
            "P2W",
            "1 week and 1 second",
            "a thousand hours",
        ] {
            assert_eq!(
                error(text),
                DurationError::TooLong {
                    input: text.to_string()
                },
                "{text:?}"
            );
        }
        assert_eq!(
            error("8 days").to_string(),
            "\"8 days\" is too long: the maximum is 7 days"
        );
    }

    #[test]
    fn huge_numbers_are_too_long_instead_of_overflowing() {
        let texts = [
            "99999999999999999999h".to_string(),
            format!("{}s", "9".repeat(200)),
            format!("{}.{}w", "9".repeat(60), "9".repeat(60)),
            format!("PT{}H", "9".repeat(100)),
            format!("P{}W{}D", "9".repeat(50), "9".repeat(50)),
            format!("{}:00:00", "9".repeat(80)),
            format!("{0}d {0}h {0}m {0}s", u64::MAX),
            format!("{} thousand hours", "9".repeat(40)),
        ];
        for text in &texts {
            assert_eq!(
                error(text),
                DurationError::TooLong {
                    input: text.clone()
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn random_input_never_panics() {
        const VOCABULARY: [&str; 38] = [
            "a",
            "an",
            "and",
            "half",
            "quarter",
            "quarters",
            "of",
            "for",
            "hundred",
            "thousand",
            "minus",
            "one",
            "three",
            "twenty",
            "ninety",
            "five",
            "h",
            "m",
            "s",
            "ms",
            "d",
            "w",
            "hours",
            "minutes",
            "p",
            "t",
            "pt",
            "5",
            "0",
            ".",
            ",",
            ":",
            "-",
            "1.5",
            "99999999999999999999999",
            "months",
            "blorps",
            "é",
        ];
        const SEPARATORS: [&str; 5] = [" ", "", "-", ", ", ":"];
        let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
        for round in 0..10_000 {
            let text = if round % 2 == 0 {
                let bytes: Vec<u8> = (0..rng.below(24)).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                let mut text = String::new();
                for _ in 0..rng.below(8) {
                    text.push_str(VOCABULARY[rng.below(VOCABULARY.len() as u64) as usize]);
                    text.push_str(SEPARATORS[rng.below(SEPARATORS.len() as u64) as usize]);
                }
                text
            };
            match parse_duration(&text) {
                Ok(d) => {
                    assert!(d >= secs(1) && d <= MAX_DURATION, "{text:?} gave {d:?}");
                    assert_eq!(parse_duration(&format_compact(d)), Ok(d), "{text:?}");
                }
                Err(e) => assert!(!e.to_string().is_empty(), "{text:?}"),
            }
        }
    }
}
