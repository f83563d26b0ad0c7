//! `weather`: the temperature and wind outside now, from an Open-Meteo
//! style forecast API, through the hub's brokered HTTP (`net.http`).
//!
//! The forecast URL carries the household's coordinates, so it lives in the
//! hub's secret store (`weather_url`), not in the manifest, the module or the
//! request: the skill reads it on each call and hands it only to the hub.
//! Every failure is a [`SkillError`]: the reply says `error` with a code
//! for programs, and the satellite speaks the sentence, which says what to
//! fix without repeating the URL.

#![cfg_attr(target_arch = "wasm32", no_std)]

use hark_skill_sdk::abi::Code;
use hark_skill_sdk::prelude::*;
use host::http::{HttpError, Response};
use serde::Deserialize;

/// The secret holding the forecast URL.
const SECRET: &str = "weather_url";

/// No arguments: the place is the household's, from the secret.
#[derive(Deserialize)]
struct Args {}

/// The part of the forecast this skill reads; the rest is skipped unread.
#[derive(Deserialize)]
struct Forecast {
    current: Current,
    #[serde(default)]
    current_units: Units,
}

#[derive(Deserialize)]
struct Current {
    temperature_2m: f64,
    #[serde(default)]
    wind_speed_10m: Option<f64>,
}

/// Units as the forecast names them; Open-Meteo's defaults when absent.
#[derive(Deserialize, Default)]
struct Units {
    #[serde(default)]
    temperature_2m: Option<String>,
    #[serde(default)]
    wind_speed_10m: Option<String>,
}

/// Speech only, no `data`: serializing the readings into a JSON value would
/// add ~8 KiB to the module, for a skill whose answer is meant to be heard.
fn handle(_: Request<Args>) -> Result<SkillReply, SkillError> {
    let url = forecast_url()?;
    let response = host::http::get(&url).map_err(|e| failed(&e))?;
    Ok(SkillReply::speech(speak(&read(&response)?)))
}

hark_skill!(handle);

/// The forecast URL from the hub's secret store.
fn forecast_url() -> Result<String, SkillError> {
    let url = host::secret(SECRET).map_err(|e| {
        host::log(Level::Warn, &format!("reading {SECRET}: {e}"));
        match e.code {
            Code::NotFound => not_configured(),
            Code::Denied => SkillError::new(
                "denied",
                "The weather skill may not read its forecast address: grant it \
                 secrets.read:weather_url in the hub's [grants].",
            ),
            _ => SkillError::new(
                e.code.as_str(),
                "The weather skill could not read its forecast address from the hub's \
                 secret store; the hub's log says why.",
            ),
        }
    })?;
    let url = url.trim_ascii();
    if url.is_empty() {
        return Err(not_configured());
    }
    Ok(url.to_string())
}

fn not_configured() -> SkillError {
    SkillError::new(
        "not_configured",
        "The weather skill does not know where you are yet: put your forecast address \
         under weather_url in the hub's secrets.toml.",
    )
}

/// A request that brought no forecast, in words for the satellite. The
/// hub's own sentence (which may name the URL) goes to the hub's log only.
fn failed(e: &HttpError) -> SkillError {
    host::log(Level::Warn, &format!("asking the forecast: {e}"));
    let message = match e {
        HttpError::Denied(_) => {
            "The hub refused to ask the weather service: weather_url must point at the \
             host granted to the weather skill as net.http in the hub's [grants], without \
             redirects elsewhere; the hub's log names the rule."
                .to_string()
        }
        HttpError::Timeout => "The weather service did not answer in time.".to_string(),
        HttpError::Invalid(_) => {
            "The forecast address in weather_url is not one the hub can ask: it should be \
             a whole https:// address."
                .to_string()
        }
        HttpError::TooLarge(_) => "The weather service's answer was too big.".to_string(),
        HttpError::Unsupported(_) => "This hub cannot make web requests.".to_string(),
        HttpError::Status(status @ 400..=499) => format!(
            "The weather service refused the request with error {status}: check the address \
             in weather_url."
        ),
        HttpError::Status(status) => {
            format!("The weather service answered with error {status}; try again later.")
        }
        HttpError::Decode(_) => {
            "The weather service answered, but not with the current temperature: \
             weather_url should ask for current=temperature_2m."
                .to_string()
        }
        HttpError::Limit(_) | HttpError::Failed(_) | HttpError::Other { .. } => {
            "I could not reach the weather service.".to_string()
        }
    };
    SkillError::new(e.code(), message)
}

/// The forecast in the service's answer, or what was wrong with the answer.
fn read(response: &Response) -> Result<Forecast, SkillError> {
    if response.status != 200 {
        return Err(failed(&HttpError::Status(response.status)));
    }
    response.json().map_err(|e| failed(&e))
}

