//! The words and numbers of compact (`1h30m`) and spoken ("an hour and a half") durations.

use super::amount::{Amount, Unit, read_number};
use super::error::{DurationError, malformed, negative};

/// What a word or number means to the reducer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Number(Amount),
    /// zero..nineteen
    Small(u8),
    /// twenty, thirty, ... ninety
    Tens(u8),
    Hundred,
    Thousand,
    /// "a" / "an": one of the unit, or the start of "a half", "a quarter", "a hundred"
    Article,
    Half,
    Quarter,
    And,
    Of,
    Comma,
    Minus,
    Unit(Unit),
    /// months or years, named for the error
    Vague(&'static str),
    /// anything else; its text is read from the span when an error needs it
    Word,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
}

pub(super) const SMALL_NUMBERS: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
pub(super) const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

pub(super) fn classify(word: &str) -> Kind {
    match word {
        "a" | "an" => Kind::Article,
        "and" => Kind::And,
        "of" => Kind::Of,
        "half" => Kind::Half,
        "quarter" | "quarters" => Kind::Quarter,
        "hundred" => Kind::Hundred,
        "thousand" => Kind::Thousand,
        "minus" | "negative" => Kind::Minus,
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => Kind::Unit(Unit::Millis),
        "s" | "sec" | "secs" | "second" | "seconds" => Kind::Unit(Unit::Seconds),
        "m" | "min" | "mins" | "minute" | "minutes" => Kind::Unit(Unit::Minutes),
        "h" | "hr" | "hrs" | "hour" | "hours" => Kind::Unit(Unit::Hours),
        "d" | "day" | "days" => Kind::Unit(Unit::Days),
        "w" | "wk" | "wks" | "week" | "weeks" => Kind::Unit(Unit::Weeks),
        "mo" | "mos" | "month" | "months" => Kind::Vague("months"),
        "y" | "yr" | "yrs" | "year" | "years" => Kind::Vague("years"),
        _ => {
            let position = |list: &[&str]| {
                list.iter()
                    .position(|w| *w == word)
                    .and_then(|i| u8::try_from(i).ok())
            };
            if let Some(n) = position(&SMALL_NUMBERS) {
                Kind::Small(n)
            } else if let Some(i) = position(&TENS) {
                Kind::Tens(20 + 10 * i)
            } else {
                Kind::Word
            }
        }
    }
}

/// Splits text into tokens. Letters and digits split from each other, so `1h30m` and
/// "1 hour 30 minutes" become the same tokens and one reducer serves both.
pub(super) fn tokenize(text: &str, input: &str) -> Result<Vec<Token>, DurationError> {
    // ASCII-only lowercasing keeps byte offsets equal, so spans can quote the user's own text.
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = lower[i..].chars().next() {
        let start = i;
        let kind = if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        } else if c == '-' {
            i += 1;
            // Between words a hyphen joins ("twenty-five"); in front of a number it is a sign,
            // and so is anything leading the text ("- 5 minutes").
            let after_word = lower[..start]
                .chars()
                .next_back()
                .is_some_and(char::is_alphanumeric);
            let before_word = bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.');
            let leading = start == 0 && !lower[i..].trim().is_empty();
            if leading || (before_word && !after_word) {
                return Err(negative(input));
            }
            continue;
        } else if c == ',' {
            i += 1;
            Kind::Comma
        } else if c.is_ascii_digit()
            || (c == '.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let (amount, end) = read_number(bytes, i, b".");
            i = end;
            Kind::Number(amount)
        } else if c.is_alphabetic() {
            i += lower[i..]
                .find(|c: char| !c.is_alphabetic())
                .unwrap_or(lower.len() - i);
            classify(&lower[start..i])
        } else {
            return Err(malformed(
                input,
                format!("unexpected character \"{}\"", c.escape_debug()),
            ));
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use crate::duration::DurationError;
    use crate::duration::parse_duration;
    use crate::duration::test_util::{assert_parses, error, millis, secs};

    #[test]
    fn compact_forms_parse() {
        assert_parses(&[
            ("90s", secs(90)),
            ("5m", secs(300)),
            ("1h30m", secs(5_400)),
            ("1h 30m", secs(5_400)),
            ("2h5m10s", secs(7_510)),
            ("1d2h", secs(93_600)),
            ("1.5h", secs(5_400)),
            ("0.5m", secs(30)),
            (".5m", secs(30)),
            ("1.25s", millis(1_250)),
            ("1500ms", millis(1_500)),
            ("1s500ms", millis(1_500)),
            ("30m1h", secs(5_400)),
            ("1w", secs(604_800)),
            ("5min", secs(300)),
            ("1hr30min", secs(5_400)),
            ("2 hrs", secs(7_200)),
            ("5 m", secs(300)),
            ("007s", secs(7)),
        ]);
    }

    #[test]
    fn every_unit_spelling_parses() {
        let spellings: [(&[&str], u64); 5] = [
            (&["s", "sec", "secs", "second", "seconds"], 1),
            (&["m", "min", "mins", "minute", "minutes"], 60),
            (&["h", "hr", "hrs", "hour", "hours"], 3_600),
            (&["d", "day", "days"], 86_400),
            (&["w", "wk", "wks", "week", "weeks"], 604_800),
        ];
        for (words, unit_secs) in spellings {
            for word in words {
                assert_eq!(
                    parse_duration(&format!("1{word}")),
                    Ok(secs(unit_secs)),
                    "1{word}"
                );
                assert_eq!(
                    parse_duration(&format!("1 {word}")),
                    Ok(secs(unit_secs)),
                    "1 {word}"
                );
            }
        }
        for word in ["ms", "msec", "msecs", "millisecond", "milliseconds"] {
            assert_eq!(
                parse_duration(&format!("2000 {word}")),
                Ok(secs(2)),
                "2000 {word}"
            );
        }
    }

    #[test]
    fn negative_durations_are_refused() {
        for text in [
            "-5m",
            "-5 minutes",
            "- 5 minutes",
            "5m -3s",
            "minus five minutes",
            "negative 1 hour",
            "-.5h",
            "-five minutes",
        ] {
            assert_eq!(
                error(text),
                DurationError::Negative {
                    input: text.to_string()
                },
                "{text:?}"
            );
        }
        assert_eq!(
            error("-5m").to_string(),
            "\"-5m\" is negative: a timer needs a duration above zero"
        );
    }
}
