//! Clock-style durations: `05:00`, `1:30:00`.

use super::amount::{ONE, Unit};
use super::error::{DurationError, malformed, negative};

/// `H:MM:SS` or `MM:SS`. Minutes may exceed 59 in `MM:SS` ("90:00"), which people do write.
pub(super) fn parse_clock(text: &str, input: &str) -> Result<u128, DurationError> {
    const SHAPE: &str = "a clock time looks like 05:00 or 1:30:00";
    if text.starts_with('-') {
        return Err(negative(input));
    }
    let mut values = Vec::new();
    for field in text.split(':') {
        if field.is_empty() {
            return Err(malformed(
                input,
                format!("a part of the clock time is empty; {SHAPE}"),
            ));
        }
        if !field.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(
                input,
                format!("\"{field}\" is not a whole number; {SHAPE}"),
            ));
        }
        values.push(field.bytes().fold(0u128, |n, b| {
            n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
        }));
    }
    let (hours, minutes, seconds) = match values[..] {
        [minutes, seconds] => (0, minutes, seconds),
        [hours, minutes, seconds] if minutes < 60 => (hours, minutes, seconds),
        [_, _, _] => return Err(malformed(input, "the minutes in H:MM:SS must be below 60")),
        _ => return Err(malformed(input, format!("too many colons; {SHAPE}"))),
    };
    if seconds >= 60 {
        return Err(malformed(
            input,
            "the seconds in a clock time must be below 60",
        ));
    }
    Ok(Unit::Hours
        .nanos(hours.saturating_mul(ONE))
        .saturating_add(Unit::Minutes.nanos(minutes.saturating_mul(ONE)))
        .saturating_add(Unit::Seconds.nanos(seconds * ONE)))
}

#[cfg(test)]
mod tests {
    use crate::duration::DurationError;
    use crate::duration::test_util::{assert_parses, error, malformed_reason, secs};

    #[test]
    fn clock_times_parse() {
        assert_parses(&[
            ("1:30:00", secs(5_400)),
            ("05:00", secs(300)),
            ("0:30", secs(30)),
            ("90:00", secs(5_400)),
            ("00:00:01", secs(1)),
            ("167:59:59", secs(604_799)),
            ("for 10:00", secs(600)),
        ]);
    }

    #[test]
    fn malformed_clock_times_say_what_is_wrong() {
        let cases = [
            ("1:75:00", "below 60"),
            ("5:60", "below 60"),
            ("1::00", "empty"),
            (":30", "empty"),
            ("1:2:3:4", "too many colons"),
            ("5:00 minutes", "not a whole number"),
            ("1.5:00", "not a whole number"),
        ];
        for (text, reason) in cases {
            let got = malformed_reason(text);
            assert!(
                got.contains(reason),
                "{text:?}: {got:?} should mention {reason:?}"
            );
        }
        assert_eq!(error("00:00"), DurationError::Zero);
        assert_eq!(
            error("-5:00"),
            DurationError::Negative {
                input: "-5:00".into()
            }
        );
        assert_eq!(
            error("168:00:01"),
            DurationError::TooLong {
                input: "168:00:01".into()
            }
        );
        assert_eq!(
            error("99999999999999999999999999999999999999999:00"),
            DurationError::TooLong {
                input: "99999999999999999999999999999999999999999:00".into()
            }
        );
    }
}
