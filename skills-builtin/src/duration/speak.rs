//! Durations said back: in words for speech, compactly for logs and data.

#[cfg(test)]
use std::fmt::Write as _;
use std::time::Duration;

/// Says a duration as a person would: "1 hour and 30 minutes", "2 hours, 5 minutes and 10 seconds".
///
/// Rounds to whole seconds, except that anything above zero is at least "1 second".
#[must_use]
pub fn speak_duration(d: Duration) -> String {
    let mut secs = d
        .as_secs()
        .saturating_add(u64::from(d.subsec_nanos() >= 500_000_000));
    // A running timer with half a second left has not finished; "0 seconds" would say it has.
    if secs == 0 && !d.is_zero() {
        secs = 1;
    }
    if secs == 0 {
        return "0 seconds".to_string();
    }
    let parts: Vec<String> = split_secs(secs)
        .into_iter()
        .zip(["day", "hour", "minute", "second"])
        .filter(|&(n, _)| n > 0)
        .map(|(n, word)| format!("{n} {word}{}", if n == 1 { "" } else { "s" }))
        .collect();
    match parts.as_slice() {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Compact form for logs and data: "1h30m", "1m30s", "2d3h", "0s".
///
/// Fractions of a second are written as decimal seconds ("1.5s"), never rounded, so that any
/// timer length (one second to [`MAX_DURATION`](super::MAX_DURATION)) comes back unchanged from
/// [`parse_duration`](super::parse_duration).
#[must_use]
#[cfg(test)]
pub fn format_compact(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let [days, hours, minutes, seconds] = split_secs(d.as_secs());
    let mut out = String::new();
    // Writing to a String cannot fail, so the results of write! carry nothing.
    for (n, unit) in [(days, 'd'), (hours, 'h'), (minutes, 'm')] {
        if n > 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let digits = format!("{nanos:09}");
        let _ = write!(out, "{seconds}.{}s", digits.trim_end_matches('0'));
    } else if seconds > 0 {
        let _ = write!(out, "{seconds}s");
    }
    out
}

fn split_secs(secs: u64) -> [u64; 4] {
    [
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::test_util::{XorShift, millis, secs};
    use crate::duration::{MAX_DURATION, parse_duration};

    #[test]
    fn speech_reads_naturally() {
        let cases = [
            (secs(300), "5 minutes"),
            (secs(5_400), "1 hour and 30 minutes"),
            (secs(90), "1 minute and 30 seconds"),
            (secs(7_510), "2 hours, 5 minutes and 10 seconds"),
            (secs(93_600), "1 day and 2 hours"),
            (secs(30), "30 seconds"),
            (secs(1), "1 second"),
            (secs(60), "1 minute"),
            (secs(3_605), "1 hour and 5 seconds"),
            (secs(90_061), "1 day, 1 hour, 1 minute and 1 second"),
            (secs(2 * 86_400 + 2), "2 days and 2 seconds"),
            (secs(30 * 86_400), "30 days"),
        ];
        for (d, want) in cases {
            assert_eq!(speak_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn speech_rounds_to_whole_seconds() {
        let cases = [
            (Duration::ZERO, "0 seconds"),
            (Duration::from_nanos(1), "1 second"),
            (millis(499), "1 second"),
            (millis(1_499), "1 second"),
            (millis(1_500), "2 seconds"),
            (millis(59_500), "1 minute"),
            (
                Duration::MAX,
                "213503982334601 days, 7 hours and 15 seconds",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(speak_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn compact_format_is_short() {
        let cases = [
            (Duration::ZERO, "0s"),
            (secs(5_400), "1h30m"),
            (secs(90), "1m30s"),
            (secs(300), "5m"),
            (secs(183_600), "2d3h"),
            (secs(3_605), "1h5s"),
            (millis(1_500), "1.5s"),
            (millis(500), "0.5s"),
            (Duration::new(61, 1), "1m1.000000001s"),
            (secs(604_800), "7d"),
        ];
        for (d, want) in cases {
            assert_eq!(format_compact(d), want, "{d:?}");
        }
    }

    fn sample_durations() -> Vec<Duration> {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let fixed = [
            1, 2, 59, 60, 61, 90, 119, 3_599, 3_600, 3_601, 5_400, 7_510, 86_399, 86_400, 93_600,
            604_799, 604_800,
        ];
        let mut all: Vec<Duration> = fixed.into_iter().map(secs).collect();
        all.extend((0..2_000).map(|_| secs(1 + rng.below(MAX_DURATION.as_secs()))));
        // Short ones too: the random draw above rarely lands below an hour.
        all.extend((0..500).map(|_| secs(1 + rng.below(3_600))));
        all
    }

    #[test]
    fn compact_form_round_trips_through_the_parser() {
        let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
        let mut all = sample_durations();
        all.extend((0..1_000).map(|_| {
            Duration::new(
                1 + rng.below(MAX_DURATION.as_secs() - 1),
                rng.below(1_000_000_000) as u32,
            )
        }));
        all.push(Duration::new(1, 1));
        all.push(MAX_DURATION);
        for d in all {
            assert_eq!(
                parse_duration(&format_compact(d)),
                Ok(d),
                "{}",
                format_compact(d)
            );
        }
    }

    #[test]
    fn spoken_form_round_trips_through_the_parser() {
        for d in sample_durations() {
            assert_eq!(
                parse_duration(&speak_duration(d)),
                Ok(d),
                "{}",
                speak_duration(d)
            );
        }
    }
}
