//! Timer durations as people and satellites send them (`90s`, `1h30m`, `PT5M`, `05:00`,
//! "an hour and a half") are parsed here, and said back in words for speech or compactly for logs.

use std::fmt::Write as _;
use std::time::Duration;

/// Longest timer accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Ends the messages where the user is best helped by seeing forms that work.
const EXAMPLES: &str = "try 90s, 5m, 1h30m, PT5M or \"5 minutes\"";

/// Why a duration was refused. The `Display` text is meant to be read or spoken to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing (or only a leading "for") was given.
    #[error("no duration given; {EXAMPLES}")]
    Empty,
    /// Every part was zero.
    #[error("a timer needs a duration above zero")]
    Zero,
    /// Above zero but below one second.
    #[error("\"{input}\" is too short: a timer needs at least 1 second")]
    TooShort { input: String },
    /// Longer than [`MAX_DURATION`].
    #[error("\"{input}\" is too long: the maximum is 7 days")]
    TooLong { input: String },
    /// A minus sign or "minus"/"negative".
    #[error("\"{input}\" is negative: a timer needs a duration above zero")]
    Negative { input: String },
    /// A number with no unit after it; bare numbers are refused because satellites send them
    /// meaning seconds or minutes depending on the sentence they came from.
    #[error(
        "\"{number}\" has no unit; say \"{number} {}\" or \"{number} {}\"",
        unit_word(.number, "second"),
        unit_word(.number, "minute")
    )]
    MissingUnit { number: String },
    /// A word where a unit belongs that is not one.
    #[error("could not understand \"{input}\" as a duration: unknown unit \"{unit}\"; {EXAMPLES}")]
    UnknownUnit { input: String, unit: String },
    /// Months or years, whose length depends on the calendar.
    #[error(
        "could not understand \"{input}\" as a duration: {unit} have no fixed length, \
         so a timer cannot use them; the longest timer is 7 days"
    )]
    VagueUnit { input: String, unit: &'static str },
    /// The same unit twice, as in "5m 3m": more likely a mishearing than a sum.
    #[error("could not understand \"{input}\" as a duration: {unit} given twice; {EXAMPLES}")]
    RepeatedUnit { input: String, unit: &'static str },
    /// Anything else that does not read as a duration; `reason` says what was wrong.
    #[error("could not understand \"{input}\" as a duration: {reason}; {EXAMPLES}")]
    Malformed { input: String, reason: String },
}

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
/// timer length (one second to [`MAX_DURATION`]) comes back unchanged from [`parse_duration`].
#[must_use]
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

/// "second" or "seconds", whichever reads right after `number`.
fn unit_word(number: &str, singular: &str) -> String {
    let one = ["1", "one", "a", "an"]
        .iter()
        .any(|w| number.eq_ignore_ascii_case(w));
    if one {
        singular.to_string()
    } else {
        format!("{singular}s")
    }
}

fn split_secs(secs: u64) -> [u64; 4] {
    [
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    ]
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

/// A leading P followed by a digit or T: no English duration starts like that.
fn looks_iso(text: &str) -> bool {
    let bytes = text.as_bytes();
    let bytes = bytes.strip_prefix(b"-").unwrap_or(bytes);
    matches!(bytes, [b'p' | b'P', next, ..] if next.is_ascii_digit() || matches!(next, b't' | b'T'))
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

fn check_range(nanos: u128, input: &str) -> Result<Duration, DurationError> {
    if nanos == 0 {
        Err(DurationError::Zero)
    } else if nanos < NANOS_PER_SEC {
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

fn negative(input: &str) -> DurationError {
    DurationError::Negative {
        input: input.to_string(),
    }
}

fn malformed(input: &str, reason: impl Into<String>) -> DurationError {
    DurationError::Malformed {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// A count of billionths of some unit. Exact for every decimal anyone types (nine places) and for
/// halves and quarters, where floats would drift; u128 with saturation means absurdly long input
/// ends as "too long" instead of overflowing.
type Amount = u128;

const ONE: Amount = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
}

impl Unit {
    /// Nanoseconds in `amount` billionths of this unit (a billionth of a second is a nanosecond).
    fn nanos(self, amount: Amount) -> u128 {
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

    fn plural(self) -> &'static str {
        match self {
            Unit::Millis => "milliseconds",
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Reads `digits[.digits]` from `bytes[i..]` into billionths; returns the amount and where it ended.
fn read_number(bytes: &[u8], mut i: usize, decimal_points: &[u8]) -> (Amount, usize) {
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

/// `H:MM:SS` or `MM:SS`. Minutes may exceed 59 in `MM:SS` ("90:00"), which people do write.
fn parse_clock(text: &str, input: &str) -> Result<u128, DurationError> {
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

/// ISO 8601 `PnWnDTnHnMnS`, with decimals in any part (ISO allows them only in the last, but
/// refusing `PT1.5H` would help nobody). Years and months are refused: their length varies.
fn parse_iso(text: &str, input: &str) -> Result<u128, DurationError> {
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

/// What a word or number means to the reducer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

const SMALL_NUMBERS: [&str; 20] = [
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
const TENS: [&str; 8] = [
    "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

fn classify(word: &str) -> Kind {
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
fn tokenize(text: &str, input: &str) -> Result<Vec<Token>, DurationError> {
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

/// Reduces tokens to a sum of `quantity unit` components, separated by nothing, "," or "and".
#[derive(Debug)]
struct Parser<'a> {
    /// The whole trimmed input, quoted back in errors.
    input: &'a str,
    /// The tokenized part; token spans index into it.
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, text: &'a str) -> Result<Self, DurationError> {
        Ok(Parser {
            input,
            text,
            tokens: tokenize(text, input)?,
            pos: 0,
        })
    }

    fn kind_at(&self, i: usize) -> Option<Kind> {
        self.tokens.get(i).map(|t| t.kind)
    }

    fn peek(&self) -> Option<Kind> {
        self.kind_at(self.pos)
    }

    fn eat(&mut self, kind: Kind) -> bool {
        let found = self.peek() == Some(kind);
        self.pos += usize::from(found);
        found
    }

    /// The user's text covered by tokens `from..to`.
    fn text_of(&self, from: usize, to: usize) -> String {
        match (
            self.tokens.get(from),
            to.checked_sub(1).and_then(|last| self.tokens.get(last)),
        ) {
            (Some(first), Some(last)) if from < to => self.text[first.start..last.end].to_string(),
            _ => String::new(),
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> DurationError {
        malformed(self.input, reason)
    }

    fn sum(mut self) -> Result<u128, DurationError> {
        if self.tokens.is_empty() {
            return Err(self.malformed("nothing in it looks like a duration"));
        }
        let mut total: u128 = 0;
        let mut seen = 0u8;
        loop {
            let (amount, unit) = self.component()?;
            if seen & unit.bit() != 0 {
                return Err(DurationError::RepeatedUnit {
                    input: self.input.to_string(),
                    unit: unit.plural(),
                });
            }
            seen |= unit.bit();
            total = total.saturating_add(unit.nanos(amount));
            let separator = self.pos;
            self.eat(Kind::Comma);
            self.eat(Kind::And);
            if self.pos >= self.tokens.len() {
                if self.pos > separator {
                    let last = self.text_of(self.pos - 1, self.pos);
                    return Err(self.malformed(format!("nothing follows \"{last}\"")));
                }
                return Ok(total);
            }
        }
    }

    fn component(&mut self) -> Result<(Amount, Unit), DurationError> {
        let start = self.pos;
        let (mut amount, numeric) = self.quantity()?;
        let quantity_end = self.pos;
        let unit = match self.peek() {
            Some(Kind::Unit(unit)) => {
                self.pos += 1;
                unit
            }
            Some(Kind::Vague(unit)) => {
                return Err(DurationError::VagueUnit {
                    input: self.input.to_string(),
                    unit,
                });
            }
            Some(Kind::Word) => {
                let unit = self.text_of(self.pos, self.pos + 1);
                return Err(DurationError::UnknownUnit {
                    input: self.input.to_string(),
                    unit,
                });
            }
            _ if numeric => {
                return Err(DurationError::MissingUnit {
                    number: self.text_of(start, quantity_end),
                });
            }
            _ => {
                let quantity = self.text_of(start, quantity_end);
                return Err(self.malformed(format!(
                    "\"{quantity}\" needs a unit after it, like \"minute\""
                )));
            }
        };
        // "an hour and a half": a fraction after the unit is of that unit, unless it begins a
        // component of its own ("and a half minute", "and a quarter of an hour").
        if let Some((fraction, len)) = self.fraction_at(self.pos)
            && !matches!(self.kind_at(self.pos + len), Some(Kind::Unit(_) | Kind::Of))
        {
            self.pos += len;
            amount = amount.saturating_add(fraction);
        }
        Ok((amount, unit))
    }

    /// The amount before a unit, and whether it contains a number (which decides between asking
    /// for a unit and calling the input malformed).
    fn quantity(&mut self) -> Result<(Amount, bool), DurationError> {
        let Some(kind) = self.peek() else {
            return Err(self.malformed("it ends where a number belongs"));
        };
        match kind {
            Kind::Number(n) => {
                self.pos += 1;
                let n = match self.peek() {
                    Some(Kind::Hundred) => n.saturating_mul(100),
                    Some(Kind::Thousand) => n.saturating_mul(1_000),
                    Some(Kind::Quarter) => n / 4,
                    _ => return Ok((self.fraction_before_unit(n), true)),
                };
                if self.peek() == Some(Kind::Quarter) {
                    self.pos += 1;
                    self.skip_of_article();
                    return Ok((n, true));
                }
                self.pos += 1;
                Ok((self.fraction_before_unit(n), true))
            }
            Kind::Small(_) | Kind::Tens(_) | Kind::Hundred | Kind::Thousand => {
                Ok((self.spelled_quantity(), true))
            }
            Kind::Article => match self.kind_at(self.pos + 1) {
                Some(Kind::Hundred | Kind::Thousand) => Ok((self.spelled_quantity(), true)),
                Some(Kind::Half) => {
                    self.pos += 2;
                    self.skip_of_article();
                    Ok((ONE / 2, false))
                }
                Some(Kind::Quarter) => {
                    self.pos += 2;
                    self.skip_of_article();
                    Ok((ONE / 4, false))
                }
                _ => {
                    self.pos += 1;
                    Ok((ONE, false))
                }
            },
            Kind::Half => {
                self.pos += 1;
                self.skip_of_article();
                Ok((ONE / 2, false))
            }
            Kind::Quarter => {
                self.pos += 1;
                self.skip_of_article();
                Ok((ONE / 4, false))
            }
            Kind::Minus => Err(negative(self.input)),
            Kind::Unit(_) | Kind::Vague(_) => {
                let unit = self.text_of(self.pos, self.pos + 1);
                Err(self.malformed(format!("\"{unit}\" needs a number before it")))
            }
            Kind::And | Kind::Of | Kind::Comma | Kind::Word => {
                let word = self.text_of(self.pos, self.pos + 1);
                Err(self.malformed(format!("unexpected \"{word}\"")))
            }
        }
    }

    /// A number in words, then "quarters" ("three quarters of an hour") or "and a half".
    fn spelled_quantity(&mut self) -> Amount {
        let n = self.number_words().saturating_mul(ONE);
        if self.eat(Kind::Quarter) {
            self.skip_of_article();
            return n / 4;
        }
        self.fraction_before_unit(n)
    }

    /// "half of an hour", "quarter of a minute": the "of" and article carry no meaning.
    fn skip_of_article(&mut self) {
        self.eat(Kind::Of);
        self.eat(Kind::Article);
    }

    /// "one and a half hours": the fraction belongs to the number only when a unit follows it;
    /// otherwise "and" is left to separate components.
    fn fraction_before_unit(&mut self, whole: Amount) -> Amount {
        match self.fraction_at(self.pos) {
            Some((fraction, len))
                if matches!(self.kind_at(self.pos + len), Some(Kind::Unit(_))) =>
            {
                self.pos += len;
                whole.saturating_add(fraction)
            }
            _ => whole,
        }
    }

    /// "and a half", "and a quarter", "and three quarters" starting at token `i`: its value and length.
    fn fraction_at(&self, i: usize) -> Option<(Amount, usize)> {
        if self.kind_at(i)? != Kind::And {
            return None;
        }
        let fraction = match (self.kind_at(i + 1)?, self.kind_at(i + 2)?) {
            (Kind::Article | Kind::Small(1), Kind::Half) => ONE / 2,
            (Kind::Article | Kind::Small(1), Kind::Quarter) => ONE / 4,
            (Kind::Small(3), Kind::Quarter) => ONE / 4 * 3,
            _ => return None,
        };
        Some((fraction, 3))
    }

    /// A whole number in words up to the thousands: "twenty-five", "a hundred and twenty", "two thousand".
    fn number_words(&mut self) -> u128 {
        let below = self.below_thousand();
        let thousand_len = match (below, self.peek(), self.kind_at(self.pos + 1)) {
            (_, Some(Kind::Thousand), _) => 1,
            (None, Some(Kind::Article), Some(Kind::Thousand)) => 2,
            _ => return below.unwrap_or(0),
        };
        self.pos += thousand_len;
        self.skip_and_inside_number();
        below.unwrap_or(1) * 1_000 + self.below_thousand().unwrap_or(0)
    }

    fn below_thousand(&mut self) -> Option<u128> {
        let hundreds = match (self.peek(), self.kind_at(self.pos + 1)) {
            (Some(Kind::Small(n @ 1..)), Some(Kind::Hundred)) => Some((u128::from(n), 2)),
            (Some(Kind::Article), Some(Kind::Hundred)) => Some((1, 2)),
            (Some(Kind::Hundred), _) => Some((1, 1)),
            _ => None,
        };
        let mut value = None;
        if let Some((n, len)) = hundreds {
            self.pos += len;
            value = Some(n * 100);
            self.skip_and_inside_number();
        }
        let rest = match self.peek() {
            Some(Kind::Tens(tens)) => {
                self.pos += 1;
                let mut n = u128::from(tens);
                if let Some(Kind::Small(ones @ 1..=9)) = self.peek() {
                    self.pos += 1;
                    n += u128::from(ones);
                }
                n
            }
            Some(Kind::Small(n)) => {
                self.pos += 1;
                u128::from(n)
            }
            _ => return value,
        };
        Some(value.unwrap_or(0) + rest)
    }

    /// "a hundred and five": "and" continues a number only when a number word follows it.
    fn skip_and_inside_number(&mut self) {
        if self.peek() == Some(Kind::And)
            && matches!(
                self.kind_at(self.pos + 1),
                Some(Kind::Small(_) | Kind::Tens(_))
            )
        {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn millis(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn assert_parses(cases: &[(&str, Duration)]) {
        for &(text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "parsing {text:?}");
        }
    }

    fn error(text: &str) -> DurationError {
        match parse_duration(text) {
            Ok(d) => panic!("{text:?} parsed as {d:?}, expected an error"),
            Err(e) => e,
        }
    }

    fn malformed_reason(text: &str) -> String {
        match error(text) {
            DurationError::Malformed { input, reason } => {
                assert_eq!(input, text.trim());
                reason
            }
            other => panic!("{text:?} gave {other:?}, expected Malformed"),
        }
    }

    /// Tiny xorshift so the random tests are reproducible without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

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

    #[test]
    fn bare_numbers_ask_for_a_unit() {
        for (text, number) in [
            ("90", "90"),
            ("1.5", "1.5"),
            ("five", "five"),
            ("twenty five", "twenty five"),
            ("1h30", "30"),
        ] {
            assert_eq!(
                error(text),
                DurationError::MissingUnit {
                    number: number.to_string()
                },
                "{text:?}"
            );
        }
        assert_eq!(
            error("90").to_string(),
            "\"90\" has no unit; say \"90 seconds\" or \"90 minutes\""
        );
        assert_eq!(
            error("One").to_string(),
            "\"One\" has no unit; say \"One second\" or \"One minute\""
        );
        assert_eq!(
            error("a hundred").to_string(),
            "\"a hundred\" has no unit; say \"a hundred seconds\" or \"a hundred minutes\""
        );
    }

    #[test]
    fn number_words_parse() {
        for (n, word) in SMALL_NUMBERS.iter().enumerate().skip(1) {
            assert_eq!(
                parse_duration(&format!("{word} seconds")),
                Ok(secs(n as u64)),
                "{word}"
            );
        }
        for (i, tens) in TENS.iter().enumerate() {
            let base = 20 + 10 * i as u64;
            assert_eq!(parse_duration(&format!("{tens} seconds")), Ok(secs(base)));
            for (ones, word) in SMALL_NUMBERS.iter().enumerate().take(10).skip(1) {
                let want = Ok(secs(base + ones as u64));
                assert_eq!(
                    parse_duration(&format!("{tens} {word} seconds")),
                    want,
                    "{tens} {word}"
                );
                assert_eq!(
                    parse_duration(&format!("{tens}-{word} seconds")),
                    want,
                    "{tens}-{word}"
                );
            }
        }
        assert_parses(&[
            ("a hundred seconds", secs(100)),
            ("one hundred seconds", secs(100)),
            ("hundred seconds", secs(100)),
            ("one hundred and twenty seconds", secs(120)),
            ("a hundred and five seconds", secs(105)),
            ("two hundred fifty seconds", secs(250)),
            ("nine hundred and ninety-nine seconds", secs(999)),
            ("a thousand seconds", secs(1_000)),
            ("one thousand two hundred seconds", secs(1_200)),
            ("two thousand and five seconds", secs(2_005)),
            ("2 hundred seconds", secs(200)),
            ("1,000 seconds", secs(1_000)),
            ("100,000 seconds", secs(100_000)),
            ("1,500ms", millis(1_500)),
        ]);
    }

    #[test]
    fn spoken_minutes_and_hours_parse() {
        assert_parses(&[
            ("5 minutes", secs(300)),
            ("five minutes", secs(300)),
            ("twenty five minutes", secs(1_500)),
            ("twenty-five minutes", secs(1_500)),
            ("a minute", secs(60)),
            ("an hour", secs(3_600)),
            ("a day", secs(86_400)),
            ("a week", secs(604_800)),
            ("90 seconds", secs(90)),
            ("2.5 minutes", secs(150)),
            ("one minute", secs(60)),
            ("a second", secs(1)),
        ]);
    }

    #[test]
    fn spoken_half_hours_parse() {
        assert_parses(&[
            ("an hour and a half", secs(5_400)),
            ("one and a half hours", secs(5_400)),
            ("1 and a half hours", secs(5_400)),
            ("half an hour", secs(1_800)),
            ("a half hour", secs(1_800)),
            ("half hour", secs(1_800)),
            ("half a minute", secs(30)),
            ("half of an hour", secs(1_800)),
            ("ten and a half minutes", secs(630)),
            ("a minute and a half", secs(90)),
            ("two hours and a half", secs(9_000)),
            ("two hours and a half minute", secs(7_230)),
            ("one and one half hours", secs(5_400)),
        ]);
    }

    #[test]
    fn spoken_quarters_parse() {
        assert_parses(&[
            ("quarter of an hour", secs(900)),
            ("a quarter hour", secs(900)),
            ("a quarter of an hour", secs(900)),
            ("three quarters of an hour", secs(2_700)),
            ("3 quarters of an hour", secs(2_700)),
            ("an hour and a quarter", secs(4_500)),
            ("an hour and three quarters", secs(6_300)),
            ("one and a quarter hours", secs(4_500)),
            ("two and three quarters hours", secs(9_900)),
        ]);
    }

    #[test]
    fn spoken_compound_durations_parse() {
        assert_parses(&[
            ("2 hours and 15 minutes", secs(8_100)),
            ("2 hours 15 minutes", secs(8_100)),
            ("two minutes thirty seconds", secs(150)),
            ("1 minute, 30 seconds", secs(90)),
            ("1 hour, 5 minutes, and 10 seconds", secs(3_910)),
            ("2 hours, 5 minutes and 10 seconds", secs(7_510)),
            ("1 day and 2 hours", secs(93_600)),
            ("an hour and a half and ten minutes", secs(6_000)),
            ("one hour and twenty minutes", secs(4_800)),
            ("5 min 30 sec", secs(330)),
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

    #[test]
    fn unknown_units_are_named() {
        for (text, unit) in [
            ("5 blorps", "blorps"),
            ("5x", "x"),
            ("ten Parsecs", "Parsecs"),
            ("an eon", "eon"),
            ("5 café", "café"),
        ] {
            assert_eq!(
                error(text),
                DurationError::UnknownUnit {
                    input: text.to_string(),
                    unit: unit.to_string()
                },
                "{text:?}"
            );
        }
    }

    #[test]
    fn spoken_months_and_years_are_refused_as_having_no_fixed_length() {
        for (text, unit) in [
            ("a month", "months"),
            ("2 years", "years"),
            ("1mo", "months"),
        ] {
            assert_eq!(
                error(text),
                DurationError::VagueUnit {
                    input: text.to_string(),
                    unit
                }
            );
        }
    }

    #[test]
    fn a_unit_given_twice_is_refused_rather_than_summed() {
        for (text, unit) in [
            ("5m 3m", "minutes"),
            ("5 minutes and 3 minutes", "minutes"),
            ("1h 2m 3h", "hours"),
            ("an hour and a half and an hour", "hours"),
            ("1 second 1 second", "seconds"),
        ] {
            assert_eq!(
                error(text),
                DurationError::RepeatedUnit {
                    input: text.to_string(),
                    unit
                },
                "{text:?}"
            );
        }
        assert!(error("5m 3m").to_string().contains("minutes given twice"));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let cases = [
            ("blah", "unexpected \"blah\""),
            ("minutes", "\"minutes\" needs a number before it"),
            ("and 5 minutes", "unexpected \"and\""),
            ("5 minutes and", "nothing follows \"and\""),
            ("5 minutes,", "nothing follows \",\""),
            ("5m#", "unexpected character \"#\""),
            ("a", "\"a\" needs a unit after it, like \"minute\""),
            ("half", "\"half\" needs a unit after it, like \"minute\""),
            ("-", "nothing in it looks like a duration"),
            ("5 minutes please", "unexpected \"please\""),
            ("ⅷ minutes", "unexpected \"ⅷ\""),
            ("😀 minutes", "unexpected character \"😀\""),
            ("5\u{0}m", "unexpected character \"\\0\""),
        ];
        for (text, reason) in cases {
            assert_eq!(malformed_reason(text), reason, "{text:?}");
        }
    }

    #[test]
    fn error_messages_explain_and_give_examples() {
        assert_eq!(
            error("5 blorps").to_string(),
            "could not understand \"5 blorps\" as a duration: unknown unit \"blorps\"; \
             try 90s, 5m, 1h30m, PT5M or \"5 minutes\""
        );
        assert_eq!(
            error("").to_string(),
            "no duration given; try 90s, 5m, 1h30m, PT5M or \"5 minutes\""
        );
        assert_eq!(
            error("5m 3m").to_string(),
            "could not understand \"5m 3m\" as a duration: minutes given twice; try 90s, 5m, 1h30m, PT5M or \"5 minutes\""
        );
        assert_eq!(
            error("P1M").to_string(),
            "could not understand \"P1M\" as a duration: months have no fixed length, so a timer cannot use them; \
             the longest timer is 7 days"
        );
        assert_eq!(
            error("blah").to_string(),
            "could not understand \"blah\" as a duration: unexpected \"blah\"; try 90s, 5m, 1h30m, PT5M or \"5 minutes\""
        );
    }

    #[test]
    fn the_too_long_message_names_the_real_maximum() {
        assert_eq!(speak_duration(MAX_DURATION), "7 days");
        assert!(
            error("8d")
                .to_string()
                .contains(&speak_duration(MAX_DURATION))
        );
    }

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