/// "It is 3.4 °C outside, wind 12 km/h."; the wind only when the forecast
/// has it.
fn speak(forecast: &Forecast) -> String {
    let Forecast {
        current,
        current_units: units,
    } = forecast;
    let unit = units.temperature_2m.as_deref().unwrap_or("°C");
    let mut speech = format!(
        "It is {} {unit} outside",
        one_decimal(current.temperature_2m)
    );
    if let Some(wind) = current.wind_speed_10m {
        let unit = units.wind_speed_10m.as_deref().unwrap_or("km/h");
        speech.push_str(&format!(", wind {} {unit}", one_decimal(wind)));
    }
    speech.push('.');
    speech
}

/// `value` rounded to one decimal, a whole number without ".0": "3.4", "12",
/// "-0.5". By hand, because formatting an `f64` links `core`'s float
/// printing (~20 KiB) into the module.
fn one_decimal(value: f64) -> String {
    let tenths = value * 10.0;
    // Half away from zero; `as` saturates, and weather is far inside i64.
    let n = if tenths < 0.0 {
        (tenths - 0.5) as i64
    } else {
        (tenths + 0.5) as i64
    };
    let sign = if n < 0 { "-" } else { "" };
    let (whole, tenth) = (n.unsigned_abs() / 10, n.unsigned_abs() % 10);
    if tenth == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{tenth}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
            ..Response::default()
        }
    }

    /// What the skill says for an answer of the service.
    fn report(response: &Response) -> Result<String, SkillError> {
        read(response).map(|forecast| speak(&forecast))
    }

    fn error(result: Result<String, SkillError>) -> SkillError {
        result.expect_err("an error")
    }

    #[test]
    fn the_current_weather_is_spoken_with_its_units() {
        let body = r#"{"latitude": 52.52, "longitude": 13.42,
            "current_units": {"time": "iso8601", "temperature_2m": "°C", "wind_speed_10m": "km/h"},
            "current": {"time": "2025-01-05T12:00", "interval": 900,
                        "temperature_2m": 3.4, "wind_speed_10m": 12.0}}"#;
        assert_eq!(
            report(&answer(200, body)).unwrap(),
            "It is 3.4 °C outside, wind 12 km/h."
        );
    }

    #[test]
    fn without_wind_only_the_temperature_is_said() {
        let body =
            r#"{"current": {"temperature_2m": -2}, "current_units": {"temperature_2m": "°F"}}"#;
        assert_eq!(report(&answer(200, body)).unwrap(), "It is -2 °F outside.");
        let body = r#"{"current": {"temperature_2m": 21.25, "wind_speed_10m": null}}"#;
        assert_eq!(
            report(&answer(200, body)).unwrap(),
            "It is 21.3 °C outside."
        );
    }

    #[test]
    fn numbers_are_rounded_to_one_decimal() {
        for (value, spoken) in [
            (3.4, "3.4"),
            (12.0, "12"),
            (0.04, "0"),
            (-0.04, "0"),
            (-0.05, "-0.1"),
            (-7.25, "-7.3"),
            (9.96, "10"),
            (105.5, "105.5"),
        ] {
            assert_eq!(one_decimal(value), spoken, "{value}");
        }
    }

    #[test]
    fn a_body_without_the_temperature_says_what_to_ask_for() {
        for body in [
            "not json",
            r#"{"current": {"wind_speed_10m": 3}}"#,
            r#"{"current": {"temperature_2m": "warm"}}"#,
            r#"{"hourly": {}}"#,
        ] {
            let e = error(report(&answer(200, body)));
            assert_eq!(e.code, "bad_response", "{body}");
            assert!(
                e.message.contains("current=temperature_2m"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn a_bad_status_is_an_error_saying_where_to_look() {
        let e = error(report(&answer(400, r#"{"error": true, "reason": "x"}"#)));
        assert_eq!(e.code, "http_status");
        assert!(e.message.contains("error 400") && e.message.contains("weather_url"));
        let e = error(report(&answer(503, "")));
        assert!(e.message.contains("try again later"), "{}", e.message);
    }

    #[test]
    fn refusals_are_explained_without_the_hubs_sentence() {
        let e = failed(&HttpError::Denied(
            "https://api.open-meteo.com/v1/forecast?latitude=52.52 redirected to evil.example"
                .into(),
        ));
        assert_eq!(e.code, "denied");
        assert!(e.message.contains("[grants]"), "{}", e.message);
        assert!(!e.message.contains("52.52"), "the coordinates are private");
        assert_eq!(failed(&HttpError::Timeout).code, "timeout");
    }

    #[test]
    fn off_the_hub_the_secret_cannot_be_read_and_the_reply_says_so() {
        let e = forecast_url().expect_err("no secret store off the hub");
        assert_eq!(e.code, "unsupported");
        assert!(e.message.contains("secret store"), "{}", e.message);
        assert_eq!(not_configured().code, "not_configured");
        assert!(not_configured().message.contains("weather_url"));
    }
}
