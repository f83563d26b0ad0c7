//! `hark send <sat> <intent> [key=value ...]`: publish one intent as a
//! satellite, wait for its reply, and hand it back.

use std::time::Duration;

use hark_skill_sdk::Reply;
use rumqttc::{Event, Packet, QoS};
use serde_json::{Map, Value, json};

use crate::config::MqttConfig;
use crate::protocols::native::topics::{Topics, check_satellite_id};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the broker at {target}: {message}. Is `hark run` running?")]
    Connect { target: String, message: String },
    #[error(
        "the broker at {target} refused {login}: run `hark send` with the config the hub runs \
         with (its state_dir holds the admin secret), as root or a member of group hark"
    )]
    Refused { target: String, login: String },
    #[error("no reply within {0:?}: is the hub running and connected to this broker?")]
    Timeout(Duration),
}

/// `key=value` into an args map. A value that reads as a JSON number,
/// boolean, null, array, object or quoted string is taken as that JSON;
/// anything else is a string (`duration=5m`, `label=pasta`).
pub fn parse_args(pairs: &[String]) -> Result<Map<String, Value>, SendError> {
    let mut args = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(SendError::Usage(format!(
                "\"{pair}\" is not key=value (e.g. duration=5m)"
            )));
        };
        if key.is_empty() {
            return Err(SendError::Usage(format!("\"{pair}\" has an empty key")));
        }
        let looks_json = value.starts_with(['{', '[', '"'])
            || matches!(value, "true" | "false" | "null")
            || value.parse::<f64>().is_ok_and(f64::is_finite);
        let value = match looks_json.then(|| serde_json::from_str::<Value>(value)) {
            Some(Ok(v)) => v,
            _ => Value::String(value.to_string()),
        };
        args.insert(key.to_string(), value);
    }
    Ok(args)
}

/// Why the CLI's connection to the broker failed: a refused login says which
/// login and what to do, anything else what the broker or network said.
pub(crate) fn connection_error(
    e: rumqttc::ConnectionError,
    config: &MqttConfig,
    target: &str,
) -> SendError {
    match e {
        rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::BadUserNamePassword
            | rumqttc::ConnectReturnCode::NotAuthorized,
        ) => SendError::Refused {
            target: target.to_string(),
            login: match &config.credentials {
                Some(c) => format!("the login \"{}\"", c.username),
                None => "a client without a login".to_string(),
            },
        },
        e => SendError::Connect {
            target: target.to_string(),
            message: e.to_string(),
        },
    }
}

/// Sends one intent and waits up to `timeout` for its reply.
pub async fn send(
    config: &MqttConfig,
    satellite: &str,
    intent: &str,
    args: Map<String, Value>,
    timeout: Duration,
) -> Result<Reply, SendError> {
    check_satellite_id(satellite).map_err(SendError::Usage)?;
    let topics = Topics::new(&config.prefix);
    let id = format!(
        "send-{}-{}",
        std::process::id(),
        crate::timers::now_ms() % 1_000_000
    );
    let payload = json!({"id": id, "intent": intent, "args": args});
    let client_id = format!("hark-send-{}", std::process::id());
    let (client, mut eventloop) = crate::mqtt::connect(config, &client_id, false, None);
    let (host, port) = config.client_target();
    let target = format!("{host}:{port}");

    let exchange = async {
        let mut subscribed = false;
        loop {
            let event = eventloop
                .poll()
                .await
                .map_err(|e| connection_error(e, config, &target))?;
            match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client
                        .subscribe(topics.reply(satellite), QoS::AtLeastOnce)
                        .await
                        .map_err(|e| SendError::Connect {
                            target: target.clone(),
                            message: e.to_string(),
                        })?;
                }
                Event::Incoming(Packet::SubAck(_)) if !subscribed => {
                    // Publish only once the reply topic is ours, or a fast
                    // hub could answer before we listen.
                    subscribed = true;
                    client
                        .publish(
                            topics.intent(satellite),
                            QoS::AtLeastOnce,
                            false,
                            payload.to_string(),
                        )
                        .await
                        .map_err(|e| SendError::Connect {
                            target: target.clone(),
                            message: e.to_string(),
                        })?;
                }
                Event::Incoming(Packet::Publish(p)) => {
                    if let Ok(reply) = serde_json::from_slice::<Reply>(&p.payload) {
                        // An id-less reply is the hub refusing a payload it
                        // could not read far enough to find ours: still ours.
                        if reply.id.is_none() || reply.id.as_deref() == Some(id.as_str()) {
                            return Ok(reply);
                        }
                    }
                }
                _ => {}
            }
        }
    };
    let result = tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(SendError::Timeout(timeout)));
    let _ = client.try_disconnect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[&str]) -> Value {
        Value::Object(parse_args(&pairs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap())
    }

    #[test]
    fn values_are_typed_when_they_read_as_json() {
        assert_eq!(
            args(&[
                "duration=5m",
                "volume=0.5",
                "loud=true",
                "label=\"42\"",
                "n=7",
                "x=null"
            ]),
            json!({"duration": "5m", "volume": 0.5, "loud": true, "label": "42", "n": 7, "x": null})
        );
        assert_eq!(
            args(&["label=pasta sauce"]),
            json!({"label": "pasta sauce"})
        );
        assert_eq!(args(&["t=1h30m", "e="]), json!({"t": "1h30m", "e": ""}));
        assert_eq!(args(&["a={\"b\":1}"]), json!({"a": {"b": 1}}));
        assert_eq!(args(&["bad={oops"]), json!({"bad": "{oops"}));
        assert_eq!(args(&["inf=inf"]), json!({"inf": "inf"}));
    }

    #[test]
    fn pairs_without_equals_are_usage_errors() {
        let err = parse_args(&["duration".to_string()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("key=value"), "{err}");
        assert!(parse_args(&["=5".to_string()]).is_err());
    }
}
