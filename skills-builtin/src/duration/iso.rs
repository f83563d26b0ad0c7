//! ISO 8601 durations: `PT5M`, `PT1H30M`, `P1DT2H`.

use super::amount::{Unit, read_number};
use super::error::{DurationError, malformed, negative};

/// A leading P followed by a digit or T: no English duration starts like that.
pub(super) fn looks_iso(text: &str) -> bool {
    let bytes = text.as_bytes();
    let bytes = bytes.strip_prefix(b"-").unwrap_or(bytes);
    matches!(bytes, [b'p' | b'P', next, ..] if next.is_ascii_digit() || matches!(next, b't' | b'T'))
}

/// ISO 8601 `PnWnDTnHnMnS`, with decimals in any part (ISO allows them only in the last, but
/// refusing `PT1.5H` would help nobody). Years and months are refused: their length varies.
pub(super) fn parse_iso(text: &str, input: &str) -> Result<u128, DurationError> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let char_at = |i: usize| {
        lower[i..]
            .chars()
            .next()
            .map_or(String::new(), |c| c.escape_debug().to_string())
    };
    let mut i = 1; // past the P
    let mut in_time = false;
    let mut any_part = false;
    let mut any_time_part = false;
    let mut last_rank = 0;
    let mut total: u128 = 0;
    while i < bytes.len() {
        match bytes[i] {
            b't' if in_time => return Err(malformed(input, "\"T\" appears twice")),
            b't' => {
                in_time = true;
                i += 1;
                continue;
            }
            b'-' => return Err(negative(input)),
            b'0'..=b'9' | b'.' | b',' => {}
            _ => {
                return Err(malformed(
                    input,
                    format!("unexpected \"{}\" where a number belongs", char_at(i)),
                ));
            }
        }
        let (amount, end) = read_number(bytes, i, b".,");
        if end == i {
            return Err(malformed(
                input,
                format!("unexpected \"{}\" where a number belongs", char_at(i)),
            ));
        }
        i = end;
        let Some(&designator) = bytes.get(i) else {
            return Err(malformed(
                input,
                "the last number has no unit letter, like the M in PT5M",
            ));
        };
        let (rank, unit) = match (in_time, designator) {
            (false, b'y') => {
                return Err(DurationError::VagueUnit {
                    input: input.to_string(),
                    unit: "years",
                });
            }
            (false, b'm') => {
                return Err(DurationError::VagueUnit {
                    input: input.to_string(),
                    unit: "months",
                });
            }
            (false, b'w') => (1, Unit::Weeks),
            (false, b'd') => (2, Unit::Days),
            (true, b'h') => (3, Unit::Hours),
            (true, b'm') => (4, Unit::Minutes),
            (true, b's') => (5, Unit::Seconds),
            (false, b'h' | b's') => {
                return Err(malformed(
                    input,
                    "hours, minutes and seconds go after a \"T\", like PT5M",
                ));
            }
            (true, b'y' | b'w' | b'd') => {
                return Err(malformed(
                    input,
                    "weeks and days go before the \"T\", like P1DT2H",
                ));
            }
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_string(),
                    unit: char_at(i),
                });
            }
        };
        if rank == last_rank {
            return Err(DurationError::RepeatedUnit {
                input: input.to_string(),
                unit: unit.plural(),
            });
        }
        if rank < last_rank {
            return Err(malformed(
                input,
                "the parts are out of order; ISO 8601 goes P1W2DT3H4M5S",
            ));
        }
        last_rank = rank;
        any_part = true;
        any_time_part |= in_time;
        total = total.saturating_add(unit.nanos(amount));
        i += 1;
    }
    if in_time && !any_time_part {
        return Err(malformed(input, "nothing follows the \"T\""));
    }
    if !any_part {
        return Err(malformed(input, "the ISO 8601 duration has no parts"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use crate::duration::DurationError;
    use crate::duration::test_util::{assert_parses, error, malformed_reason, millis, secs};

    #[test]
    fn iso_8601_durations_parse() {
        assert_parses(&[
            ("PT5M", secs(300)),
            ("PT1H30M", secs(5_400)),
            ("PT90S", secs(90)),
            ("P1DT2H", secs(93_600)),
            ("PT1.5H", secs(5_400)),
            ("PT1,5H", secs(5_400)),
            ("P1D", secs(86_400)),
            ("P1W", secs(604_800)),
            ("PT1H2M3S", secs(3_723)),
            ("PT1.5S", millis(1_500)),
            ("P2DT0H0M1S", secs(172_801)),
        ]);
    }

    #[test]
    fn iso_months_and_years_are_refused_as_having_no_fixed_length() {
        for (text, unit) in [("P1M", "months"), ("P1Y", "years"), ("P1Y2DT3H", "years")] {
            assert_eq!(
                error(text),
                DurationError::VagueUnit {
                    input: text.to_string(),
                    unit
                }
            );
        }
        assert!(
            error("P1M")
                .to_string()
                .contains("months have no fixed length")
        );
    }

    #[test]
    fn malformed_iso_durations_say_what_is_wrong() {
        let cases = [
            ("PT", "nothing follows"),
            ("P1DT", "nothing follows"),
            ("PT5", "no unit letter"),
            ("P5H", "go after a \"T\""),
            ("PT1D", "go before the \"T\""),
            ("PT5M1H", "out of order"),
            ("PT1HT5M", "appears twice"),
            ("PT5M#", "unexpected"),
            ("PT 5M", "unexpected"),
        ];
        for (text, reason) in cases {
            let got = malformed_reason(text);
            assert!(
                got.contains(reason),
                "{text:?}: {got:?} should mention {reason:?}"
            );
        }
        assert_eq!(
            error("PT5X"),
            DurationError::UnknownUnit {
                input: "PT5X".into(),
                unit: "x".into()
            }
        );
        assert_eq!(
            error("PT5M3M"),
            DurationError::RepeatedUnit {
                input: "PT5M3M".into(),
                unit: "minutes"
            }
        );
        assert_eq!(
            error("-PT5M"),
            DurationError::Negative {
                input: "-PT5M".into()
            }
        );
        assert_eq!(
            error("PT-5M"),
            DurationError::Negative {
                input: "PT-5M".into()
            }
        );
        assert_eq!(error("PT0S"), DurationError::Zero);
        assert_eq!(
            error("P8D"),
            DurationError::TooLong {
                input: "P8D".into()
            }
        );
    }
}
