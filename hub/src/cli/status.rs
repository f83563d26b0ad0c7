//! `hark status`: the running hub's live state (SPEC §10), asked over MQTT
//! with the local admin login: the retained status and metrics, refreshed
//! on request (`<prefix>/hub/refresh`), as text or JSON.

use std::time::Duration;

use rumqttc::{Event, Packet, QoS};
use serde_json::{Value, json};

use crate::config::MqttConfig;
use crate::protocols::native::topics::Topics;

use super::send::SendError;

/// `{"status": ..., "metrics": ..., "fresh": bool}` from the hub behind
/// `config`: its answer to a refresh, or, when none comes within `timeout`,
/// what the broker kept (at most 60 s old).
pub async fn fetch(config: &MqttConfig, timeout: Duration) -> Result<Value, SendError> {
    let topics = Topics::new(&config.prefix);
    let client_id = format!("hark-status-{}", std::process::id());
    let (client, mut eventloop) = crate::mqtt::connect(config, &client_id, false, None);
    let (host, port) = config.client_target();
    let target = format!("{host}:{port}");
    let (status_topic, metrics_topic) = (topics.status(), topics.metrics());
    let failed = |message: String| SendError::Connect {
        target: target.clone(),
        message,
    };

    let mut kept = (None::<Value>, None::<Value>);
    let mut fresh = (None::<Value>, None::<Value>);
    let exchange = async {
        let mut asked = false;
        loop {
            let event = eventloop
                .poll()
                .await
                .map_err(|e| super::send::connection_error(e, config, &target))?;
            match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    for topic in [&status_topic, &metrics_topic] {
                        client
                            .subscribe(topic.as_str(), QoS::AtLeastOnce)
                            .await
                            .map_err(|e| failed(e.to_string()))?;
                    }
                }
                Event::Incoming(Packet::SubAck(_)) if !asked => {
                    asked = true;
                    client
                        .publish(topics.refresh(), QoS::AtLeastOnce, false, "")
                        .await
                        .map_err(|e| failed(e.to_string()))?;
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let Ok(value) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    // A retained copy comes with the subscription; the
                    // hub's answer to the refresh is live (retain unset).
                    let slot = if p.retain { &mut kept } else { &mut fresh };
                    if p.topic == status_topic {
                        slot.0 = Some(value);
                    } else if p.topic == metrics_topic {
                        slot.1 = Some(value);
                    }
                    if fresh.0.is_some() && fresh.1.is_some() {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    };
    let waited = tokio::time::timeout(timeout, exchange).await;
    let _ = client.try_disconnect();
    if let Ok(Err(e)) = waited {
        return Err(e);
    }
    let is_fresh = fresh.0.is_some();
    match (fresh.0.or(kept.0), fresh.1.or(kept.1)) {
        (Some(status), metrics) => Ok(json!({
            "status": status,
            "metrics": metrics.unwrap_or(Value::Null),
            "fresh": is_fresh,
        })),
        (None, _) => Err(SendError::Timeout(timeout)),
    }
}

/// The answer of [`fetch`] for a person.
pub fn format(answer: &Value) -> String {
    let status = &answer["status"];
    let metrics = &answer["metrics"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut out = format!(
        "hark {} — {}, tier {}, up {}\n",
        text(&status["version"]),
        if status["online"] == true {
            "online"
        } else {
            "OFFLINE"
        },
        text(&status["tier"]),
        uptime(status["uptime_s"].as_u64().unwrap_or(0)),
    );
    out.push_str(&format!(
        "audio {}; audit log {}, {} records, signed up to {}\n",
        text(&status["audio"]),
        text(&status["audit"]),
        text(&status["audit_head"]),
        text(&status["audit_checkpoint"])
    ));
    let restart: Vec<String> = status["restart_needed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if !restart.is_empty() {
        out.push_str(&format!(
            "config changed since start in {}: takes a restart of the hub (running with the old values)\n",
            restart.join(", ")
        ));
    }
    if answer["fresh"] != true {
        out.push_str(
            "(the hub did not answer the refresh: figures as the broker kept them, up to 60 s old)\n",
        );
    }
    out.push_str("\nskills\n");
    for skill in status["skills"].as_array().into_iter().flatten() {
        let name = text(&skill["name"]);
        let calls = &metrics["skills"][&name]["calls"];
        let ran: u64 = calls
            .as_object()
            .map(|c| c.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        out.push_str(&format!(
            "  {:<20} {:<8} {:<9} {}\n",
            name,
            text(&skill["kind"]),
            if skill["enabled"] == true {
                "enabled"
            } else {
                "DISABLED"
            },
            if ran > 0 {
                format!("{ran} calls {calls}")
            } else {
                String::new()
            }
        ));
        if let Some(reason) = skill["reason"].as_str() {
            out.push_str(&format!("      why: {reason}\n"));
        }
    }
    let hub = &metrics["hub"];
    out.push_str(&format!(
        "config {}; broker {}\n",
        text(&hub["config"]),
        text(&hub["broker"])
    ));
    let satellites = hub["satellites"].as_array().filter(|s| !s.is_empty());
    if let Some(satellites) = satellites {
        out.push_str("\nsatellites (last login)\n");
        for s in satellites {
            out.push_str(&format!(
                "  {:<20} {}\n",
                text(&s["id"]),
                s["last_seen"].as_str().unwrap_or("never")
            ));
        }
    }
    let timers = hub["timers"].as_object();
    out.push_str("\ntimers\n");
    match timers.filter(|t| !t.is_empty()) {
        None => out.push_str("  none\n"),
        Some(timers) => {
            for (satellite, n) in timers {
                out.push_str(&format!("  {satellite:<20} {n}\n"));
            }
        }
    }
    if metrics.is_object() {
        out.push_str(&format!(
            "\nrequests {} (in flight {}, busy {}); broker reconnects {}; resident memory {:.1} MiB\n",
            text(&metrics["requests"]),
            text(&metrics["requests_in_flight"]),
            text(&metrics["busy"]),
            text(&metrics["broker_reconnects"]),
            metrics["rss_bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
        ));
    }
    out
}

fn uptime(s: u64) -> String {
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}
