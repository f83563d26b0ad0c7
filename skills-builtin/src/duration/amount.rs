//! What the grammars count in: exact amounts of a [`Unit`], and reading a decimal number.

/// A count of billionths of some unit. Exact for every decimal anyone types (nine places) and for
/// halves and quarters, where floats would drift; u128 with saturation means absurdly long input
/// ends as "too long" instead of overflowing.
pub(super) type Amount = u128;

pub(super) const ONE: Amount = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    /// Nanoseconds in `amount` billionths of this unit (a billionth of a second is a nanosecond).
    pub(super) fn nanos(self, amount: Amount) -> u128 {
        match self {
            // Rounds up so a tiny but non-zero amount is reported as too short, not as zero.
            Unit::Millis => amount.div_ceil(1_000),
            Unit::Seconds => amount,
            Unit::Minutes => amount.saturating_mul(60),
            Unit::Hours => amount.saturating_mul(3_600),
            Unit::Days => amount.saturating_mul(86_400),
            Unit::Weeks => amount.saturating_mul(604_800),
        }
    }

    pub(super) fn plural(self) -> &'static str {
        match self {
            Unit::Millis => "milliseconds",
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
        }
    }

    pub(super) fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Reads `digits[.digits]` from `bytes[i..]` into billionths; returns the amount and where it ended.
pub(super) fn read_number(bytes: &[u8], mut i: usize, decimal_points: &[u8]) -> (Amount, usize) {
    let digit = |i: usize| {
        bytes
            .get(i)
            .filter(|b| b.is_ascii_digit())
            .map(|b| u128::from(b - b'0'))
    };
    let mut whole: u128 = 0;
    loop {
        while let Some(d) = digit(i) {
            whole = whole.saturating_mul(10).saturating_add(d);
            i += 1;
        }
        // Speech-to-text writes "1,000 seconds": where a comma is not a decimal point, one
        // followed by exactly three digits groups thousands rather than separating parts.
        let grouping = !decimal_points.contains(&b',')
            && i > 0
            && digit(i - 1).is_some()
            && bytes.get(i) == Some(&b',')
            && (1..=3).all(|k| digit(i + k).is_some())
            && digit(i + 4).is_none();
        if !grouping {
            break;
        }
        i += 1;
    }
    let mut fraction: u128 = 0;
    if bytes.get(i).is_some_and(|b| decimal_points.contains(b)) && digit(i + 1).is_some() {
        i += 1;
        let mut place = ONE;
        let mut beyond_nanos = false;
        while let Some(d) = digit(i) {
            place /= 10;
            if place > 0 {
                fraction += d * place;
            } else if d > 0 {
                beyond_nanos = true;
            }
            i += 1;
        }
        // Rounding the tail up keeps "0.0000000001s" non-zero, so it is reported as too short.
        fraction += u128::from(beyond_nanos);
    }
    (whole.saturating_mul(ONE).saturating_add(fraction), i)
}
