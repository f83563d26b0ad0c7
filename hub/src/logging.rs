//! The log's filter ([`filter_spec`]: what `RUST_LOG` means here) and the
//! text log's field formatter: like tracing-subscriber's default, but
//! every control character in a field or message is escaped, so text that
//! came from outside (a skill's `log`, a satellite's intent name) cannot
//! start a line of its own and pass for one the hub wrote. The JSON format
//! escapes by construction and does not need this.

use std::fmt::{self, Write as _};

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

/// What the log shows when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// The hub's code lives in these targets; `hark` in `RUST_LOG` means all of them.
const HARK_TARGETS: [&str; 3] = ["hark", "hark_hub", "hark_skills_builtin"];

/// The MQTT libraries' own logging, quiet unless `RUST_LOG` names them:
/// the embedded broker reports every satellite's connection trouble (and
/// the hub's own clean disconnect) as an error, which is the broker's
/// business, not the hub's.
const QUIET: [&str; 2] = ["mqtt5=off", "rumqttc=warn"];

/// The tracing filter for `rust_log` (the `RUST_LOG` variable, if set):
/// `hark=debug` reaches every crate of the hub (its code is in
/// `hark_hub`, which no user should need to know), and the MQTT libraries
/// stay quiet whatever the level unless a directive names them.
pub fn filter_spec(rust_log: Option<&str>) -> String {
    let given = rust_log.map(str::trim).filter(|s| !s.is_empty());
    let mut directives: Vec<String> = Vec::new();
    for directive in given.unwrap_or(DEFAULT_FILTER).split(',') {
        let directive = directive.trim();
        if directive.is_empty() {
            continue;
        }
        // `hark`, `hark=debug`, `hark[span]=trace`: the same for each target.
        let target_end = directive.find(['=', '[']).unwrap_or(directive.len());
        if &directive[..target_end] == "hark" {
            let rest = &directive[target_end..];
            for target in HARK_TARGETS {
                directives.push(format!("{target}{rest}"));
            }
        } else {
            directives.push(directive.to_string());
        }
    }
    for quiet in QUIET {
        let target = quiet.split('=').next().unwrap_or(quiet);
        let named = directives
            .iter()
            .any(|d| d.split(['=', '[']).next() == Some(target));
        if !named {
            directives.push(quiet.to_string());
        }
    }
    directives.join(",")
}

/// Fields as `message key=value ...`, control characters escaped.
pub fn text_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(
        |w: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn fmt::Debug| {
            let name = field.name();
            if name != "message" {
                write!(w, "{}=", name.strip_prefix("r#").unwrap_or(name))?;
            }
            write!(Escaped(w), "{value:?}")
        },
    )
    .delimited(" ")
}

/// Writes through to `W`, escaping control characters (`\n` as `\\n`,
/// others as `\\u{..}`).
struct Escaped<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found a char here");
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Formats `fields` as the text log would (for tests).
#[cfg(test)]
fn render(fields: impl tracing_subscriber::field::RecordFields) -> String {
    let mut out = String::new();
    text_fields()
        .format_fields(Writer::new(&mut out), fields)
        .unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hark_means_every_crate_of_the_hub_and_the_broker_stays_quiet_unless_named() {
        assert_eq!(filter_spec(None), "info,mqtt5=off,rumqttc=warn");
        assert_eq!(filter_spec(Some("  ")), "info,mqtt5=off,rumqttc=warn");
        assert_eq!(
            filter_spec(Some("warn,hark=debug")),
            "warn,hark=debug,hark_hub=debug,hark_skills_builtin=debug,mqtt5=off,rumqttc=warn"
        );
        assert_eq!(
            filter_spec(Some("debug")),
            "debug,mqtt5=off,rumqttc=warn",
            "a bare level does not turn the broker's noise on"
        );
        assert_eq!(
            filter_spec(Some("info,mqtt5=info")),
            "info,mqtt5=info,rumqttc=warn",
            "asked for by name, it is shown"
        );
        for spec in [None, Some("hark=trace"), Some("debug,rumqttc=debug")] {
            let spec = filter_spec(spec);
            tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        }
    }

    #[test]
    fn control_characters_never_reach_the_log_raw() {
        let mut s = String::new();
        write!(Escaped(&mut s), "a\nINFO forged\r\x1b[31m\tb é").unwrap();
        assert_eq!(s, "a\\nINFO forged\\r\\u{1b}[31m\\tb é");
    }

    #[test]
    fn an_event_with_a_newline_in_its_message_stays_on_one_line() {
        use std::sync::{Arc, Mutex};
        let lines = Arc::new(Mutex::new(Vec::new()));
        struct Capture(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.lock().unwrap().push(render(event));
            }
        }
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let text = "hi\n2026-01-01T00:00:00Z ERROR hark: forged";
            tracing::warn!(skill = %"evil\nx", "{text}");
        });
        let lines = lines.lock().unwrap();
        assert_eq!(
            lines[0],
            "hi\\n2026-01-01T00:00:00Z ERROR hark: forged skill=evil\\nx"
        );
    }
}
