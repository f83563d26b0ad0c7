//! Why a duration was refused, in words meant to be read or spoken to the user.

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
    /// Longer than [`MAX_DURATION`](super::MAX_DURATION).
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

pub(super) fn negative(input: &str) -> DurationError {
    DurationError::Negative {
        input: input.to_string(),
    }
}

pub(super) fn malformed(input: &str, reason: impl Into<String>) -> DurationError {
    DurationError::Malformed {
        input: input.to_string(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use crate::duration::MAX_DURATION;
    use crate::duration::speak_duration;
    use crate::duration::test_util::error;

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
}
