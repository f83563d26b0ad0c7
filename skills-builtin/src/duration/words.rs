//! The reducer behind compact and spoken durations: tokens to a sum of `quantity unit` parts.

use super::amount::{Amount, ONE, Unit};
use super::error::{DurationError, malformed, negative};
use super::tokens::{Kind, Token, tokenize};

/// Reduces tokens to a sum of `quantity unit` components, separated by nothing, "," or "and".
#[derive(Debug)]
pub(super) struct Parser<'a> {
    /// The whole trimmed input, quoted back in errors.
    input: &'a str,
    /// The tokenized part; token spans index into it.
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(input: &'a str, text: &'a str) -> Result<Self, DurationError> {
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

    pub(super) fn sum(mut self) -> Result<u128, DurationError> {
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
    use crate::duration::DurationError;
    use crate::duration::parse_duration;
    use crate::duration::test_util::{assert_parses, error, malformed_reason, millis, secs};
    use crate::duration::tokens::{SMALL_NUMBERS, TENS};

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
}
